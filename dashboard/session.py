"""Lab sessions and their registry: many labs in one dashboard process.

A `LabSession` is everything one lab owns: its `Platform`, the `Lab` (steps, drills, activity), the Redis
`Sampler` with its lag history, the `Experiments` (probe, write load, drill marks, logs), the live `Hub` of its
topics and its background tasks. Nothing lab-specific lives at module or app level; closing a session stops all
of it (tasks, sampler, then the platform with every process or port-forward it started).

The `LabRegistry` holds the sessions by lab id. The single-learner dashboard is the lab `default`, opened with
the settings as given; any other lab gets settings of its own (`lab_settings`): on the local platform its own run
dir and a free frontend port, so its processes, ports and data stay apart; on Kubernetes its own namespace
(named after the lab id, created if missing); everywhere a sampling interval of at least 1 s, and of 5 s while
nobody needs the samples (no page open on the lab, no step, drill, probe or write load running). Lab ids are DNS
labels, so they are safe in paths, topic names and namespace names alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator

from dashboard.drills import Drills
from dashboard.errors import BadRequest, DashboardError, NotFound
from dashboard.experiments import Experiments
from dashboard.lab import Lab
from dashboard.live import Hub
from dashboard.platforms.base import Platform
from dashboard.sampler import Sampler
from dashboard.settings import Settings

log = logging.getLogger("dashboard")

DEFAULT_LAB = "default"
LAB_ID = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
PODS_REFRESH_SECONDS = 1.0
# A lab other than the default samples its Redis at most once a second: a room of 100 learners' samplers at the
# default 0.5 s cost the dashboard 0.36 core in steady state, at 1 s 0.18 (bench/bench_workshop_k8s.py).
LAB_SAMPLE_INTERVAL = 1.0
# ... and while nobody needs its samples (no page open on it, nothing running), every 5 s: a room of 100 learners'
# 300 Redis nodes read every second held the dashboard at ~0.5 core with nobody looking (bench/bench_workshop_k8s.py).
LAB_IDLE_SAMPLE_INTERVAL = 5.0
PlatformFactory = Callable[[Settings], Platform]


def check_lab_id(lab_id: str) -> str:
    """`lab_id` when it is a valid lab id (a DNS label of at most 40 characters), else BadRequest."""
    if not LAB_ID.match(lab_id):
        raise BadRequest(
            f"{lab_id[:60]!r} is not a valid lab id.",
            "Use lower-case letters, digits and '-' (at most 40, starting and ending with a letter or digit).",
        )
    return lab_id


def lab_settings(settings: Settings, lab_id: str) -> Settings:
    """The settings of lab `lab_id`: the default lab's as given; any other lab's with a run dir, frontend port and
    Kubernetes namespace of its own."""
    if lab_id == DEFAULT_LAB:
        return settings
    return settings.model_copy(
        update={
            "run_dir": settings.run_dir.with_name(f"{settings.run_dir.name}-lab-{lab_id}"),
            "frontend_port": 0,
            "namespace": lab_id,
            "create_namespace": True,
            "sample_interval": max(settings.sample_interval, LAB_SAMPLE_INTERVAL),
        }
    )


class LabSession:
    """One lab and everything it owns; `start()` once, `close()` once."""

    def __init__(self, lab_id: str, settings: Settings, platform: Platform) -> None:
        self.id = lab_id
        self.settings = settings
        self.platform = platform
        self.hub = Hub()
        self.lab = Lab(settings, platform)
        idle = LAB_IDLE_SAMPLE_INTERVAL if lab_id != DEFAULT_LAB else None
        self.sampler = Sampler(platform, interval=settings.sample_interval, idle_interval=idle, watched=self._watched)
        self.experiments = Experiments(platform, self.sampler, self.hub.publish)
        self.drills = Drills(self.lab, self.experiments, self.sampler)
        self.lab.before_cleanup.append(self.experiments.stop_load)
        self.started = time.time()
        self.platform_error: DashboardError | None = None
        self.notice: str | None = None  # a workshop instructor's message to this lab's page
        self._last_frontend_url: str | None = None
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            await self.platform.start()
        except DashboardError as exc:
            # Start anyway: the page shows the error and its fix, and every step retries the platform.
            self.platform_error = exc
            log.error("lab %s: %s %s", self.id, exc.message, exc.hint)
        self.platform.add_listener(self._pods_changed)
        self.platform.add_event_listener(lambda: self.hub.publish("events"))
        self.lab.add_listener(self._lab_changed)
        self.sampler.add_listener(lambda: self.hub.publish("replication"))
        await self.sampler.start()
        self.experiments.start()
        self._ticker = asyncio.create_task(self._tick(), name=f"pods-ticker-{self.id}")

    async def close(self) -> None:
        await self.experiments.close()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await self.sampler.stop()
        await self.platform.close()

    def _watched(self) -> bool:
        """Does anyone need this lab's samples now: a page open on it, or a step, drill, probe or load running?"""
        experiments = self.experiments
        load = experiments.load
        return bool(self.hub.viewers or self.lab.busy or experiments.probing or (load is not None and load.running))

    def _pods_changed(self) -> None:
        self.hub.publish("pods")
        self.sampler.poke()

    def _lab_changed(self) -> None:
        self.hub.publish("steps", "activity", "drills")
        url = self.platform.frontend_url()
        if url != self._last_frontend_url:
            self._last_frontend_url = url
            self.hub.publish("guestbook")

    async def _tick(self) -> None:
        """Pod ages move every second; one shared re-render per second, whatever the number of viewers."""
        while True:
            await asyncio.sleep(PODS_REFRESH_SECONDS)
            self.hub.publish("pods")

    async def run_step(self, step_id: str, *, drill: bool = False) -> dict[str, object]:
        """Resolve `step_id` once and run it (a main step, or with `drill` a failure drill)."""
        step = self.lab.resolve(step_id, drill=drill)
        result = await self.lab.run(step)
        self.sampler.poke()
        return result


