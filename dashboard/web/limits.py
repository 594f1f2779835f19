"""Limits on what a request may be, for every route: its body's size and its path's characters.

Pure ASGI middlewares, so no body is ever buffered to be measured.

`BodyLimit(app, max_bytes)` answers 413 with one sentence before the app runs when `Content-Length` says the body
is too large, and otherwise counts the bytes as the app reads them (chunked bodies, lying lengths): the read that
crosses the cap raises `PayloadTooLarge`, a `DashboardError`, which the app's error handler renders like every
other error (JSON, htmx fragment or page). Should it escape the app before a response started (alone, or wrapped
in the ExceptionGroup of a `BaseHTTPMiddleware`'s task group), it is answered here.

Not FastAPI's `max_body_size`: its 413 is a bare "Content Too Large" without the fix, whatever the error
handlers say. Bytes beyond the cap are never held: the server discards what the client still sends.

`CleanPath(app)` answers 400 with one sentence when the (percent-decoded) path holds a control character
(`%00`, `%0A`, …): no address of the dashboard has one, and passing one on (to the `/guestbook/` proxy) would only
fail deeper down.
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashboard.errors import DashboardError

MAX_BODY_BYTES = 1024 * 1024  # 1 MiB: the largest guestbook value is 1 MiB, every API body is a few bytes


CONTROL_CHARS = re.compile("[\x00-\x1f\x7f]")


class PayloadTooLarge(DashboardError):
    status = 413


class BadPath(DashboardError):
    status = 400


def too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is larger than the dashboard accepts ({max_bytes} bytes).",
        "Send a smaller body: the API takes small JSON objects or forms.",
    )


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, checking Content-Length first and then every chunk read."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0  # the server refuses a malformed Content-Length before we ever see it
                if declared > self.max_bytes:
                    await answer(send, too_large(self.max_bytes))
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise too_large(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except PayloadTooLarge as exc:
            if started:
                raise
            await answer(send, exc)
        except ExceptionGroup as group:  # a BaseHTTPMiddleware reads the body in a task group: unwrap ours only
            ours, others = group.split(PayloadTooLarge)
            if ours is None or others is not None or started:
                raise
            await answer(send, too_large(self.max_bytes))


class CleanPath:
    """Refuse a path with a control character (after percent-decoding) with 400, before any route runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and CONTROL_CHARS.search(scope.get("path", "")):
            error = BadPath(
                "The address contains a control character.",
                "Remove it: no address of the dashboard has one (see /docs for the API).",
            )
            await answer(send, error)
            return
        await self.app(scope, receive, send)


async def answer(send: Send, error: DashboardError) -> None:
    """Answer `error` as JSON (`{"error", "hint"}`) from outside the app, where its error handlers do not reach."""
    body = json.dumps(error.to_json(), ensure_ascii=False).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
