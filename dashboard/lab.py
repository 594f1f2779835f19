"""The lab runner: binds each step of `dashboard.steps` to its action and check, and keeps the steps' states.

One `Lab` per lab session. An action is registered next to its function with an `ActionTable` decorator
(`@STEP_ACTIONS("leader")`), which checks at import that the step exists; a step id is resolved to its `Step`
once per request (`Lab.resolve`) and the action gets the `Step`. Actions return an `Outcome`: the sentence the
page shows plus structured facts (`result` in the JSON) that scripts and tests read.

Steps run one at a time under a lock, so clicks from several browsers queue instead of interleaving; every
step is idempotent (a second run re-applies, finds everything "unchanged" and re-checks). A check polls real
state with a deadline (never a fixed sleep) and fails with the reason it saw last. The optional failure drills
(`dashboard.steps.DRILLS`) run through the same runner and lock; their actions come from `dashboard.drills`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Generic, TypeVar

import httpx
import yaml
from redis.exceptions import RedisError

from dashboard.errors import DashboardError, PlatformRefused, PrerequisiteMissing, StepFailed, UnknownStep
from dashboard.models import COMPONENTS, Listener, Step, StepStatus
from dashboard.platforms import Platform
from dashboard.redis_nodes import frontend_clients, redis_info
from dashboard.settings import MANIFESTS_DIR, Settings
from dashboard.steps import DRILL_IDS, DRILLS, STEP_IDS, STEPS, get_step

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


@dataclass(frozen=True)
class Outcome:
    """What a step's action reports: the sentence the page shows and the facts behind it (JSON `result`)."""

    message: str
    facts: Mapping[str, object] = field(default_factory=dict)


Owner = TypeVar("Owner")
Action = Callable[[Step], Awaitable[Outcome]]
Method = Callable[[Owner, Step], Awaitable[Outcome]]  # an action before it is bound to its owner


class ActionTable(Generic[Owner]):
    """Step id -> the method that runs it, filled by decorating the methods: `@TABLE("leader")`."""

    def __init__(self) -> None:
        self.methods: dict[str, Method[Owner]] = {}

    def __call__(self, step_id: str) -> Callable[[Method[Owner]], Method[Owner]]:
        if get_step(step_id) is None:
            raise ValueError(f"no step {step_id!r} in dashboard.steps")

        def register(method: Method[Owner]) -> Method[Owner]:
            self.methods[step_id] = method
            return method

        return register

    def bind(self, owner: Owner) -> dict[str, Action]:
        """The table's actions bound to one owner (a lab, a lab's drills)."""
        return {step_id: partial(method, owner) for step_id, method in self.methods.items()}


STEP_ACTIONS: ActionTable[Lab] = ActionTable()


