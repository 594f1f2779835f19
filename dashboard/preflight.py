"""Pre-flight and the events timeline, wired into the web app; the platforms do the work.

`install(app, state)` (registered in `dashboard.web.FEATURES`) adds:

- `GET /api/preflight` and the `/preflight` page: `state.platform.preflight()` (Kubernetes: context, API server
  and its version, the namespace, each verb's SelfSubjectAccessReview and what a "no" would block; local: the
  redis-server binary, the run directory, the expose step's port — and that no cluster is needed).
- `GET /api/events` and the live topic `events` (fragment `_events.html`): `state.platform.events()`, newest
  first; published when the platform says its events changed, never polled. [] where the platform has none.

Nothing here asks the cluster on a viewer's behalf except the pre-flight itself, which a user asks for.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from dashboard.errors import DashboardError
from dashboard.web import TEMPLATES, State

EVENTS_LIMIT = 200


async def event_rows(state: State, limit: int = EVENTS_LIMIT) -> list[dict[str, object]]:
    """The lab's events, newest first ([] on a platform without events)."""
    return [row.to_json() for row in reversed(await state.platform.events(limit))]


def install(app: FastAPI, state: State) -> None:
    """Add the pre-flight routes, the events API and the live `events` topic to the app."""

    async def render_events(request: Request) -> str:
        events = await event_rows(state)
        return TEMPLATES.get_template("_events.html").render({"events": events})

    state.add_topic("events", render_events)
    state.platform.add_event_listener(lambda: state.hub.publish("events"))
    state.hub.publish("events")  # every page gets the panel's first content over its SSE stream

    @app.get("/api/preflight", tags=["lab"])
    async def api_preflight() -> dict[str, Any]:
        """Can the lab run here? Kubernetes: context, server version, namespace, and for each verb the lab needs
        the SelfSubjectAccessReview result and what a denial blocks. Local: redis-server, run dir, frontend port."""
        return await state.platform.preflight()

    @app.get("/api/events", tags=["observe"])
    async def api_events(limit: int = EVENTS_LIMIT) -> list[dict[str, object]]:
        """The lab's Kubernetes events (`kubectl events`), newest first; [] on the local platform."""
        return await event_rows(state, max(1, min(limit, EVENTS_LIMIT)))

    @app.get("/preflight", response_class=HTMLResponse, include_in_schema=False)
    async def preflight_page(request: Request) -> Response:
        try:
            report = await state.platform.preflight()
        except DashboardError as exc:
            report = {"platform": state.platform.name, "ok": False, "error": exc.to_json(), "checks": []}
        ctx = {
            "request": request,
            "settings": state.settings,
            "platform": state.platform.name,
            "capabilities": state.platform.capabilities,
            "report": report,
        }
        return TEMPLATES.TemplateResponse(request, "preflight.html", ctx)
