"""The app factory: `create_app(settings, platform)` builds the FastAPI app of the dashboard.

It holds a `LabRegistry` (`app.state.labs`) whose lab `default` is today's single-learner dashboard, opened in
the lifespan and closed with every other lab at shutdown; includes one router per concern
(`dashboard.web.routes`), each lab router twice: at the top for the default lab and under `/labs/{lab_id}`
for the others; checks every request before any route runs (`dashboard.security`); and renders every error
once (`render.error_response`): JSON for the API, a fragment for htmx, a page otherwise — never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from dashboard import __version__
from dashboard.errors import BadRequest, DashboardError
from dashboard.platforms import Platform, create_platform
from dashboard.security import COOKIE, check_request, generate_token
from dashboard.session import DEFAULT_LAB, LabRegistry
from dashboard.settings import PROJECT_ROOT, Settings
from dashboard.store import Store
from dashboard.web.auth import identify
from dashboard.web.limits import Hardened
from dashboard.web.render import error_response
from dashboard.web.routes import LAB_ROUTERS, SITE_ROUTERS
from dashboard.web.routes.workshop import workshop_entry
from dashboard.workshop import Workshop

log = logging.getLogger("dashboard")
GUESTBOOK_PREFIX = "/guestbook/"
LAB_PREFIX = "/labs/{lab_id}"


def is_guestbook_path(path: str) -> bool:
    """The embedded guestbook's own requests: `/guestbook/…` of the default lab or `/labs/<id>/guestbook/…`."""
    if path.startswith("/labs/"):
        path = "/" + path.split("/", 3)[-1] if path.count("/") >= 3 else path
    return path.startswith(GUESTBOOK_PREFIX)


def create_app(settings: Settings | None = None, platform: Platform | None = None) -> FastAPI:
    """The dashboard app. Builds the default lab's platform from the settings unless one is given (tests do)."""
    settings = settings or Settings()
    if settings.workshop and not settings.token:  # the instructor is whoever holds the token
        settings = settings.model_copy(update={"token": generate_token()})
    labs = LabRegistry(settings, create_platform)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.http = httpx.AsyncClient(timeout=10.0)  # the /guestbook/ proxy's connections, for every lab
        await labs.open(DEFAULT_LAB, platform)
        store = Store(settings.data_dir / "workshop.sqlite3") if settings.workshop else None
        if store is not None:
            app.state.workshop = Workshop(labs, store, max_learners=settings.max_learners)
            await app.state.workshop.start()
        try:
            yield
        finally:
            if app.state.workshop is not None:
                await app.state.workshop.close()
            await labs.close_all()
            if store is not None:
                store.close()
            await app.state.http.aclose()

    app = FastAPI(
        title="Guestbook lab dashboard",
        version=__version__,
        description="Run the Kubernetes guestbook lab step by step and watch Redis replication live.",
        lifespan=lifespan,
        docs_url=None,  # served by the pages router from static/vendor: FastAPI's default loads from a CDN
        redoc_url=None,
    )
    app.state.labs = labs
    app.state.settings = settings
    app.state.workshop = None  # a Workshop in workshop mode (opened in the lifespan)
    for router in LAB_ROUTERS:
        app.include_router(router)
        app.include_router(router, prefix=LAB_PREFIX, include_in_schema=False)
    for router in SITE_ROUTERS:
        app.include_router(router)
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
                token=None if settings.workshop else settings.token,  # workshop: auth.identify decides
                loopback_only=settings.is_loopback,
                page_form=is_guestbook_path(request.url.path),
                allowed_hosts=settings.allowed_host,
            )
        except DashboardError as exc:
            return error_response(request, exc)
        if query_token and settings.token and request.method == "GET":
            # Jupyter-style: trade the token in the URL for a cookie, then drop it from the address bar.
            redirect = RedirectResponse(str(request.url.remove_query_params("token")), status_code=303)
            redirect.set_cookie(COOKIE, query_token, httponly=True, samesite="strict")
            return redirect
        request.state.principal = identify(request, settings.token, app.state.workshop)
        if app.state.workshop is not None:
            early = workshop_entry(request)
            if early is not None:
                return early
        response: Response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    # hostile input (issue 9), framing headers, a quiet stop: outermost, so they hold for every answer, the guard's
    # refusals included (`dashboard.web.limits`)
    app.add_middleware(Hardened)

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

    return app
