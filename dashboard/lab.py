"""The lab runner: gives each step of `dashboard.steps` its action and its check, and keeps the steps' states.

One `Lab` per dashboard. Steps run one at a time under a lock, so clicks from several browsers queue instead
of interleaving; every step is idempotent (a second run re-applies, finds everything "unchanged" and re-checks).
A check polls real state with a deadline (never a fixed sleep) and fails with the reason it saw last.
The optional failure drills (`dashboard.steps.DRILLS`) run through the same runner and lock; their actions
are registered by `dashboard.drills` with `register_action`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import redis.asyncio as aioredis
import yaml

from dashboard.errors import DashboardError, PlatformRefused, PrerequisiteMissing, StepFailed, UnknownStep
from dashboard.models import RedisEndpoint, Step, StepStatus
from dashboard.platforms.base import Listener, Platform
from dashboard.settings import MANIFESTS_DIR, Settings
from dashboard.steps import DRILLS, STEPS, get_step

STATE_WORDS = {"pending": "it has not run yet", "running": "it is still running", "failed": "it failed", "done": "done"}
ACTIVITY_LIMIT = 500


@dataclass(frozen=True)
class Activity:
    """One line of the activity log: what a step did, as it happened."""

    time: float
    step: str
    text: str
    level: str = "info"  # info | command | ok | error

    def to_json(self) -> dict[str, object]:
        return {"time": self.time, "step": self.step, "text": self.text, "level": self.level}


def manifest_replicas(manifest: str) -> int:
    """spec.replicas of a Deployment manifest (1 when absent, as Kubernetes defaults it)."""
    with open(MANIFESTS_DIR / manifest, encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    replicas = document.get("spec", {}).get("replicas", 1)
    return int(replicas)


class Lab:
    """The steps' states, their actions and checks, and the activity log."""

    def __init__(self, settings: Settings, platform: Platform) -> None:
        self.settings = settings
        self.platform = platform
        self.steps: tuple[Step, ...] = STEPS
        self.drills: tuple[Step, ...] = DRILLS
        self.status: dict[str, StepStatus] = {step.id: StepStatus() for step in STEPS + DRILLS}
        self.before_cleanup: list[Callable[[], Awaitable[None]]] = []  # e.g. stop a running write load
        self.activity: deque[Activity] = deque(maxlen=ACTIVITY_LIMIT)
        self.desired = {
            "redis-leader": manifest_replicas("redis-leader-deployment.yaml"),
            "redis-follower": manifest_replicas("redis-follower-deployment.yaml"),
            "frontend": manifest_replicas("frontend-deployment.yaml"),
        }
        self._lock = asyncio.Lock()
        self._listeners: list[Listener] = []
        self._actions: dict[str, Callable[[str], Awaitable[str]]] = {
            "leader": self._leader,
            "followers": self._followers,
            "frontend": self._frontend,
            "expose": self._expose,
            "cleanup": self._cleanup,
        }

    def register_action(self, step_id: str, action: Callable[[str], Awaitable[str]]) -> None:
        """Give an optional step (a drill) its action: `action(step_id)` returns the success message."""
        self._actions[step_id] = action

    # -- observers -------------------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call `listener()` whenever a step's state or the activity log changes."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()

    def log(self, step: str, text: str, level: str = "info") -> None:
        self.activity.append(Activity(time.time(), step, text, level))
        self._changed()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def step_json(self, step_id: str) -> dict[str, object]:
        step = get_step(step_id)
        if step is None:
            raise UnknownStep(f"There is no lab step called {step_id!r}.", f"Use one of: {', '.join(self.status)}.")
        status = self.status[step_id]
        return {
            "id": step.id,
            "title": step.title,
            "explanation": step.explanation,
            "state": status.state,
            "message": status.message,
            "hint": status.hint,
            "started_at": status.started_at,
            "finished_at": status.finished_at,
            "duration_seconds": (
                round(status.finished_at - status.started_at, 3)
                if status.finished_at is not None and status.started_at is not None
                else None
            ),
            "output": list(status.output),
            "commands": list(step.commands),
            "manifests": list(step.manifests),
            "check": step.check,
            "requires": list(step.requires),
            "optional": step.optional,
            "warning": step.warning,
            "expect": step.expect,
            "available": step_id in self._actions,
        }

    def to_json(self) -> dict[str, object]:
        return {
            "platform": self.platform.name,
            "steps": [self.step_json(step.id) for step in self.steps],
            "drills": [self.step_json(step.id) for step in self.drills if step.id in self._actions],
            "frontend_url": self.platform.frontend_url(),
            "expose_note": self.platform.expose_note(),
            "busy": self.busy,
        }

    # -- running ---------------------------------------------------------------------------------------------

    def prerequisite_error(self, step_id: str) -> PrerequisiteMissing | None:
        """The error to answer with if a step that `step_id` builds on has not been done."""
        step = get_step(step_id)
        if step is None:
            return None
        for required in step.requires:
            if self.status[required].state != "done":
                needed = get_step(required)
                assert needed is not None
                return PrerequisiteMissing(
                    f"'{step.title}' needs '{needed.title}' to be done first.",
                    f"Run the {required} step first ({STATE_WORDS[self.status[required].state]}), then try again.",
                )
        return None

    async def run(self, step_id: str) -> dict[str, object]:
        """Run one step (its action, then its check) and return its JSON. Raises UnknownStep, PrerequisiteMissing."""
        step = get_step(step_id)
        if step is None:
            raise UnknownStep(f"There is no lab step called {step_id!r}.", f"Use one of: {', '.join(self.status)}.")
        error = self.prerequisite_error(step_id)
        if error is not None:
            raise error
        async with self._lock:
            error = self.prerequisite_error(step_id)  # a step that ran meanwhile (cleanup) may have reset it
            if error is not None:
                raise error
            if step_id not in self._actions:
                raise UnknownStep(f"The drill {step_id!r} is not available here.", "Use one of the main steps.")
            status = self.status[step_id]
            status.state, status.message, status.hint = "running", "", ""
            status.started_at, status.finished_at = time.time(), None
            status.output = []
            self.log(step_id, f"{step.title}…")
            try:
                message = await self._actions[step_id](step_id)
            except DashboardError as exc:
                status.state, status.message, status.hint = "failed", exc.message, exc.hint
                status.finished_at = time.time()
                self.log(step_id, f"{exc.message} {exc.hint}".strip(), "error")
            except Exception as exc:  # shown as one sentence, never as a traceback
                status.state = "failed"
                status.message = f"The step stopped on an unexpected error: {type(exc).__name__}: {exc}."
                status.hint = "Run the step again; if it fails the same way, look at the dashboard's terminal output."
                status.finished_at = time.time()
                self.log(step_id, status.message, "error")
            else:
                status.state, status.message = "done", message
                status.finished_at = time.time()
                seconds = status.finished_at - (status.started_at or status.finished_at)
                self.log(step_id, f"✓ {message} ({seconds:.2f} s)", "ok")
            return self.step_json(step_id)

    async def _apply(self, step_id: str, manifest: str) -> None:
        self.log(step_id, f"$ kubectl apply -f {manifest}", "command")
        for line in await self.platform.apply(manifest):
            self.status[step_id].output.append(line)
            self.log(step_id, line)

    async def wait(self, step_id: str, probe: Callable[[], Awaitable[str | None]], what: str) -> None:
        """Poll `probe` (None = passed, else why not yet) until it passes; StepFailed at the deadline."""
        await self._wait(step_id, probe, what)

    async def _wait(self, step_id: str, probe: Callable[[], Awaitable[str | None]], what: str) -> None:
        """Poll `probe` (None = passed, else the reason it has not yet) until it passes or the deadline."""
        deadline = time.monotonic() + self.settings.timeout_for_steps()
        reason = "not checked yet"
        while True:
            try:
                outcome = await probe()
            except PlatformRefused:
                raise  # waiting will not change it: fail now, with its sentence and fix
            except DashboardError as exc:
                outcome = exc.message
            if outcome is None:
                return
            reason = outcome
            if time.monotonic() >= deadline:
                raise StepFailed(
                    f"{what} did not happen within {self.settings.timeout_for_steps():.0f} s: {reason}",
                    "Look at the pods board and the logs for the reason, fix it, then run the step again.",
                )
            await asyncio.sleep(self.settings.check_interval())

    # -- the five steps ----------------------------------------------------------------------------------------

    async def _leader(self, step_id: str) -> str:
        for manifest in get_step(step_id).manifests:  # type: ignore[union-attr]
            await self._apply(step_id, manifest)
        found: list[str] = []

        async def probe() -> str | None:
            rollout = await self.platform.rollout_status("redis-leader", "redis-leader")
            if rollout:
                return rollout
            leaders = [e for e in await self.platform.redis_endpoints() if e.component == "redis-leader"]
            if not leaders:
                return "no redis-leader pod is running yet"
            info = await redis_info(leaders[0])
            if info.get("role") != "master":
                return f"{leaders[0].name} answers with role {info.get('role')!r}, not master"
            found[:] = [leaders[0].name]
            return None

        await self._wait(step_id, probe, "The leader answering PING with role master")
        return f"{found[0]} answers PING with role master."

    async def _followers(self, step_id: str) -> str:
        for manifest in get_step(step_id).manifests:  # type: ignore[union-attr]
            await self._apply(step_id, manifest)
        linked: list[str] = []

        async def probe() -> str | None:
            rollout = await self.platform.rollout_status("redis-follower", "redis-follower")
            if rollout:
                return rollout
            followers = [e for e in await self.platform.redis_endpoints() if e.component == "redis-follower"]
            want = self.desired["redis-follower"]
            if len(followers) < want:
                return f"{len(followers)} of {want} followers are running"
            infos = await asyncio.gather(*(redis_info(f) for f in followers), return_exceptions=True)
            for follower, info in zip(followers, infos, strict=True):
                if isinstance(info, BaseException):
                    return f"{follower.name} does not answer ({info})"
                if info.get("master_link_status") != "up":
                    return f"{follower.name} has master_link_status:{info.get('master_link_status', 'unknown')}"
            linked[:] = [f.name for f in followers]
            return None

        await self._wait(step_id, probe, "Both followers linking up to the leader")
        return f"{len(linked)} followers run with master_link_status:up ({', '.join(linked)})."

    async def _frontend(self, step_id: str) -> str:
        for manifest in get_step(step_id).manifests:  # type: ignore[union-attr]
            await self._apply(step_id, manifest)
        answered: list[str] = []

        async def probe() -> str | None:
            reason = await self.platform.rollout_status("frontend", "frontend") or await frontends_answer(
                self.platform, self.desired["frontend"], touch_healthz=True
            )
            if reason is None:
                answered[:] = await self.platform.frontend_endpoints()
            return reason

        await self._wait(step_id, probe, "Every frontend replica answering the guestbook API")
        return f"{len(answered)} frontend replicas answer the guestbook API; " + await self._frontend_paths()

    async def _frontend_paths(self) -> str:
        """Where the frontends' Redis connections go, from each node's CLIENT LIST (the Python frontend names them
        `gb-frontend-<pod>`; the upstream PHP frontend opens unnamed per-request connections, so it cannot be told)."""
        endpoints = await self.platform.redis_endpoints()
        found = await asyncio.gather(*(frontend_clients(e) for e in endpoints), return_exceptions=True)
        connected = {
            e.name: e.component for e, names in zip(endpoints, found, strict=True) if isinstance(names, list) and names
        }
        writers = [name for name, component in connected.items() if component == "redis-leader"]
        readers = sorted(name for name, component in connected.items() if component == "redis-follower")
        if writers and readers:
            return f"CLIENT LIST shows them writing to {', '.join(writers)} and reading from {', '.join(readers)}."
        return "they write to the redis-leader Service and read from the redis-follower Service."

    async def _expose(self, step_id: str) -> str:
        self.log(step_id, "$ kubectl port-forward svc/frontend 8080:80", "command")
        url = await self.platform.expose()
        self.status[step_id].output.append(f"Forwarding from {url}")
        self.log(step_id, f"Forwarding from {url}")

        async def probe() -> str | None:
            async with httpx.AsyncClient(timeout=2.0) as client:
                return await guestbook_answers(client, url.rstrip("/"))

        note = self.platform.expose_note()
        if note:
            self.status[step_id].output.append(note)
            self.log(step_id, note)
        await self._wait(step_id, probe, f"The guestbook answering at {url}")
        self._changed()
        return f"The guestbook answers at {url}" + (f" ({note})" if note else "")

    async def _cleanup(self, step_id: str) -> str:
        for stop in list(self.before_cleanup):
            await stop()
        for command in get_step(step_id).commands[:4]:  # type: ignore[union-attr]
            self.log(step_id, f"$ {command}", "command")
        for line in await self.platform.delete_lab():
            self.status[step_id].output.append(line)
            self.log(step_id, line)

        async def probe() -> str | None:
            left = await self.platform.leftovers()
            return "still there: " + "; ".join(left) if left else None

        await self._wait(step_id, probe, "Everything of the lab going away")
        for other in self.status:
            if other != step_id:
                self.status[other] = StepStatus()
        return "No resources found: no pod, process, data or port of the lab is left."


