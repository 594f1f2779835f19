"""The web layer: the app factory (`app.py`), one router per concern (`routes/`), the one way to answer and to
render errors (`render.py`) and the lab dependency (`deps.py`). Imported by nothing but the CLI (and tests)."""

from __future__ import annotations

from dashboard.web.app import create_app

__all__ = ["create_app"]
