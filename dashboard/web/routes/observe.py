"""Observing the lab: its pods (`kubectl get pods`), the activity log and one pod's logs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from dashboard.web.deps import Lab
from dashboard.web.render import pods_json

router = APIRouter(tags=["observe"])


@router.get("/api/pods")
async def api_pods(session: Lab) -> list[dict[str, Any]]:
    """The lab's pods: name, component, phase, ready, restarts (and status, age, reason, node, ip)."""
    return await pods_json(session)


@router.get("/api/activity")
async def api_activity(session: Lab) -> list[dict[str, object]]:
    """What each step did, newest last."""
    return [a.to_json() for a in session.lab.activity]


@router.get("/api/logs/{pod}")
async def api_logs(session: Lab, pod: str, tail: int = 200) -> list[dict[str, object]]:
    """The last lines of one pod's output."""
    lines = await session.platform.logs(pod, max(1, min(tail, 2000)))
    return [{"pod": line.pod, "time": line.time, "text": line.text} for line in lines]
