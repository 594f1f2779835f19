"""A quiet shutdown: requests still running when the server stops end without a traceback.

On Ctrl-C/SIGTERM uvicorn waits `timeout_graceful_shutdown` for running requests (a drill, a step), then cancels
them, and logs each cancelled request as "Exception in ASGI application" with a CancelledError traceback. The
cancel is expected there: `QuietShutdown`, the outermost middleware, ends such a request with a 503 and one
sentence (if nothing was sent yet), so the only output of a stop is the dashboard's own. The lab itself is cleaned
up by the lifespan after this (every process stopped), as on any other stop.

Only the request's own task is cancelled that way (uvicorn cancels request tasks nowhere else), so no other
cancellation is swallowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SHUTTING_DOWN = {"error": "The dashboard is shutting down.", "hint": "Start it again, then retry."}
UVICORN_CANCEL_NOTICE = "Cancel %s running task(s), timeout graceful shutdown exceeded"


class QuietShutdown:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except asyncio.CancelledError:
            if started:
                return
            body = json.dumps(SHUTTING_DOWN).encode("utf-8")
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            with contextlib.suppress(Exception):  # the connection may be gone already
                await send({"type": "http.response.start", "status": 503, "headers": headers})
                await send({"type": "http.response.body", "body": body})


class DropCancelNotice(logging.Filter):
    """Drop uvicorn's "Cancel N running task(s)" error line: at a stop, cancelling those requests is the plan."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != UVICORN_CANCEL_NOTICE
