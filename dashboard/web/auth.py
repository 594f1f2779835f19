"""Who is asking, and may they see this lab: the principal of a request, and the rule every lab route applies.

Outside workshop mode everyone who passed the request guard (loopback, or the dashboard's token) owns every lab:
the principal is the `instructor`. In workshop mode:

- `instructor`: carries the dashboard's token (bearer, or the cookie traded for `?token=`);
- `learner`: carries the HttpOnly, SameSite=Strict session cookie set when they joined; may use only their own
  lab (`/labs/<their lab>/…`), through every route: page, JSON API, SSE, guestbook proxy, logs;
- `observer`: carries a room's observer key (`?key=` traded for a cookie); may read (GET) the room's projector
  page and the labs of that room, never change anything;
- `anonymous`: nothing of the above; may open `/join` and the site's static files only.

`authorize(request, lab_id)` is called by the `Lab` dependency for every lab route, so no lab route can forget it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

from fastapi import Request

from dashboard.errors import Forbidden
from dashboard.security import COOKIE, Unauthorized, bearer_token, same_token

if TYPE_CHECKING:
    from dashboard.workshop import Workshop

LEARNER_COOKIE = "guestbook_lab_learner"
OBSERVER_COOKIE = "guestbook_lab_observer"
Role = Literal["instructor", "learner", "observer", "anonymous"]
READ_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class Principal:
    role: Role
    lab_id: str | None = None  # a learner's lab
    room_id: str | None = None  # a learner's or observer's room


INSTRUCTOR = Principal("instructor")
ANONYMOUS = Principal("anonymous")


def _same(candidate: str | None, secret: str | None) -> bool:
    return bool(candidate and secret and same_token(candidate, secret))


def identify(request: Request, token: str | None, workshop: Workshop | None) -> Principal:
    """The principal of `request` (see the module docstring)."""
    if workshop is None:
        return INSTRUCTOR
    bearer = bearer_token(request.headers.get("authorization", ""))
    if any(_same(c, token) for c in (bearer, request.cookies.get(COOKIE), request.query_params.get("token"))):
        return INSTRUCTOR
    learner = workshop.learner_for_secret(request.cookies.get(LEARNER_COOKIE))
    if learner is not None:
        return Principal("learner", lab_id=learner.id, room_id=learner.room)
    key = request.cookies.get(OBSERVER_COOKIE) or request.query_params.get("key")
    for room in workshop.rooms.values():
        if _same(key, room.observer_key):
            return Principal("observer", room_id=room.id)
    return ANONYMOUS


def principal(request: Request) -> Principal:
    return cast(Principal, getattr(request.state, "principal", INSTRUCTOR))


def authorize(request: Request, lab_id: str, room_of_lab: str | None) -> None:
    """Raise unless the request's principal may use lab `lab_id` (of room `room_of_lab`) with this method."""
    who = principal(request)
    if who.role == "instructor" or (who.role == "learner" and who.lab_id == lab_id):
        return
    if who.role == "observer" and request.method in READ_METHODS and room_of_lab == who.room_id:
        return
    if who.role == "anonymous":
        raise Unauthorized("Join the workshop first.", "Open /join and type the code shown on the projector.")
    if who.role == "observer":
        raise Forbidden("An observer link can only look.", "Ask the instructor to change anything.")
    raise Forbidden("This lab belongs to someone else.", "Use your own lab: open /join again if you are lost.")


def require_instructor(request: Request) -> None:
    if principal(request).role != "instructor":
        raise Forbidden(
            "Only the instructor can do this.", "Open the dashboard with the instructor's token (?token=…)."
        )
