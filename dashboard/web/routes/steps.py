"""The lab's steps: its state and running one step (JSON for scripts, the steps fragment for the page)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dashboard.web.deps import Lab
from dashboard.web.render import respond

router = APIRouter(tags=["lab"])


@router.get("/api/lab")
async def api_lab(session: Lab) -> dict[str, Any]:
    """The platform, every step with its state, and the guestbook's URL once exposed."""
    return session.lab.to_json()


@router.post("/api/steps/{step_id}", response_model=None)
async def api_step(request: Request, session: Lab, step_id: str) -> Response:
    """Run one step (its action and its check) and return the step. 404 unknown id, 409 missing prerequisite."""
    return await respond(request, session, await session.run_step(step_id), "steps")