def manifest_replicas(manifest: str) -> int:
    """spec.replicas of a Deployment manifest (1 when absent, as Kubernetes defaults it)."""
    document = yaml.safe_load((MANIFESTS_DIR / manifest).read_text(encoding="utf-8"))
    return int(document.get("spec", {}).get("replicas", 1))


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
        self.desired = {component: manifest_replicas(f"{component}-deployment.yaml") for component in COMPONENTS}
        if settings.workshop_profile:  # a room of labs on one machine or cluster: one frontend per learner
            self.desired["frontend"] = 1
        self._lock = asyncio.Lock()
        self._listeners: list[Listener] = []
        self._actions: dict[str, Action] = STEP_ACTIONS.bind(self)

    def add_actions(self, actions: Mapping[str, Action]) -> None:
        """Give the optional steps (the drills) their actions."""
        self._actions.update(actions)

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

    def say(self, step: Step, text: str, level: str = "info") -> None:
        """A line of a running step's output, also in the activity log."""
        self.status[step.id].output.append(text)
        self.log(step.id, text, level)

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def resolve(self, step_id: str, *, drill: bool = False) -> Step:
        """The main step (or, with `drill`, the drill) called `step_id`; UnknownStep otherwise."""
        ids = DRILL_IDS if drill else STEP_IDS
        step = get_step(step_id) if step_id in ids else None
        if step is None:
            kind = "drill" if drill else "lab step"
            raise UnknownStep(f"There is no {kind} called {step_id!r}.", f"Use one of: {', '.join(ids)}.")
        return step

    def step_json(self, step: Step) -> dict[str, object]:
        status = self.status[step.id]
        return {
            "id": step.id,
            "title": step.title,
            "explanation": step.explanation,
            "state": status.state,
            "message": status.message,
            "hint": status.hint,
            "result": dict(status.facts),
            "started_at": status.started_at,
            "finished_at": status.finished_at,
            "duration_seconds": None if status.duration is None else round(status.duration, 3),
            "output": list(status.output),
            "commands": list(step.commands),
            "manifests": list(step.manifests),
            "check": step.check,
            "requires": list(step.requires),
            "optional": step.optional,
            "warning": step.warning,
            "expect": step.expect,
            "available": step.id in self._actions,
        }

    def to_json(self) -> dict[str, object]:
        return {
            "platform": self.platform.name,
            "steps": [self.step_json(step) for step in self.steps],
            "drills": [self.step_json(step) for step in self.drills if step.id in self._actions],
            "frontend_url": self.platform.frontend_url(),
            "expose_note": self.platform.expose_note(),
            "busy": self.busy,
        }

    # -- running ---------------------------------------------------------------------------------------------

    def check_prerequisites(self, step: Step) -> None:
        """PrerequisiteMissing if a step that `step` builds on has not been done."""
        for required in step.requires:
            state = self.status[required].state
            if state != "done":
                raise PrerequisiteMissing(
                    f"'{step.title}' needs '{self.resolve(required).title}' to be done first.",
                    f"Run the {required} step first ({STATE_WORDS[state]}), then try again.",
                )

    async def run(self, step: Step) -> dict[str, object]:
        """Run one step (its action, then its check) and return its JSON. Raises PrerequisiteMissing."""
        self.check_prerequisites(step)
        async with self._lock:
            self.check_prerequisites(step)  # a step that ran meanwhile (cleanup) may have reset it
            action = self._actions.get(step.id)
            if action is None:
                raise UnknownStep(f"The drill {step.id!r} is not available here.", "Use one of the main steps.")
            status = self.status[step.id] = StepStatus(state="running", started_at=time.time())
            self.log(step.id, f"{step.title}…")
            try:
                outcome = await action(step)
            except DashboardError as exc:
                status.state, status.message, status.hint = "failed", exc.message, exc.hint
                status.finished_at = time.time()
                self.log(step.id, f"{exc.message} {exc.hint}".strip(), "error")
            except Exception as exc:  # shown as one sentence, never as a traceback
                status.state = "failed"
                status.message = f"The step stopped on an unexpected error: {type(exc).__name__}: {exc}."
                status.hint = "Run the step again; if it fails the same way, look at the dashboard's terminal output."
                status.finished_at = time.time()
                self.log(step.id, status.message, "error")
            else:
                status.state, status.message, status.facts = "done", outcome.message, dict(outcome.facts)
                status.finished_at = time.time()
                seconds = status.finished_at - (status.started_at or status.finished_at)
                self.log(step.id, f"✓ {outcome.message} ({seconds:.2f} s)", "ok")
            return self.step_json(step)

    async def _kubectl(self, step: Step, command: str, lines: Awaitable[list[str]]) -> None:
        """Log `$ <command>` and then each line the platform answers with, as the step's output."""
        self.log(step.id, f"$ {command}", "command")
        for line in await lines:
            self.say(step, line)

    async def _apply(self, step: Step) -> None:
        for manifest in step.manifests:
            await self._kubectl(step, f"kubectl apply -f {manifest}", self.platform.apply(manifest))

    async def wait(self, probe: Callable[[], Awaitable[str | None]], what: str) -> None:
        """Poll `probe` (None = passed, else the reason it has not yet) until it passes; StepFailed at the deadline."""
        timeout = self.platform.timing.step_timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                outcome = await probe()
            except PlatformRefused:
                raise  # waiting will not change it: fail now, with its sentence and fix
            except DashboardError as exc:
                outcome = exc.message
            except (RedisError, OSError, httpx.HTTPError) as exc:
                # A node that is slow or goes away mid-check (a loaded machine, a pod being replaced) is "not yet",
                # not the end of the step: e.g. redis-py's "Timed out closing connection after 0.5" with 100 labs.
                outcome = f"{type(exc).__name__}: {exc}"
            if outcome is None:
                return
            if time.monotonic() >= deadline:
                raise StepFailed(
                    f"{what} did not happen within {timeout:.0f} s: {outcome}",
                    "Look at the pods board and the logs for the reason, fix it, then run the step again.",
                )
            await asyncio.sleep(self.platform.timing.check_interval)

    # -- the five steps ----------------------------------------------------------------------------------------

    @STEP_ACTIONS("leader")
    async def leader(self, step: Step) -> Outcome:
        await self._apply(step)
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

        await self.wait(probe, "The leader answering PING with role master")
        return Outcome(f"{found[0]} answers PING with role master.", {"leader": found[0], "role": "master"})

    @STEP_ACTIONS("followers")
    async def followers(self, step: Step) -> Outcome:
        await self._apply(step)
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

        await self.wait(probe, "Both followers linking up to the leader")
        return Outcome(
            f"{len(linked)} followers run with master_link_status:up ({', '.join(linked)}).",
            {"followers": list(linked), "link": "up"},
        )

    @STEP_ACTIONS("frontend")
    async def frontend(self, step: Step) -> Outcome:
        await self._apply(step)
        if self.settings.workshop_profile:  # a room of labs on one machine or cluster: 4 pods per learner, not 6
            await self._kubectl(
                step, "kubectl scale deployment frontend --replicas=1", self.platform.scale("frontend", 1)
            )
        answered: list[str] = []

        async def probe() -> str | None:
            reason = await self.platform.rollout_status("frontend", "frontend") or await frontends_answer(
                self.platform, self.desired["frontend"], touch_healthz=True
            )
            if reason is None:
                answered[:] = await self.platform.frontend_endpoints()
            return reason

        await self.wait(probe, "Every frontend replica answering the guestbook API")
        writers, readers = await self._frontend_paths()
        if writers and readers:
            paths = f"CLIENT LIST shows them writing to {', '.join(writers)} and reading from {', '.join(readers)}."
        else:
            paths = "they write to the redis-leader Service and read from the redis-follower Service."
        return Outcome(
            f"{len(answered)} frontend replicas answer the guestbook API; {paths}",
            {"replicas": len(answered), "writes_to": writers, "reads_from": readers},
        )

    async def _frontend_paths(self) -> tuple[list[str], list[str]]:
        """Where the frontends' Redis connections go, from each node's CLIENT LIST (the Python frontend names them
        `gb-frontend-<pod>`; the upstream PHP frontend opens unnamed per-request connections, so it cannot be told)."""
        endpoints = await self.platform.redis_endpoints()
        found = await asyncio.gather(*(frontend_clients(e) for e in endpoints), return_exceptions=True)
        connected = {
            e.name: e.component for e, names in zip(endpoints, found, strict=True) if isinstance(names, list) and names
        }
        writers = [name for name, component in connected.items() if component == "redis-leader"]
        readers = sorted(name for name, component in connected.items() if component == "redis-follower")
        return writers, readers

    @STEP_ACTIONS("expose")
    async def expose(self, step: Step) -> Outcome:
        url = await self.platform.expose()
        self.log(step.id, f"$ {self.platform.expose_command()}", "command")
        self.say(step, f"Forwarding from {url}")

        async def probe() -> str | None:
            async with httpx.AsyncClient(timeout=2.0) as client:
                return await guestbook_answers(client, url.rstrip("/"))

        note = self.platform.expose_note()
        if note:
            self.say(step, note)
        await self.wait(probe, f"The guestbook answering at {url}")
        self._changed()
        return Outcome(f"The guestbook answers at {url}" + (f" ({note})" if note else ""), {"url": url, "note": note})

    @STEP_ACTIONS("cleanup")
    async def cleanup(self, step: Step) -> Outcome:
        for stop in list(self.before_cleanup):
            await stop()
        for command in step.commands[:4]:
            self.log(step.id, f"$ {command}", "command")
        for line in await self.platform.delete_lab():
            self.say(step, line)

        async def probe() -> str | None:
            left = await self.platform.leftovers()
            return "still there: " + "; ".join(left) if left else None

        await self.wait(probe, "Everything of the lab going away")
        for other in self.status:
            if other != step.id:
                self.status[other] = StepStatus()
        return Outcome("No resources found: no pod, process, data or port of the lab is left.", {"left": []})


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
