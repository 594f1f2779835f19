"""Workshop mode on the web: joining a room, the instructor's live grid, the projector page, the room's API.

- `/join` (anyone): the join form; `POST /join` with the code and a display name (and, to come back from another
  browser, the personal rejoin code) answers with the learner's lab and an HttpOnly, SameSite=Strict session
  cookie. Wrong codes: 10 per minute per client, then 429.
- `/rooms` (instructor): open a room, or the room's grid — learners × steps, live over `/rooms/<id>/events`,
  with per-learner reset, "bring to the end of step N", remove, a broadcast message and the room's lock.
- `/rooms/<id>/present` (instructor or the room's observer link `?key=`): the join code, the join URL and its QR
  code (an SVG drawn on the server by segno: nothing loads from outside), and the room's progress, for a projector.
- `/api/rooms/…`: the same data and actions as JSON; a learner's record as JSON or Markdown, the room as CSV.

`workshop_entry` sends a learner who opens `/` to their own lab and a stranger to `/join`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import segno
from fastapi import APIRouter, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from markupsafe import Markup

from dashboard.errors import BadRequest, DashboardError, NotFound
from dashboard.session import DEFAULT_LAB
from dashboard.web.auth import LEARNER_COOKIE, OBSERVER_COOKIE, principal, require_instructor
from dashboard.web.render import TEMPLATES, sse_event, wants_fragment
from dashboard.web.routes.drills import body_params
from dashboard.web.routes.live import KEEPALIVE_SECONDS
from dashboard.workshop import MAIN_STEP_IDS, Room, Workshop, grid_csv, record_markdown

router = APIRouter()


def workshop_of(request: Request) -> Workshop:
    workshop: Workshop | None = request.app.state.workshop
    if workshop is None:
        raise NotFound("This dashboard is not in workshop mode.", "Start it with --workshop to run a room of learners.")
    return workshop


def workshop_entry(request: Request) -> Response | None:
    """In workshop mode, `/` leads a learner to their lab and a stranger to /join; `?key=` becomes a cookie."""
    who = principal(request)
    key = request.query_params.get("key")
    if key and who.role == "observer" and request.method == "GET":
        redirect = RedirectResponse(str(request.url.remove_query_params("key")), status_code=303)
        redirect.set_cookie(OBSERVER_COOKIE, key, httponly=True, samesite="strict")
        return redirect
    if request.url.path == "/" and request.method == "GET":
        homes = {"learner": f"/labs/{who.lab_id}/", "anonymous": "/join", "observer": f"/rooms/{who.room_id}/present"}
        if who.role in homes:
            return RedirectResponse(homes[who.role], status_code=303)
    return None


def join_url(request: Request, room: Room, with_code: bool = False) -> str:
    url = f"{str(request.base_url).rstrip('/')}/join?room={room.id}"
    return url + (f"&code={room.join_code}" if with_code else "")


def qr_svg(url: str) -> Markup:
    """The QR code of `url` as inline SVG (drawn here, offline)."""
    svg = segno.make(url, error="m").svg_inline(scale=6, dark="#111", light="#fff", border=2)
    return Markup(svg)


# -- learners -----------------------------------------------------------------------------------------------------


@router.get("/join", include_in_schema=False)
async def join_page(request: Request) -> Response:
    workshop = workshop_of(request)
    only = workshop.only_room()
    room_id = request.query_params.get("room") or (only.id if only else "")
    ctx = {"room_id": room_id, "code": request.query_params.get("code", "")[:12], "base": ""}
    return TEMPLATES.TemplateResponse(request, "join.html", ctx)


@router.post("/join", tags=["workshop"], response_model=None)
async def join(request: Request) -> Response:
    """Join a room: {room, code, name[, rejoin_code]} → the learner's lab; sets the learner's session cookie."""
    workshop = workshop_of(request)
    params = await body_params(request)
    only = workshop.only_room()
    room_id = str(params.get("room") or (only.id if only else ""))
    learner, secret = await workshop.join(
        room_id,
        str(params.get("code", ""))[:40],
        str(params.get("name", ""))[:200],
        request.client.host if request.client else "unknown",
        rejoin_code=str(params.get("rejoin_code", "") or "")[:40],
    )
    url = f"/labs/{learner.id}/"
    body = {"room": learner.room, "lab": learner.id, "name": learner.name, "url": url}
    response: Response = JSONResponse(body)
    if wants_fragment(request):
        response = Response(status_code=204, headers={"HX-Redirect": url})
    response.set_cookie(LEARNER_COOKIE, secret, httponly=True, samesite="strict", path="/")
    return response


# -- the instructor -----------------------------------------------------------------------------------------------


async def room_preflight(request: Request) -> dict[str, Any] | None:
    """The room part of the platform's pre-flight (do --max-learners labs fit?), or None if it cannot say."""
    try:
        report = await request.app.state.labs.get(DEFAULT_LAB).platform.preflight()
    except DashboardError:
        return None
    return cast(dict[str, Any] | None, report.get("room"))


