"""Which lab a request is about: the `Lab` dependency every lab-scoped route takes.

Routes of the default lab live at the top (`/api/lab`, `/events`, …); the same routes of any other lab live
under `/labs/<id>/` (`create_app` includes each lab router twice). The lab is resolved once per request from the
path, through the app's `LabRegistry`, after `auth.authorize` (in workshop mode a learner reaches only their own
lab); an unknown lab id is a 404 with one sentence.
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from dashboard.errors import NotFound, NotReady
from dashboard.session import DEFAULT_LAB, LabRegistry, LabSession
from dashboard.web.auth import authorize


def registry(request: Request) -> LabRegistry:
    return cast(LabRegistry, request.app.state.labs)


def lab_session(request: Request) -> LabSession:
    """The lab session this request addresses (`/labs/<id>/…`, else the default lab), if its principal may."""
    lab_id = str(request.path_params.get("lab_id", DEFAULT_LAB))
    workshop = request.app.state.workshop
    room = workshop.room_of(lab_id) if workshop is not None else None
    authorize(request, lab_id, room)
    try:
        return registry(request).get(lab_id)
    except NotFound:
        if room is None:
            raise
        raise NotReady(  # a learner who just joined, or any learner after a restart, before their lab is open
            "Your lab is being prepared.", "This page reloads by itself in a moment."
        ) from None


Lab = Annotated[LabSession, Depends(lab_session)]
