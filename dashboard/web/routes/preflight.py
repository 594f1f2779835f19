"""Pre-flight and events: can the lab run here (`/api/preflight`, the `/preflight` page), and the lab's events."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dashboard.errors import DashboardError
from dashboard.web.deps import Lab
from dashboard.web.render import EVENTS_LIMIT, TEMPLATES, event_rows, lab_context

router = APIRouter()


@router.get("/api/preflight", tags=["lab"])
async def api_preflight(session: Lab) -> dict[str, Any]:
    """Can the lab run here? Kubernetes: context, server version, namespace, and for each verb the lab needs
    the SelfSubjectAccessReview result and what a denial blocks. Local: redis-server, run dir, frontend port."""
    return await session.platform.preflight()


@router.get("/api/events", tags=["observe"])
async def api_events(session: Lab, limit: int = EVENTS_LIMIT) -> list[dict[str, object]]:
    """The lab's Kubernetes events (`kubectl events`), newest first; [] on the local platform."""
    return await event_rows(session, max(1, min(limit, EVENTS_LIMIT)))


@router.get("/preflight", include_in_schema=False)
async def preflight_page(request: Request, session: Lab) -> Response:
    try:
        report = await session.platform.preflight()
    except DashboardError as exc:
        report = {"platform": session.platform.name, "ok": False, "error": exc.to_json(), "checks": []}
    ctx = {**lab_context(session), "settings": session.settings, "report": report}
    return TEMPLATES.TemplateResponse(request, "preflight.html", ctx)
