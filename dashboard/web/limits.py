"""Hostile input and a quiet stop, for every route: one pure ASGI middleware, `Hardened`, outside everything else.

Pure ASGI, so no body is ever buffered to be measured. For every HTTP request:
- a control character in the (percent-decoded) path (`%00`, `%0A`, …) is answered 400: no address of the dashboard
  has one, and passing one on (to the `/guestbook/` proxy) would only fail deeper down;
- a body over `max_bytes` is answered 413: before the app runs when `Content-Length` says so, else at the read that
  crosses the cap (chunked bodies, lying lengths), which raises `PayloadTooLarge` for the app's error handler to
  render like every other error (answered here if it escapes the app before a response started, alone or in a
  `BaseHTTPMiddleware`'s ExceptionGroup). Not FastAPI's `max_body_size`: its 413 is a bare "Content Too Large"
  without the fix, whatever the error handlers say. Bytes beyond the cap are never held;
- every response gets `Content-Security-Policy: frame-ancestors 'self'` and `X-Frame-Options: SAMEORIGIN`: only the
  dashboard may frame the dashboard (clickjacking; the embedded guestbook is an iframe of its own origin). A
  response's own policy is kept: ours is a second header (browsers enforce every one) unless it says
  `frame-ancestors` already;
- a request cancelled by the server's stop ends with a 503 and one sentence (if nothing was sent yet): on
  Ctrl-C/SIGTERM uvicorn cancels the requests still running after `timeout_graceful_shutdown` (a drill, a step)
  and would log each with a CancelledError traceback; `DropCancelNotice` drops its notice line too. Only a
  request's own task is cancelled that way, so no other cancellation is swallowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashboard.errors import BadRequest, DashboardError

MAX_BODY_BYTES = 1024 * 1024  # 1 MiB: the largest guestbook value is 1 MiB, every API body is a few bytes
CONTROL_CHARS = re.compile("[\x00-\x1f\x7f]")
FRAME_ANCESTORS = b"frame-ancestors 'self'"
X_FRAME_OPTIONS = b"SAMEORIGIN"
UVICORN_CANCEL_NOTICE = "Cancel %s running task(s), timeout graceful shutdown exceeded"


class PayloadTooLarge(DashboardError):
    status = 413


class ShuttingDown(DashboardError):
    status = 503


def too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is larger than the dashboard accepts ({max_bytes} bytes).",
        "Send a smaller body: the API takes small JSON objects or forms.",
    )


def with_frame_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` (ASGI: lower-case names) plus ours, where missing."""
    names = {name.lower() for name, _ in headers}
    policies = [value for name, value in headers if name.lower() == b"content-security-policy"]
    out = list(headers)
    if not any(b"frame-ancestors" in policy for policy in policies):
        out.append((b"content-security-policy", FRAME_ANCESTORS))
    if b"x-frame-options" not in names:
        out.append((b"x-frame-options", X_FRAME_OPTIONS))
    return out


def refusal(scope: Scope, max_bytes: int) -> DashboardError | None:
    """The error to answer before the app runs: a control character in the path, a declared body too large."""
    if CONTROL_CHARS.search(scope.get("path", "")):
        return BadRequest(
            "The address contains a control character.",
            "Remove it: no address of the dashboard has one (see /docs for the API).",
        )
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = 0  # the server refuses a malformed Content-Length before we ever see it
            if declared > max_bytes:
                return too_large(max_bytes)
    return None


class Hardened:
    """The middleware of the module docstring: path and body limits, framing headers, a quiet cancel."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
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

        async def framed_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": with_frame_headers(list(message.get("headers", [])))}
            await send(message)

        try:
            error = refusal(scope, self.max_bytes)
            if error is None:
                try:
                    await self.app(scope, limited_receive, framed_send)
                except PayloadTooLarge as exc:
                    if started:
                        raise
                    error = exc
                except ExceptionGroup as group:  # a BaseHTTPMiddleware reads the body in a task group: ours only
                    ours, others = group.split(PayloadTooLarge)
                    if ours is None or others is not None or started:
                        raise
                    error = too_large(self.max_bytes)
            if error is not None:
                await answer(framed_send, error)
        except asyncio.CancelledError:
            if not started:
                with contextlib.suppress(Exception):  # the connection may be gone already
                    await answer(send, ShuttingDown("The dashboard is shutting down.", "Start it again, then retry."))


async def answer(send: Send, error: DashboardError) -> None:
    """Answer `error` as JSON (`{"error", "hint"}`) from outside the app, where its error handlers do not reach."""
    body = json.dumps(error.to_json(), ensure_ascii=False).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class DropCancelNotice(logging.Filter):
    """Drop uvicorn's "Cancel N running task(s)" error line: at a stop, cancelling those requests is the plan."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != UVICORN_CANCEL_NOTICE
