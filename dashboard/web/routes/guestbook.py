"""The exposed guestbook through the dashboard (`/guestbook/…`): a proxy to the lab's published frontend URL.

Same origin for the embedded page, and reachable from any browser that reaches the dashboard (a room served by
--host, a dashboard running in the cluster). One pooled HTTP client (`app.state.http`) serves every lab.

The proxy forwards the request's path and query string as the client sent them (raw bytes, still
percent-encoded: an invalid UTF-8 `value` reaches the frontend, which answers its own 400, instead of being
re-encoded to U+FFFD here), refuses a path with control characters (400), and refuses a write (`cmd=set` /
`cmd=append`) that a browser marks as coming from another site (`security.check_guestbook_write`). Bodies over
the dashboard's cap never get here (413, `web.limits`).
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response

from dashboard.errors import BadRequest, PlatformError, PrerequisiteMissing
from dashboard.security import check_guestbook_write, guestbook_commands
from dashboard.web.deps import Lab

router = APIRouter()
# Response headers of the guestbook frontend that the proxy passes on.
PROXIED_HEADERS = ("content-type", "cache-control", "content-security-policy", "allow", "x-content-type-options")
CONTROL_BYTES = re.compile(rb"[\x00-\x1f\x7f]")
NOT_URL_SAFE = re.compile(rb"[^\x21-\x7e]")  # raw bytes a URL cannot carry as they are: percent-encoded
FORM = "application/x-www-form-urlencoded"


def percent_encode_unsafe(raw: bytes) -> str:
    return NOT_URL_SAFE.sub(lambda m: b"%%%02X" % m.group()[0], raw).decode("ascii")


def raw_guestbook_path(request: Request, path: str) -> bytes:
    """The part of the raw request path after `/guestbook/` (`/labs/<id>/guestbook/…` too), still percent-encoded."""
    raw = request.scope.get("raw_path")
    if not isinstance(raw, bytes):
        return path.encode("utf-8")
    skip = 4 if "lab_id" in request.path_params else 2  # '', 'labs', id, 'guestbook' | '', 'guestbook'
    parts = raw.split(b"?", 1)[0].split(b"/", skip)
    return parts[skip] if len(parts) > skip else b""


@router.api_route("/guestbook/{path:path}", methods=["GET", "HEAD", "POST"], include_in_schema=False)
async def guestbook(request: Request, session: Lab, path: str) -> Response:
    raw_path = raw_guestbook_path(request, path)
    if CONTROL_BYTES.search(unquote_to_bytes(raw_path)) or CONTROL_BYTES.search(raw_path):
        raise BadRequest(
            "The guestbook address contains a control character.",
            "Remove it: the guestbook's addresses are /guestbook/ and /guestbook/guestbook.php?cmd=….",
        )
    raw_query: bytes = request.scope.get("query_string", b"")
    body = await request.body()
    commands = guestbook_commands(raw_query)
    if request.headers.get("content-type", "").split(";", 1)[0].strip().lower() == FORM:
        commands |= guestbook_commands(body)
    check_guestbook_write({k.lower(): v for k, v in request.headers.items()}, commands)
    url = session.platform.frontend_url()
    if url is None:
        raise PrerequisiteMissing("The guestbook is not exposed yet.", "Run the expose step (4) first.")
    client: httpx.AsyncClient = request.app.state.http
    headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "accept")}
    try:
        target = httpx.URL(f"{url.rstrip('/')}/{percent_encode_unsafe(raw_path)}")
        if raw_query:
            target = target.copy_with(query=percent_encode_unsafe(raw_query).encode("ascii"))
    except httpx.InvalidURL:
        raise BadRequest(
            "The guestbook address is not a valid URL.", "Use /guestbook/ or /guestbook/guestbook.php?cmd=…."
        ) from None
    try:
        upstream = await client.request(request.method, target, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise PlatformError(
            f"The guestbook frontend at {url} does not answer ({type(exc).__name__}).",
            "Look at the frontend pods; run the expose step again if its forward lost its pod.",
        ) from exc
    passed = {k: v for k, v in upstream.headers.items() if k.lower() in PROXIED_HEADERS}
    return Response(upstream.content, status_code=upstream.status_code, headers=passed)
