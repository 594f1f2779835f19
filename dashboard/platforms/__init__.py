"""The seam between the lab and where it runs: one `Platform` protocol and a factory that picks the implementation.

Nothing outside this package branches on which platform runs; only `platforms/kubernetes.py` imports `kubernetes`.
"""

from __future__ import annotations

from dashboard.platforms.base import Platform, create_platform

__all__ = ["Platform", "create_platform"]
