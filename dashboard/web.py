"""The web layer: FastAPI app factory, the page and its htmx fragments, the JSON API and the live event stream.

`create_app(settings, platform)` owns a platform, the Redis sampler, the lab and the live hub for the app's
lifetime (started and closed in the lifespan). Every route reads shared state; no route talks to Redis on a
viewer's behalf. Errors are `DashboardError`s rendered once here: JSON for the API, a fragment for htmx, a page
otherwise — never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from dashboard import __version__
from dashboard.errors import BadRequest, DashboardError, NotFound, PlatformError, PrerequisiteMissing, UnknownStep
from dashboard.lab import Lab
from dashboard.live import Hub
from dashboard.platforms.base import Platform, create_platform
from dashboard.sampler import Sampler
from dashboard.security import COOKIE, check_request
from dashboard.settings import MANIFESTS_DIR, PROJECT_ROOT, Settings
from dashboard.steps import STEP_IDS, STEPS

log = logging.getLogger("dashboard")
Renderer = Callable[[Request], Awaitable[str]]

SWAGGER = "/static/vendor/swagger-ui-5.35.0"
TEMPLATES = Jinja2Templates(directory=str(PROJECT_ROOT / "templates"))


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


TEMPLATES.env.filters["age"] = format_age
TEMPLATES.env.filters["clock"] = format_clock
KEEPALIVE_SECONDS = 15.0
GUESTBOOK_PREFIX = "/guestbook/"
# Response headers of the guestbook frontend that the /guestbook/ proxy passes on.
PROXIED_HEADERS = ("content-type", "cache-control", "content-security-policy", "allow", "x-content-type-options")
PODS_REFRESH_SECONDS = 1.0
MANIFEST_FILES: tuple[str, ...] = (*(m for step in STEPS for m in step.manifests), "kustomization.yaml")


class State:
    """Everything the routes share, built once per app."""

    def __init__(self, settings: Settings, platform: Platform) -> None:
        self.settings = settings
        self.platform = platform
        self.lab = Lab(settings, platform)
        self.sampler = Sampler(platform, interval=settings.sample_interval)
        self.hub = Hub()
        self.started = time.time()
        self._last_frontend_url: str | None = None
        self._renderers: dict[str, Renderer] = {}
        self.platform_error: DashboardError | None = None
        self.http = httpx.AsyncClient(timeout=10.0)  # the /guestbook/ proxy's connections to the exposed frontend
        # Feature modules' background work, started after the platform and sampler, stopped before them.
        self.on_start: list[Callable[[], Awaitable[None]]] = []
        self.on_close: list[Callable[[], Awaitable[None]]] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        try:
            await self.platform.start()
        except DashboardError as exc:
            # Start anyway: the page shows the error and its fix, and every step retries the platform.
            self.platform_error = exc
            log.error("%s %s", exc.message, exc.hint)
        self.platform.add_listener(self._pods_changed)
        self.lab.add_listener(self._lab_changed)
        self.sampler.add_listener(lambda: self.hub.publish("replication"))
        await self.sampler.start()
        self._tasks.append(asyncio.create_task(self._tick()))
        for hook in self.on_start:
            await hook()

    async def close(self) -> None:
        for hook in reversed(self.on_close):
            await hook()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        await self.sampler.stop()
        await self.http.aclose()
        await self.platform.close()

    def _pods_changed(self) -> None:
        self.hub.publish("pods")
        self.sampler.poke()

    def _lab_changed(self) -> None:
        self.hub.publish("steps", "activity")
        url = self.platform.frontend_url()
        if url != self._last_frontend_url:
            self._last_frontend_url = url
            self.hub.publish("guestbook")

    async def _tick(self) -> None:
        """Pod ages move every second; one shared re-render per second, whatever the number of viewers."""
        while True:
            await asyncio.sleep(PODS_REFRESH_SECONDS)
            self.hub.publish("pods")

    # -- the data every view shows ------------------------------------------------------------------------------

    async def pods_json(self) -> list[dict[str, Any]]:
        now = time.time()
        order = {"redis-leader": 0, "redis-follower": 1, "frontend": 2}
        pods = sorted(await self.platform.get_pods(), key=lambda p: (order.get(p.component, 9), p.created_at, p.name))
        return [pod.to_json(now) for pod in pods]

    def replication_json(self) -> dict[str, Any]:
        data = dict(self.sampler.snapshot.to_json())
        access = getattr(self.platform, "redis_access_status", None)  # Kubernetes: pod IPs or port-forward, and why
        if access is not None:
            data["redis_access"] = access()
        return data

    async def context(self, request: Request, topic: str | None = None) -> dict[str, Any]:
        ctx: dict[str, Any] = {
            "request": request,
            "settings": self.settings,
            "platform": self.platform.name,
            "version": __version__,
            "frontend_url": self.platform.frontend_url(),
            "expose_note": self.platform.expose_note(),
            "platform_error": self.platform_error,
        }
        if topic in (None, "steps"):
            ctx["lab"] = self.lab.to_json()
            ctx["steps"] = self.lab.steps
        if topic in (None, "pods"):
            ctx["pods"] = await self.pods_json()
        if topic in (None, "replication"):
            ctx["replication"] = self.replication_json()
        if topic in (None, "activity"):
            ctx["activity"] = [a.to_json() for a in reversed(self.lab.activity)]
        return ctx

    def add_topic(self, topic: str, render: Renderer) -> None:
        """A live panel of a feature module: `render(request)` returns its fragment; publish with hub.publish."""
        self.hub.add_topic(topic)
        self._renderers[topic] = render

    async def render_topic(self, request: Request, topic: str) -> str:
        custom = self._renderers.get(topic)
        if custom is not None:
            return await custom(request)
        ctx = await self.context(request, topic)
        return TEMPLATES.get_template(f"_{topic}.html").render(ctx)


def get_state(request: Request) -> State:
    """The shared state of the app serving `request` (for feature routers)."""
    state: State = request.app.state.lab_state
    return state


# Feature modules add routes and live topics: each is `install(app, state)`, called once in create_app.
FEATURES: list[Callable[[FastAPI, State], None]] = []


def wants_json(request: Request) -> bool:
    if request.url.path.startswith("/api/") or request.url.path.endswith(".php"):
        return True
    return "application/json" in request.headers.get("accept", "") and "text/html" not in request.headers.get(
        "accept", ""
    )


def error_response(request: Request, error: DashboardError) -> Response:
    if wants_json(request):
        return JSONResponse(error.to_json(), status_code=error.status)
    template = "_error.html" if request.headers.get("hx-request") == "true" else "error.html"
    return TEMPLATES.TemplateResponse(
        request, template, {"error": error, "status": error.status}, status_code=error.status
    )


def create_app(settings: Settings | None = None, platform: Platform | None = None) -> FastAPI:
    """The dashboard app. Builds the platform from the settings unless one is given (tests pass their own)."""
    settings = settings or Settings()
    state = State(settings, platform or create_platform(settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.close()

    app = FastAPI(
        title="Guestbook lab dashboard",
        version=__version__,
        description="Run the Kubernetes guestbook lab step by step and watch Redis replication live.",
        lifespan=lifespan,
        docs_url=None,  # served below from static/vendor: FastAPI's default page loads Swagger UI from a CDN
        redoc_url=None,
    )
    app.state.lab_state = state
    for feature in FEATURES:
        feature(app, state)
    app.mount("/static", StaticFiles(directory=str(PROJECT_ROOT / "static")), name="static")

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        query_token = request.query_params.get("token")
        try:
            check_request(
                method=request.method,
                headers=headers,
                query_token=query_token,
                cookie_token=request.cookies.get(COOKIE),
                token=settings.token,
                loopback_only=settings.is_loopback,
                page_form=request.url.path.startswith(GUESTBOOK_PREFIX),
            )
        except DashboardError as exc:
            return error_response(request, exc)
        if query_token and settings.token and request.method == "GET":
            # Jupyter-style: trade the token in the URL for a cookie, then drop it from the address bar.
            redirect = RedirectResponse(str(request.url.remove_query_params("token")), status_code=303)
            redirect.set_cookie(COOKIE, query_token, httponly=True, samesite="strict")
            return redirect
        response: Response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    @app.exception_handler(DashboardError)
    async def dashboard_error(request: Request, exc: DashboardError) -> Response:
        return error_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        messages = {
            404: ("There is nothing at this address.", "Go back to the dashboard's main page."),
            405: (
                f"{request.url.path} does not take {request.method}.",
                "See /docs for what each address takes: steps, drills and the probe run with POST.",
            ),
        }
        message, hint = messages.get(exc.status_code, (str(exc.detail), "Go back to the dashboard's main page."))
        error = DashboardError(message, hint)
        error.status = exc.status_code
        return error_response(request, error)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("query", "path", "body"))
        error = BadRequest(
            f"{where or 'The request'} is not valid: {str(first.get('msg', 'bad value')).rstrip('.')}.",
            "See /docs for what this address takes.",
        )
        return error_response(request, error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        error = DashboardError(
            f"The dashboard hit an unexpected error ({type(exc).__name__}).",
            "Try again; the details are in the dashboard's terminal output.",
        )
        return error_response(request, error)

    # -- the page ---------------------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index(request: Request) -> Response:
        ctx = await state.context(request)
        ctx["view"] = request.query_params.get("view", "")
        return TEMPLATES.TemplateResponse(request, "index.html", ctx)

    @app.get("/fragments/{topic}", response_class=HTMLResponse, include_in_schema=False)
    async def fragment(request: Request, topic: str) -> Response:
        if topic not in state.hub.topics:
            raise StarletteHTTPException(404)
        return HTMLResponse(await state.render_topic(request, topic))

    @app.get("/events", include_in_schema=False)
    async def events(request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            seen: dict[str, int] = {}
            yield "retry: 1000\n\n"
            while True:
                changed = await state.hub.wait_for_change(seen, KEEPALIVE_SECONDS)
                if await request.is_disconnected():
                    return
                if not changed:
                    yield ": keep-alive\n\n"
                    continue
                for topic in changed:

                    async def render(t: str = topic) -> str:
                        return await state.render_topic(request, t)

                    version, html = await state.hub.rendered(topic, render)
                    seen[topic] = version
                    data = "\n".join(f"data: {line}" for line in html.splitlines() or [""])
                    yield f"event: {topic}\n{data}\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.get("/manifests/{name}", tags=["lab"], response_class=PlainTextResponse)
    async def manifest(name: str) -> PlainTextResponse:
        """One of the lab's manifests, exactly as `kubectl apply -f` gets it (the six files and kustomization.yaml)."""
        if name not in MANIFEST_FILES:
            raise NotFound(f"There is no lab manifest called {name!r}.", f"Use one of: {', '.join(MANIFEST_FILES)}.")
        return PlainTextResponse((MANIFESTS_DIR / name).read_text(encoding="utf-8"), media_type="text/yaml")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Guestbook lab dashboard · API",
            swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER}/favicon-32x32.png",
        )

    @app.api_route("/guestbook/{path:path}", methods=["GET", "HEAD", "POST"], include_in_schema=False)
    async def guestbook(request: Request, path: str) -> Response:
        """The exposed guestbook, through the dashboard: same origin for the embedded page, and reachable from any
        browser that reaches the dashboard (a room served by --host, a dashboard running in the cluster)."""
        url = state.platform.frontend_url()
        if url is None:
            raise PrerequisiteMissing("The guestbook is not exposed yet.", "Run the expose step (4) first.")
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "accept")}
        try:
            upstream = await state.http.request(
                request.method,
                f"{url.rstrip('/')}/{path}",
                params=request.query_params,
                content=await request.body(),
                headers=headers,
            )
        except httpx.HTTPError as exc:
            raise PlatformError(
                f"The guestbook frontend at {url} does not answer ({type(exc).__name__}).",
                "Look at the frontend pods; run the expose step again if its forward lost its pod.",
            ) from exc
        passed = {k: v for k, v in upstream.headers.items() if k.lower() in PROXIED_HEADERS}
        return Response(upstream.content, status_code=upstream.status_code, headers=passed)

    # -- the JSON API -----------------------------------------------------------------------------------------

    @app.get("/api/lab", tags=["lab"])
    async def api_lab() -> dict[str, Any]:
        """The platform, every step with its state, and the guestbook's URL once exposed."""
        return state.lab.to_json()

    async def run_step(step_id: str) -> dict[str, Any]:
        if step_id not in STEP_IDS:
            raise UnknownStep(f"There is no lab step called {step_id!r}.", f"Use one of: {', '.join(STEP_IDS)}.")
        result = await state.lab.run(step_id)
        state.sampler.poke()
        return result

    @app.post("/api/steps/{step_id}", tags=["lab"])
    async def api_step(step_id: str) -> dict[str, Any]:
        """Run one step (its action and its check) and return the step. 404 unknown id, 409 missing prerequisite."""
        return await run_step(step_id)

    @app.post("/steps/{step_id}", response_class=HTMLResponse, include_in_schema=False)
    async def page_step(request: Request, step_id: str) -> Response:
        """The page's buttons: the same as the API, answered with the steps fragment (errors shown inline)."""
        try:
            await run_step(step_id)
        except DashboardError as exc:
            ctx = await state.context(request, "steps")
            ctx["step_error"] = {"id": step_id, "message": exc.message, "hint": exc.hint}
            return HTMLResponse(TEMPLATES.get_template("_steps.html").render(ctx), status_code=exc.status)
        return HTMLResponse(await state.render_topic(request, "steps"))

    @app.get("/api/pods", tags=["observe"])
    async def api_pods() -> list[dict[str, Any]]:
        """The lab's pods: name, component, phase, ready, restarts (and status, age, reason, node, ip)."""
        return await state.pods_json()

    @app.get("/api/replication", tags=["observe"])
    async def api_replication() -> dict[str, Any]:
        """Leader and followers: role, link, offsets, gap; each node's guestbook entries; whether all agree."""
        return state.replication_json()

    @app.get("/api/activity", tags=["observe"])
    async def api_activity() -> list[dict[str, object]]:
        """What each step did, newest last."""
        return [a.to_json() for a in state.lab.activity]

    @app.get("/api/logs/{pod}", tags=["observe"])
    async def api_logs(pod: str, tail: int = 200) -> list[dict[str, object]]:
        """The last lines of one pod's output."""
        lines = await state.platform.logs(pod, max(1, min(tail, 2000)))
        return [{"pod": line.pod, "time": line.time, "text": line.text} for line in lines]

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, object]:
        return {"ok": True, "platform": state.platform.name, "uptime_seconds": round(time.time() - state.started, 1)}

    return app


# Feature modules register themselves here (imported last: they import State and TEMPLATES from this module).
from dashboard.drills import install as _install_drills  # noqa: E402

FEATURES.append(_install_drills)

from dashboard.preflight import install as _install_preflight  # noqa: E402

FEATURES.append(_install_preflight)