@router.get("/rooms", include_in_schema=False)
async def rooms_page(request: Request) -> Response:
    require_instructor(request)
    room = workshop_of(request).only_room()
    if room is not None:
        return RedirectResponse(f"/rooms/{room.id}", status_code=303)
    ctx = {"room": None, "base": "", "fit": await room_preflight(request)}
    return TEMPLATES.TemplateResponse(request, "rooms.html", ctx)


@router.post("/api/rooms", tags=["workshop"], response_model=None)
async def open_room(request: Request) -> Response:
    """Open a room (instructor): its id, join code, join URL and observer link."""
    require_instructor(request)
    params = await body_params(request)
    room = await workshop_of(request).open_room(str(params.get("title", "Guestbook lab")))
    if wants_fragment(request):
        return Response(status_code=204, headers={"HX-Redirect": f"/rooms/{room.id}"})
    return JSONResponse(room_json(request, room), status_code=201)


def room_json(request: Request, room: Room) -> dict[str, Any]:
    return {
        "id": room.id,
        "title": room.title,
        "join_code": room.join_code,
        "join_url": join_url(request, room),
        "observer_url": f"{str(request.base_url).rstrip('/')}/rooms/{room.id}/present?key={room.observer_key}",
        "locked": room.locked,
        "learners": len(room.learners),
    }


@router.get("/api/rooms", tags=["workshop"])
async def list_rooms(request: Request) -> list[dict[str, Any]]:
    """The rooms (instructor)."""
    require_instructor(request)
    return [room_json(request, room) for room in workshop_of(request).rooms.values()]


def room_for(request: Request, room_id: str, *, observer_may: bool = False) -> tuple[Workshop, Room]:
    who = principal(request)
    if not (observer_may and who.role == "observer" and who.room_id == room_id):
        require_instructor(request)
    workshop = workshop_of(request)
    return workshop, workshop.room(room_id)


@router.get("/api/rooms/{room_id}", tags=["workshop"])
async def room_grid(request: Request, room_id: str) -> dict[str, Any]:
    """The room's grid: learners × steps (state, time on the current step, last error, drills) and aggregates."""
    workshop, room = room_for(request, room_id, observer_may=True)
    grid = workshop.grid(room.id)
    return {**room_json(request, room), **grid} if principal(request).role == "instructor" else grid


