"""Framing headers on every response: only the dashboard itself may frame the dashboard (clickjacking).

`FrameHeaders` is a pure ASGI middleware adding `Content-Security-Policy: frame-ancestors 'self'` and
`X-Frame-Options: SAMEORIGIN` to every response (pages, fragments, errors, static files, the `/guestbook/` proxy,
the live stream). A response that already has a policy keeps it: ours is sent as a second
`Content-Security-Policy` header (browsers enforce every one), unless it already says `frame-ancestors`. The
embedded guestbook is an iframe of `/guestbook/` on the dashboard's own origin, which `'self'` allows.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

FRAME_ANCESTORS = b"frame-ancestors 'self'"
X_FRAME_OPTIONS = b"SAMEORIGIN"


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


class FrameHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = with_frame_headers(list(message.get("headers", [])))
            await send(message)

        await self.app(scope, receive, send_with_headers)
