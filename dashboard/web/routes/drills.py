"""Drills and experiments: the failure drills, the probe ("watch it replicate") and the bounded write load."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dashboard.errors import BadRequest
from dashboard.web.deps import Lab
from dashboard.web.render import respond

router = APIRouter()
LOAD_EXAMPLE = 'Send {"rate": 50, "seconds": 10}.'
DECIMAL = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9})?")


def decimal_field(value: str) -> int | float | str:
    """A form or query field as a number when it is strictly decimal (`50`, `2.5`), else the text (refused later)."""
    if not DECIMAL.fullmatch(value):
        return value
    return float(value) if "." in value else int(value)


async def body_params(request: Request) -> dict[str, Any]:
    """The parameters of a JSON object (values as sent), or of a form or the query string (decimal numbers parsed)."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype == "application/json":
        try:
            data = await request.json()
        except ValueError:
            raise BadRequest("The body is not valid JSON.", LOAD_EXAMPLE) from None
        if not isinstance(data, dict):
            raise BadRequest("The body must be a JSON object.", LOAD_EXAMPLE)
        return data
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return {k: decimal_field(v) if isinstance(v, str) else v for k, v in (await request.form()).items()}
    return {k: decimal_field(v) for k, v in request.query_params.items()}


@router.post("/api/drills/{drill_id}", tags=["lab"], response_model=None)
async def api_drill(request: Request, session: Lab, drill_id: str) -> Response:
    """Run one failure drill (optional step) and return it. 404 unknown id, 409 before the main steps it needs."""
    return await respond(request, session, await session.run_step(drill_id, drill=True), "drills")


@router.post("/api/probe", tags=["experiments"], response_model=None)
async def api_probe(request: Request, session: Lab) -> Response:
    """Write one marked entry through the frontend; per node the ms until it appeared; WAIT's count."""
    return await respond(request, session, await session.experiments.run_probe(), "experiments")


@router.get("/api/probe", tags=["experiments"])
async def api_probe_last(session: Lab) -> dict[str, Any] | None:
    """The last probe's result (null before the first)."""
    return session.experiments.probe


@router.post("/api/load", tags=["experiments"], status_code=202, response_model=None)
async def api_load(request: Request, session: Lab) -> Response:
    """Start writing `rate` entries per second for `seconds` through the frontend (rate ≤ 500, seconds ≤ 60)."""
    params = await body_params(request)
    load = session.experiments.start_load(params.get("rate"), params.get("seconds"))
    return await respond(request, session, load.to_json(), "experiments", status_code=202)


@router.get("/api/load", tags=["experiments"])
async def api_load_status(session: Lab) -> dict[str, object] | None:
    """The current or last write load: progress, then found/missing per node (null before the first)."""
    load = session.experiments.load
    return load.to_json() if load else None


@router.delete("/api/load", tags=["experiments"], response_model=None)
async def api_load_stop(request: Request, session: Lab) -> Response:
    """Stop the running write load early (its entries are still accounted for)."""
    load = session.experiments.load
    if load is not None:
        load.stop()
    return await respond(request, session, load.to_json() if load else None, "experiments")
