"""The seam between the lab and where it runs: one `Platform` protocol and a factory that picks the implementation.

Nothing outside this package branches on which platform runs (they read `platform.capabilities`); only
`platforms/kubernetes/` imports `kubernetes`, and `local/` and `kubernetes/` never import each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dashboard.platforms.base import Platform

if TYPE_CHECKING:
    from dashboard.settings import Settings

__all__ = ["Platform", "create_platform"]


def create_platform(settings: Settings) -> Platform:
    """The platform the settings ask for. Imports lazily so the local platform never loads the kubernetes client."""
    if settings.platform == "kubernetes":
        from dashboard.platforms.kubernetes import KubernetesPlatform

        return KubernetesPlatform(settings)
    from dashboard.platforms.local import LocalPlatform

    return LocalPlatform(settings)
