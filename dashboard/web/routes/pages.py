"""The pages: a lab's page (`/`, every panel rendered by its topic's builder) and `/fragments/<topic>`; and the
site's own pages served once for all labs: the lab's manifests, the API docs (vendored Swagger UI), health."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from markupsafe import Markup

from dashboard import __version__
from dashboard.errors import NotFound
from dashboard.live import TOPICS
from dashboard.settings import MANIFESTS_DIR
from dashboard.steps import STEPS
from dashboard.web.auth import LEARNER_COOKIE
from dashboard.web.deps import Lab, registry
from dashboard.web.render import TEMPLATES, lab_context, render_topic

router = APIRouter(include_in_schema=False)
site_router = APIRouter()
SWAGGER = "/static/vendor/swagger-ui-5.35.0"
MANIFEST_FILES: tuple[str, ...] = (*(m for step in STEPS for m in step.manifests), "kustomization.yaml")


@router.get("/", response_class=HTMLResponse)
async def index(request: Request, session: Lab) -> Response:
    panels = {topic: Markup(await render_topic(session, topic)) for topic in TOPICS}
    workshop = request.app.state.workshop
    learner = workshop.learner_for_secret(request.cookies.get(LEARNER_COOKIE)) if workshop is not None else None
    if learner is not None and learner.id != session.id:
        learner = None  # shown on the learner's own lab only
    ctx = {
        **lab_context(session),
        "platform_error": session.platform_error,
        "version": __version__,
        "panels": panels,
        "view": request.query_params.get("view", ""),
        "readonly": request.query_params.get("look") == "1",
        "learner": learner,
        "rejoin_code": workshop.take_rejoin_code(session.id) if learner is not None else None,
    }
    return TEMPLATES.TemplateResponse(request, "index.html", ctx)


@router.get("/fragments/{topic}", response_class=HTMLResponse)
async def fragment(session: Lab, topic: str) -> Response:
    if topic not in TOPICS:
        raise NotFound(f"There is no panel called {topic[:60]!r}.", f"Use one of: {', '.join(TOPICS)}.")
    return HTMLResponse(await render_topic(session, topic))


@site_router.get("/manifests/{name}", tags=["lab"], response_class=PlainTextResponse)
async def manifest(name: str) -> PlainTextResponse:
    """One of the lab's manifests, exactly as `kubectl apply -f` gets it (the six files and kustomization.yaml)."""
    if name not in MANIFEST_FILES:
        raise NotFound(f"There is no lab manifest called {name!r}.", f"Use one of: {', '.join(MANIFEST_FILES)}.")
    return PlainTextResponse((MANIFESTS_DIR / name).read_text(encoding="utf-8"), media_type="text/yaml")


@site_router.get("/docs", include_in_schema=False)
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Guestbook lab dashboard · API",
        swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER}/favicon-32x32.png",
    )


@site_router.get("/healthz", include_in_schema=False)
async def healthz(request: Request) -> dict[str, object]:
    labs = registry(request)
    default = next(iter(labs), None)
    return {
        "ok": True,
        "platform": labs.settings.platform,
        "labs": len(labs),
        "uptime_seconds": round(time.time() - (default.started if default else time.time()), 1),
    }
