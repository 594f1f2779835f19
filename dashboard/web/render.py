"""One way to answer: a route returns data, `respond` renders it as JSON or as the htmx fragment of its topic.

- `TEMPLATES`: the Jinja2 environment (with the `age`, `clock` and `iso` filters, and `Markup` and `human_bytes`
  for the lag charts), built once per process.
- `topic_context(session, topic)`: the data of one live panel of a lab, from the session only (templates never
  reach into `request.app.state`); `render_topic` renders its `_<topic>.html` partial. The page, `/fragments/…`,
  the SSE stream and the htmx answers of actions all use these, so a panel has one context builder.
- `wants_fragment(request)`: htmx asking for HTML (`HX-Request: true` and `Accept: text/html`, which the page
  sets on every htmx request); scripts sending only `HX-Request` still get JSON.
- `error_response`: the one rendering of a `DashboardError`: JSON for scripts, a fragment retargeted
  (`HX-Retarget`) to the error slot of the element that asked (`#<HX-Trigger>-error`, else the page banner) for
  htmx, a page otherwise.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from dashboard.errors import DashboardError
from dashboard.logs import classify_log
from dashboard.replication_chart import MARKS, build_charts, human_bytes
from dashboard.session import DEFAULT_LAB, LabSession
from dashboard.settings import PROJECT_ROOT

TEMPLATES = Jinja2Templates(directory=str(PROJECT_ROOT / "templates"))
LAG_WINDOW_SECONDS = 150.0
EVENTS_LIMIT = 200
COMPONENT_ORDER = {"redis-leader": 0, "redis-follower": 1, "frontend": 2}


def format_age(seconds: float) -> str:
    """kubectl's AGE column: 42s, 5m10s, 3h12m, 2d4h."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s" if s < 600 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60}m"
    return f"{s // 86400}d{(s % 86400) // 3600}h"


def format_clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def format_iso(epoch: float) -> str:
    """An HTML `<time datetime>` value: ISO 8601 in UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


TEMPLATES.env.filters.update(age=format_age, iso=format_iso, clock=format_clock)
TEMPLATES.env.globals.update(Markup=Markup, human_bytes=human_bytes)


def base_path(session: LabSession) -> str:
    """The URL prefix of a lab's page and API: '' for the default lab, '/labs/<id>' for any other."""
    return "" if session.id == DEFAULT_LAB else f"/labs/{session.id}"


async def pods_json(session: LabSession) -> list[dict[str, Any]]:
    now = time.time()
    pods = await session.platform.get_pods()
    pods.sort(key=lambda p: (COMPONENT_ORDER.get(p.component, 9), p.created_at, p.name))
    return [pod.to_json(now) for pod in pods]


def replication_json(session: LabSession) -> dict[str, Any]:
    """GET /api/replication and the Redis panel: the sampler's snapshot, plus `redis_access` {mode, using, reason}
    (how the platform reaches the pods: pod IPs, port-forward, loopback)."""
    return {**session.sampler.snapshot.to_json(), "redis_access": session.platform.redis_access().to_json()}


async def event_rows(session: LabSession, limit: int = EVENTS_LIMIT) -> list[dict[str, object]]:
    return [row.to_json() for row in reversed(await session.platform.events(limit))]


def log_columns(session: LabSession) -> list[dict[str, Any]]:
    columns = []
    for name, component, lines in session.experiments.logs:
        rows = []
        for line in lines:
            clock, message, kind, icon = classify_log(line.text)
            rows.append({"time": clock, "text": message, "kind": kind, "icon": icon})
        columns.append({"name": name, "component": component, "lines": rows})
    return columns


def lab_context(session: LabSession) -> dict[str, Any]:
    """What every template of a lab needs: its URL prefix, its platform's name and capabilities."""
    return {
        "base": base_path(session),
        "platform": session.platform.name,
        "capabilities": session.platform.capabilities,
    }


async def topic_context(session: LabSession, topic: str) -> dict[str, Any]:
    """The data the partial `_<topic>.html` shows, for one lab."""
    lab, experiments = session.lab, session.experiments
    ctx = lab_context(session)
    if topic in ("steps", "drills"):
        body = lab.to_json()
        ctx.update(lab=body, drills=body["drills"])
    elif topic == "pods":
        ctx["pods"] = await pods_json(session)
    elif topic == "replication":
        ctx["replication"] = replication_json(session)
    elif topic == "activity":
        ctx["activity"] = [a.to_json() for a in reversed(lab.activity)]
    elif topic == "guestbook":
        ctx.update(frontend_url=session.platform.frontend_url(), expose_note=session.platform.expose_note())
    elif topic == "lag":
        charts = build_charts(
            session.sampler.history.to_json(),
            [f.node.name for f in session.sampler.snapshot.followers],
            time.time(),
            LAG_WINDOW_SECONDS,
            drill_marks=list(experiments.marks),
        )
        ctx.update(charts=charts, marks=MARKS, window=LAG_WINDOW_SECONDS, interval=session.settings.sample_interval)
    elif topic == "experiments":
        ctx.update(
            probe=experiments.probe,
            probe_error=experiments.probe_error,
            probing=experiments.probing,
            load=experiments.load.to_json() if experiments.load else None,
        )
    elif topic == "logs":
        ctx.update(columns=log_columns(session), watching=experiments.logs_watched)
    elif topic == "events":
        ctx["events"] = await event_rows(session)
    elif topic == "notice":
        ctx["notice"] = session.notice
    return ctx


async def render_topic(session: LabSession, topic: str) -> str:
    """The fragment of one live panel, rendered now."""
    return TEMPLATES.get_template(f"_{topic}.html").render(await topic_context(session, topic))


def sse_event(event: str, html: str) -> str:
    """One Server-Sent Event carrying a fragment: a `data:` line per line of it."""
    data = "\n".join(f"data: {line}" for line in html.splitlines() or [""])
    return f"event: {event}\n{data}\n\n"


def wants_fragment(request: Request) -> bool:
    """htmx asking for HTML: the page sends `HX-Request: true` with `Accept: text/html` on each htmx request."""
    return request.headers.get("hx-request") == "true" and "text/html" in request.headers.get("accept", "")


def wants_json(request: Request) -> bool:
    if wants_fragment(request):
        return False
    if request.url.path.startswith(("/api/", "/labs/")) and "/api/" in request.url.path:
        return True
    if request.url.path.endswith(".php") or request.method not in ("GET", "HEAD"):
        return True  # the guestbook's API, and scripts changing things: only a page GET gets a page
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


async def respond(request: Request, session: LabSession, data: Any, topic: str, *, status_code: int = 200) -> Response:
    """`data` as JSON for scripts, or the lab's `topic` fragment for the page's htmx."""
    if wants_fragment(request):
        return HTMLResponse(await render_topic(session, topic), status_code=status_code)
    return JSONResponse(data, status_code=status_code)


def error_response(request: Request, error: DashboardError) -> Response:
    """Every error, rendered once: JSON, an htmx fragment in the asking element's error slot, or a page."""
    response: Response
    if wants_fragment(request):
        trigger = request.headers.get("hx-trigger", "")
        target = f"#{trigger}-error" if trigger.replace("-", "").isalnum() else "#page-error"
        headers = {"HX-Retarget": target, "HX-Reswap": "innerHTML"}
        response = TEMPLATES.TemplateResponse(request, "_error.html", {"error": error}, error.status, headers)
    elif wants_json(request):
        response = JSONResponse(error.to_json(), status_code=error.status)
    else:
        response = TEMPLATES.TemplateResponse(request, "error.html", {"error": error}, status_code=error.status)
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    return response
