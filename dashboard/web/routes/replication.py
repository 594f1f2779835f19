"""Replication and lag: the sampler's snapshot, the lag history with drill marks, and the side-by-side logs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from dashboard.logs import classify_log
from dashboard.web.deps import Lab
from dashboard.web.render import replication_json

router = APIRouter(tags=["observe"])


@router.get("/api/replication")
async def api_replication(session: Lab) -> dict[str, Any]:
    """Leader and followers: role, link, offsets, gap; each node's guestbook entries; whether all agree; how the
    platform reaches the Redis pods (`redis_access`)."""
    return replication_json(session)


@router.get("/api/lag")
async def api_lag(session: Lab) -> dict[str, Any]:
    """Per follower the last samples {time, gap_bytes, seconds_behind, link}; replication events; drill marks."""
    history = session.sampler.history.to_json()
    return {**history, "interval": session.settings.sample_interval, "marks": list(session.experiments.marks)}


@router.get("/api/logs-side")
async def api_logs_side(session: Lab) -> list[dict[str, object]]:
    """Leader and followers' last log lines, each with its replication kind (ok/full/partial/bad/link or "")."""
    await session.experiments.refresh_logs()
    out: list[dict[str, object]] = []
    for name, component, lines in session.experiments.logs:
        rows = []
        for line in lines:
            _, message, kind, _ = classify_log(line.text)
            rows.append({"time": line.time, "text": line.text, "message": message, "kind": kind})
        out.append({"pod": name, "component": component, "lines": rows})
    return out


@router.get("/logs/watch", include_in_schema=False)
async def logs_watch(session: Lab) -> Response:
    """The page renews its interest in the logs panel (the logs are only read while someone looks)."""
    await session.experiments.watch_logs()
    return Response(status_code=204)
