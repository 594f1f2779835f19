"""Which lab a request is about: the `Lab` dependency every lab-scoped route takes.

Routes of the default lab live at the top (`/api/lab`, `/events`, …); the same routes of any other lab live
under `/labs/<id>/` (`create_app` includes each lab router twice). The lab is resolved once per request from the
path, through the app's `LabRegistry`, after `auth.authorize` (in workshop mode a learner reaches only their own
lab); an unknown lab id is a 404 with one sentence.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from dashboard.session import DEFAULT_LAB, LabRegistry, LabSession
from dashboard.web.auth import authorize


def registry(request: Request) -> LabRegistry:
    labs: LabRegistry = request.app.state.labs
    return labs


def lab_session(request: Request) -> LabSession:
    """The lab session this request addresses (`/labs/<id>/…`, else the default lab), if its principal may."""
    lab_id = str(request.path_params.get("lab_id", DEFAULT_LAB))
    workshop = request.app.state.workshop
    authorize(request, lab_id, workshop.room_of(lab_id) if workshop is not None else None)
    return registry(request).get(lab_id)


Lab = Annotated[LabSession, Depends(lab_session)]
