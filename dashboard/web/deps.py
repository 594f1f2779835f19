"""Which lab a request is about: the `Lab` dependency every lab-scoped route takes.

Routes of the default lab live at the top (`/api/lab`, `/events`, …); the same routes of any other lab live
under `/labs/<id>/` (`create_app` includes each lab router twice). The lab is resolved once per request from the
path, through the app's `LabRegistry`; an unknown lab id is a 404 with one sentence.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from dashboard.session import DEFAULT_LAB, LabRegistry, LabSession


def registry(request: Request) -> LabRegistry:
    labs: LabRegistry = request.app.state.labs
    return labs


def lab_session(request: Request) -> LabSession:
    """The lab session this request addresses (`/labs/<id>/…`, else the default lab)."""
    return registry(request).get(str(request.path_params.get("lab_id", DEFAULT_LAB)))


Lab = Annotated[LabSession, Depends(lab_session)]
