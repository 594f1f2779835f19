"""A lab's experiments: the probe ("watch it replicate"), the write load, drill marks on the lag chart, side logs.

One `Experiments` per lab session holds that state and its background work (the lag and logs tickers); it
publishes topic names through the `publish` callback it is given (`lag`, `experiments`, `logs`) and renders
nothing: the web layer turns its data into fragments. Everything goes through the `Platform` protocol plus Redis
and HTTP, so it works on every platform.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dashboard.errors import Conflict, DashboardError
from dashboard.models import LogLine
from dashboard.platforms.base import Platform
from dashboard.probe import LoadRun, check_params, run_probe
from dashboard.sampler import Sampler

LAG_REFRESH_SECONDS = 1.0
LOGS_REFRESH_SECONDS = 1.0
LOGS_LEASE_SECONDS = 15.0
LOG_TAIL = 60
MARKS_LIMIT = 100


def _mark(kind: str, detail: str, node: str | None) -> dict[str, Any]:
    return {"time": time.time(), "kind": kind, "detail": detail, "node": node}


@dataclass
class Experiments:
    """The last probe, the current load, drill markers, the logs cache and its lease, of one lab."""

    platform: Platform
    sampler: Sampler
    publish: Callable[..., None]
    probe: dict[str, Any] | None = None
    probe_error: dict[str, str] | None = None
    probing: bool = False
    load: LoadRun | None = None
    marks: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MARKS_LIMIT))
    logs: list[tuple[str, str, list[LogLine]]] = field(default_factory=list)  # (pod, component, lines)
    logs_wanted_until: float = 0.0
    _probe_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def mark(self, kind: str, detail: str, node: str | None = None) -> None:
        """A marker on the lag chart (kind: one of replication_chart.MARKS); node None = every chart."""
        self.marks.append(_mark(kind, detail, node))
        self.publish("lag")

    # -- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._lag_ticker(), name="lag-ticker"),
            asyncio.create_task(self._logs_ticker(), name="logs-ticker"),
        ]

    async def close(self) -> None:
        await self.stop_load()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def stop_load(self) -> None:
        load = self.load
        if load is not None and load.task is not None and not load.task.done():
            load.stop()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(load.task), timeout=2.0)
            if not load.task.done():
                load.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await load.task

    async def _lag_ticker(self) -> None:
        """Publish `lag` once per second while the sampler has new samples (one render shared by all viewers)."""
        seen = -1
        while True:
            await asyncio.sleep(LAG_REFRESH_SECONDS)
            ticks = self.sampler.ticks
            if ticks != seen and (self.sampler.history.has_followers or seen == -1):
                seen = ticks
                self.publish("lag")

    async def _logs_ticker(self) -> None:
        """While a page shows the logs panel (a lease renewed by the page), read the Redis pods' logs each second."""
        while True:
            await asyncio.sleep(LOGS_REFRESH_SECONDS)
            if self.logs_watched:
                with contextlib.suppress(Exception):
                    await self.refresh_logs()

    @property
    def logs_watched(self) -> bool:
        return time.monotonic() <= self.logs_wanted_until

    async def watch_logs(self) -> None:
        """A page renews its interest in the logs panel (the logs are only read while someone looks)."""
        first = not self.logs_watched
        self.logs_wanted_until = time.monotonic() + LOGS_LEASE_SECONDS
        if first:
            with contextlib.suppress(Exception):
                await self.refresh_logs()

    async def refresh_logs(self) -> None:
        """Read the leader's and followers' logs; publish `logs` when they changed."""
        pods = [p for p in await self.platform.get_pods() if p.component != "frontend" and not p.deleting]
        pods.sort(key=lambda p: (p.component != "redis-leader", p.created_at, p.name))
        results = await asyncio.gather(*(self.platform.logs(p.name, LOG_TAIL) for p in pods), return_exceptions=True)
        logs: list[tuple[str, str, list[LogLine]]] = [
            (pod.name, pod.component, list(lines) if not isinstance(lines, BaseException) else [])
            for pod, lines in zip(pods, results, strict=True)
        ]

        def signature(items: list[tuple[str, str, list[LogLine]]]) -> list[tuple[str, int, str]]:
            return [(n, len(ls), ls[-1].text if ls else "") for n, _, ls in items]

        if signature(logs) != signature(self.logs):
            self.logs = logs
            self.publish("logs")

    # -- probe and load ---------------------------------------------------------------------------------------

    async def run_probe(self) -> dict[str, Any]:
        async with self._probe_lock:
            self.probing = True
            self.publish("experiments")
            try:
                result = await run_probe(self.platform)
            except DashboardError as exc:
                self.probe_error = exc.to_json()
                raise
            finally:
                self.probing = False
                self.publish("experiments")
            self.probe, self.probe_error = result, None
            for node in result["nodes"]:
                if node["role"] == "follower" and node["ms_after_leader"] is not None:
                    arrived = f"probe arrived {node['ms_after_leader']:.1f} ms after the leader"
                    self.marks.append(_mark("drill", arrived, node["name"]))
            self.publish("experiments", "lag")
            return result

    def start_load(self, rate: Any, seconds: Any) -> LoadRun:
        r, s = check_params(rate, seconds)
        if self.load is not None and self.load.running:
            raise Conflict(
                "A write load is already running.", "Wait for it to finish (or stop it), then start another."
            )
        load = LoadRun(self.platform, r, s, lambda: self.publish("experiments"))
        self.load = load
        load.start()
        self.publish("experiments")
        return load