@router.get("/api/rooms/{room_id}/export.csv", tags=["workshop"], response_class=PlainTextResponse)
async def room_csv(request: Request, room_id: str) -> Response:
    """The room as CSV: one row per learner, one column per step."""
    workshop, room = room_for(request, room_id)
    return Response(
        grid_csv(workshop.grid(room.id)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{room.id}.csv"'},
    )


@router.get("/api/rooms/{room_id}/learners/{learner_id}", tags=["workshop"])
async def learner_record(request: Request, room_id: str, learner_id: str) -> dict[str, Any]:
    """A learner's record: steps with times, outputs and results, drills, errors met, every transition."""
    workshop, room = room_for(request, room_id)
    return await workshop.record(room.id, learner_id)


@router.get("/api/rooms/{room_id}/learners/{learner_id}/record.md", tags=["workshop"])
async def learner_markdown(request: Request, room_id: str, learner_id: str) -> Response:
    """A learner's record as Markdown."""
    workshop, room = room_for(request, room_id)
    record = await workshop.record(room.id, learner_id)
    return PlainTextResponse(record_markdown(record), media_type="text/markdown; charset=utf-8")


async def grid_answer(request: Request, workshop: Workshop, room: Room) -> Response:
    if wants_fragment(request):
        return HTMLResponse(render_grid(workshop, room))
    return JSONResponse(workshop.grid(room.id))


@router.post("/api/rooms/{room_id}/learners/{learner_id}/reset", tags=["workshop"], response_model=None)
async def reset_learner(request: Request, room_id: str, learner_id: str) -> Response:
    """Delete the learner's lab objects and their progress (the cleanup step, run for them)."""
    workshop, room = room_for(request, room_id)
    await workshop.reset(room.id, learner_id)
    return await grid_answer(request, workshop, room)


@router.post("/api/rooms/{room_id}/learners/{learner_id}/bring", tags=["workshop"], response_model=None)
async def bring_learner(request: Request, room_id: str, learner_id: str) -> Response:
    """Bring the learner to the end of step N ({"step": N}): run the steps 1..N for them."""
    workshop, room = room_for(request, room_id)
    params = await body_params(request)
    raw = str(params.get("step", ""))
    if not raw.isdigit():
        raise BadRequest(
            "Say which step to bring the learner to.", f'Send {{"step": N}} with N from 1 to {len(MAIN_STEP_IDS)}.'
        )
    await workshop.bring_to(room.id, learner_id, int(raw))
    return await grid_answer(request, workshop, room)


@router.delete("/api/rooms/{room_id}/learners/{learner_id}", tags=["workshop"], response_model=None)
async def remove_learner(request: Request, room_id: str, learner_id: str) -> Response:
    """Take the learner out of the room and delete their lab (their record stays)."""
    workshop, room = room_for(request, room_id)
    await workshop.remove(room.id, learner_id)
    return await grid_answer(request, workshop, room)


@router.post("/api/rooms/{room_id}/broadcast", tags=["workshop"], response_model=None)
async def broadcast(request: Request, room_id: str) -> Response:
    """Show {"text"} on every learner's page (empty text takes it down)."""
    workshop, room = room_for(request, room_id)
    workshop.broadcast(room.id, str((await body_params(request)).get("text", "")))
    return await grid_answer(request, workshop, room)


@router.post("/api/rooms/{room_id}/lock", tags=["workshop"], response_model=None)
async def lock(request: Request, room_id: str) -> Response:
    """Lock ({"locked": true}) or unlock the room against new learners; learners who joined can still rejoin."""
    workshop, room = room_for(request, room_id)
    locked = str((await body_params(request)).get("locked", "true")).lower() in ("true", "1", "on", "yes")
    await workshop.lock(room.id, locked)
    return await grid_answer(request, workshop, room)


# -- pages and the live grid ----------------------------------------------------------------------------------------


def render_grid(workshop: Workshop, room: Room, *, present: bool = False) -> str:
    ctx = {"grid": workshop.grid(room.id), "room": room, "present": present}
    return TEMPLATES.get_template("_grid.html").render(ctx)


async def room_view(request: Request, room_id: str, *, present: bool) -> Response:
    """The instructor's page of a room or (`present`) the projector's view of it: join code, QR code, grid."""
    workshop, room = room_for(request, room_id, observer_may=present)
    ctx = {
        "room": room,
        "info": {"join_code": room.join_code, "join_url": join_url(request, room)}
        if present
        else room_json(request, room),
        "qr": qr_svg(join_url(request, room, with_code=True)),
        "grid_html": Markup(render_grid(workshop, room, present=present)),
        "present": present,
        "base": "",
        "fit": None if present else await room_preflight(request),
    }
    return TEMPLATES.TemplateResponse(request, "rooms.html", ctx)


@router.get("/rooms/{room_id}", include_in_schema=False)
async def room_page(request: Request, room_id: str) -> Response:
    return await room_view(request, room_id, present=False)


@router.get("/rooms/{room_id}/present", include_in_schema=False)
async def present_page(request: Request, room_id: str) -> Response:
    return await room_view(request, room_id, present=True)


@router.get("/rooms/{room_id}/events", include_in_schema=False)
async def room_events(request: Request, room_id: str) -> StreamingResponse:
    """The room's grid, live: one SSE stream per open instructor or projector page, each fragment rendered once
    per change for every viewer of the room."""
    workshop, room = room_for(request, room_id, observer_may=True)
    present = principal(request).role != "instructor" or request.query_params.get("present") == "1"
    topic = "present" if present else "grid"

    async def render() -> str:
        return render_grid(workshop, room, present=present)

    async def stream() -> AsyncIterator[str]:
        seen: dict[str, int] = {}
        yield "retry: 1000\n\n"
        while room.id in workshop.rooms:
            changed = await room.hub.wait_for_change(seen, KEEPALIVE_SECONDS)
            if await request.is_disconnected():
                return
            for other in changed:
                if other != topic:
                    seen[other] = room.hub.versions[other]
            if topic not in changed:
                if not changed:
                    yield ": keep-alive\n\n"
                continue
            version, html = await room.hub.rendered(topic, render)
            seen[topic] = version
            yield sse_event("grid", html)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
