"""An in-memory Platform for web and lab tests that need no process: it records calls and serves fixed pods.

It implements the same protocol as the real platforms; the contract tests run the real local platform too.
"""

from __future__ import annotations

import time
from typing import Any

from dashboard.models import (
    Capabilities,
    EventRow,
    Listener,
    LogLine,
    PlatformName,
    Pod,
    RedisAccess,
    RedisEndpoint,
    Timing,
)


class FakePlatform:
    name: PlatformName = "local"
    capabilities = Capabilities("local platform", None, has_events=False, has_access_review=False, expose_modes=())

    def __init__(self, step_timeout: float = 20.0) -> None:
        self.timing = Timing(check_interval=0.01, step_timeout=step_timeout)
        self.applied: list[str] = []
        self.started = False
        self.closed = False
        self.listeners: list[Listener] = []
        self.pods: list[Pod] = []
        self.url: str | None = None

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def add_event_listener(self, listener: Listener) -> None:
        pass

    async def events(self, limit: int = 200) -> list[EventRow]:
        return []

    async def prepare_learner(self, room: str) -> list[str]:
        return []

    async def remove_learner(self) -> list[str]:
        return []

    async def preflight(self) -> dict[str, Any]:
        return {"platform": "local", "ok": True, "checks": [], "blocked": []}

    async def apply(self, manifest: str) -> list[str]:
        self.applied.append(manifest)
        return [f"applied {manifest}"]

    async def scale(self, deployment: str, replicas: int) -> list[str]:
        return [f"deployment.apps/{deployment} scaled"]

    async def delete_pod(self, name: str) -> list[str]:
        return [f'pod "{name}" deleted']

    async def delete_lab(self) -> list[str]:
        self.pods = []
        return ["deleted"]

    async def leftovers(self) -> list[str]:
        return [p.name for p in self.pods]

    async def get_pods(self) -> list[Pod]:
        return list(self.pods)

    async def rollout_status(self, deployment: str, service: str) -> str | None:
        return None if any(p.ready for p in self.pods) else f'deployment "{deployment}" has no ready pod'

    async def redis_endpoints(self) -> list[RedisEndpoint]:
        return []

    async def frontend_endpoints(self) -> list[str]:
        return []

    def redis_access(self) -> RedisAccess:
        return RedisAccess("loopback", "loopback", "a fake platform: nothing is dialled.")

    async def expose(self) -> str:
        self.url = "http://127.0.0.1:1/"
        return self.url

    def expose_note(self) -> str | None:
        return None

    def expose_command(self) -> str:
        return "kubectl port-forward svc/frontend 1:80"

    def frontend_url(self) -> str | None:
        return self.url

    async def logs(self, pod: str, tail: int = 200) -> list[LogLine]:
        return [LogLine(pod, time.time(), "hello")]
