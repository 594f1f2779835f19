"""The live stream: one Server-Sent Events stream per browser tab, per lab (`/events`).

The stream waits on the lab's `Hub` for any topic's version to move and sends that topic's fragment, rendered
once per version for every viewer of the lab (`Hub.rendered`). A keep-alive comment every 15 s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from dashboard.web.deps import Lab
from dashboard.web.render import render_topic, sse_event

router = APIRouter()
KEEPALIVE_SECONDS = 15.0


@router.get("/events", include_in_schema=False)
async def events(request: Request, session: Lab) -> StreamingResponse:
    hub = session.hub

    async def stream() -> AsyncIterator[str]:
        seen: dict[str, int] = {}
        hub.viewers += 1
        session.sampler.poke()  # a lab nobody watched samples slowly: fresh figures for this viewer now
        try:
            yield "retry: 1000\n\n"
            while True:
                changed = await hub.wait_for_change(seen, KEEPALIVE_SECONDS)
                if await request.is_disconnected():
                    return
                if not changed:
                    yield ": keep-alive\n\n"
                    continue
                for topic in changed:
                    version, html = await hub.rendered(topic, partial(render_topic, session, topic))
                    seen[topic] = version
                    yield sse_event(topic, html)
        finally:
            hub.viewers -= 1

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