class LabRegistry:
    """The app's lab sessions by id; `open` starts one (idempotent), `close` stops it, `close_all` at shutdown."""

    def __init__(self, settings: Settings, platform_factory: PlatformFactory) -> None:
        self.settings = settings
        self._factory = platform_factory
        self._sessions: dict[str, LabSession] = {}
        self._opening: dict[str, asyncio.Lock] = {}  # one lock per lab id: labs open side by side, each once

    def __iter__(self) -> Iterator[LabSession]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, lab_id: str) -> LabSession:
        session = self._sessions.get(lab_id)
        if session is None:
            raise NotFound(f"There is no lab called {lab_id[:60]!r}.", "Open the dashboard's main page.")
        return session

    async def open(self, lab_id: str, platform: Platform | None = None, *, room: str | None = None) -> LabSession:
        """The running session of `lab_id`, started now if it is not running (with `platform` if given); a workshop
        learner's lab (`room`) is first isolated by its platform when the platform can (`prepare_learner`)."""
        check_lab_id(lab_id)
        async with self._opening.setdefault(lab_id, asyncio.Lock()):
            session = self._sessions.get(lab_id)
            if session is None:
                settings = lab_settings(self.settings, lab_id)
                platform = platform or self._factory(settings)
                if room is not None and platform.capabilities.isolates_labs:
                    try:
                        await platform.prepare_learner(room)
                    except BaseException:
                        await platform.close()
                        raise
                session = LabSession(lab_id, settings, platform)
                await session.start()
                self._sessions[lab_id] = session
            return session

    async def close(self, lab_id: str) -> None:
        """Stop lab `lab_id` and everything it owns (its processes, tasks and streams)."""
        async with self._opening.setdefault(lab_id, asyncio.Lock()):
            session = self._sessions.pop(lab_id, None)
            if session is not None:
                await session.close()

    async def close_all(self) -> None:
        for lab_id in list(self._sessions):
            await self.close(lab_id)