async def redis_info(endpoint: RedisEndpoint) -> dict[str, str]:
    """PING then `INFO replication` of one Redis pod, as a dict (a short-lived connection with tight timeouts)."""
    client = aioredis.Redis(
        host=endpoint.host, port=endpoint.port, socket_timeout=1.0, socket_connect_timeout=0.5, decode_responses=True
    )
    try:
        await client.ping()
        info = await client.info("replication")
        return {str(k): str(v) for k, v in info.items()}
    finally:
        await client.aclose()


async def frontend_clients(endpoint: RedisEndpoint) -> list[str]:
    """Names of the guestbook frontend's connections on one Redis pod (CLIENT LIST, names `gb-frontend-*`)."""
    client = aioredis.Redis(
        host=endpoint.host, port=endpoint.port, socket_timeout=1.0, socket_connect_timeout=0.5, decode_responses=True
    )
    try:
        clients = await client.client_list()
    finally:
        await client.aclose()
    return [str(c.get("name")) for c in clients if str(c.get("name", "")).startswith("gb-frontend-")]


async def frontends_answer(platform: Platform, want: int, *, touch_healthz: bool = False) -> str | None:
    """None when `want` frontend replicas are ready and each answers the guestbook API, else why not.

    `touch_healthz`: also GET each Python frontend's /healthz, which PINGs both Services so that CLIENT LIST can
    show where its connections go (the PHP frontend has no such page: its 404 is ignored).
    """
    urls = await platform.frontend_endpoints()
    if len(urls) != want:
        return f"{len(urls)} of {want} frontend replicas are ready"
    async with httpx.AsyncClient(timeout=2.0) as client:
        for url in urls:
            reason = await guestbook_answers(client, url)
            if reason:
                return reason
            if touch_healthz:
                with contextlib.suppress(httpx.HTTPError):
                    await client.get(f"{url}/healthz")
    return None


async def guestbook_answers(client: httpx.AsyncClient, base_url: str) -> str | None:
    """None when `GET <base>/guestbook.php?cmd=get` answers the upstream contract, else why it does not."""
    url = f"{base_url}/guestbook.php?cmd=get"
    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        return f"{base_url} does not answer ({type(exc).__name__})"
    if response.status_code != 200:
        return f"{url} answered HTTP {response.status_code}"
    try:
        body = json.loads(response.text)
    except ValueError:
        return f"{url} answered something that is not JSON"
    if not isinstance(body, dict) or "data" not in body:
        return f"{url} answered JSON without a data field"
    return None
