"""The exposed guestbook through the dashboard (`/guestbook/…`): a proxy to the lab's published frontend URL.

Same origin for the embedded page, and reachable from any browser that reaches the dashboard (a room served by
--host, a dashboard running in the cluster). One pooled HTTP client (`app.state.http`) serves every lab.
"""

from __future__ import annotations

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response

from dashboard.errors import PlatformError, PrerequisiteMissing
from dashboard.web.deps import Lab

router = APIRouter()
# Response headers of the guestbook frontend that the proxy passes on.
PROXIED_HEADERS = ("content-type", "cache-control", "content-security-policy", "allow", "x-content-type-options")


@router.api_route("/guestbook/{path:path}", methods=["GET", "HEAD", "POST"], include_in_schema=False)
async def guestbook(request: Request, session: Lab, path: str) -> Response:
    url = session.platform.frontend_url()
    if url is None:
        raise PrerequisiteMissing("The guestbook is not exposed yet.", "Run the expose step (4) first.")
    client: httpx.AsyncClient = request.app.state.http
    headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "accept")}
    try:
        upstream = await client.request(
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
