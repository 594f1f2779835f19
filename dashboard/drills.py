"""Replication you can see: lag charts, the probe, the write load, the failure drills and side-by-side logs.

`install(app, state)` (registered in `dashboard.web.FEATURES`) adds:

- live topics `lag` (one SVG chart per follower, re-rendered once per second for all viewers), `experiments`
  (the probe's last result and the write load's progress), `drills` (the optional failure drills as steps) and
  `logs` (leader and followers side by side, replication lines highlighted);
- routes `GET /api/lag`, `POST|GET /api/probe`, `POST|GET|DELETE /api/load`, `POST /api/drills/{id}`,
  `GET /api/logs-side`, and the page's htmx twins (`/probe`, `/load`, `/load/stop`, `/drills/{id}`,
  `/logs/watch`).

The drills are `dashboard.steps.DRILLS`; their actions are registered on the lab here, so they run through
`Lab.run`: one at a time under the lab's lock, refused with 409 and a hint before their prerequisite step.
Everything uses only the `Platform` protocol plus Redis (`redis_endpoints`) and HTTP (`frontend_endpoints`), so
it works on the local platform and on Kubernetes alike. Resync kinds are read from the leader's own counters
(`INFO stats`: `sync_full`, `sync_partial_ok`), which a sampler at 1 Hz could miss for a 1 ms reconnection.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from markupsafe import Markup
from redis.exceptions import RedisError

from dashboard.errors import BadRequest, DashboardError, PrerequisiteMissing, StepFailed, UnknownStep
from dashboard.guestbook.entries import KEY as GUESTBOOK_KEY
from dashboard.guestbook.entries import split_entries
from dashboard.lab import frontends_answer
from dashboard.models import LogLine, RedisEndpoint
from dashboard.probe import LoadRun, check_params, command, redis_client, run_probe, split_nodes
from dashboard.replication import parse_info
from dashboard.replication_chart import MARKS, build_charts, human_bytes
from dashboard.steps import DRILL_IDS

if TYPE_CHECKING:
    from dashboard.platforms import Platform
    from dashboard.web import State

LAG_REFRESH_SECONDS = 1.0
LAG_WINDOW_SECONDS = 150.0
LOGS_REFRESH_SECONDS = 1.0
LOGS_LEASE_SECONDS = 15.0
LOG_TAIL = 60
PAUSE_SECONDS = 5.0
PAUSE_LOAD_RATE = 20
MARKS_LIMIT = 100

TOPICS = ("lag", "experiments", "drills", "logs")


# ------------------------------------------------------------------------------------------------ Redis helpers


async def node_info(endpoint: RedisEndpoint, *sections: str) -> dict[str, str]:
    """`INFO <sections>` of one node as a dict (a short-lived connection)."""
    client = redis_client(endpoint)
    try:
        raw = await command(client, "INFO", *sections)
    finally:
        await client.aclose()
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    return parse_info(raw)


async def node_state(endpoint: RedisEndpoint) -> tuple[dict[str, str], bytes]:
    """`INFO replication` and the raw guestbook of one node, in one round trip."""
    client = redis_client(endpoint)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("INFO", "replication")
        pipe.get(GUESTBOOK_KEY)
        info, raw = await pipe.execute()
    finally:
        await client.aclose()
    parsed = {str(k): str(v) for k, v in info.items()} if isinstance(info, dict) else parse_info(info)
    return parsed, raw if isinstance(raw, bytes) else b""


@dataclass(frozen=True)
class SyncCounters:
    """The leader's count of full and partial resynchronisations it served (`INFO stats`)."""

    replid: str
    full: int
    partial: int


async def sync_counters(leader: RedisEndpoint) -> SyncCounters:
    info = await node_info(leader, "stats")
    repl = await node_info(leader, "replication")
    return SyncCounters(
        repl.get("master_replid", ""), int(info.get("sync_full", 0)), int(info.get("sync_partial_ok", 0))
    )


def resync_words(before: SyncCounters, after: SyncCounters) -> tuple[str, int, int]:
    """("full"|"partial"|"none", full delta, partial delta); a new leader (other replid) counts from zero."""
    if after.replid != before.replid:
        full, partial = after.full, after.partial
    else:
        full, partial = after.full - before.full, after.partial - before.partial
    kind = "full" if full > 0 else "partial" if partial > 0 else "none"
    return kind, full, partial


async def converged(platform: Platform, want_followers: int | None = None) -> str | None:
    """None when every follower is linked to the leader with gap 0 and the same guestbook; else why not."""
    try:
        leader, followers = await split_nodes(platform)
    except DashboardError as exc:
        return exc.message
    if want_followers is not None and len(followers) != want_followers:
        return f"{len(followers)} of {want_followers} followers are running"
    try:
        leader_info, leader_raw = await node_state(leader)
    except (RedisError, OSError) as exc:
        return f"the leader {leader.name} does not answer ({type(exc).__name__})"
    if leader_info.get("role") != "master":
        return f"{leader.name} answers with role {leader_info.get('role')}"
    states = await asyncio.gather(*(node_state(f) for f in followers), return_exceptions=True)
    for follower, state in zip(followers, states, strict=True):
        if isinstance(state, BaseException):
            return f"{follower.name} does not answer ({type(state).__name__})"
        info, raw = state
        if info.get("master_link_status") != "up":
            return f"{follower.name} has master_link_status:{info.get('master_link_status', 'unknown')}"
        if info.get("master_replid") != leader_info.get("master_replid"):
            return f"{follower.name} still follows another replication history"
        gap = int(leader_info.get("master_repl_offset", 0)) - int(info.get("slave_repl_offset", 0))
        if gap > 0:
            return f"{follower.name} is {gap} bytes behind"
        if raw != leader_raw:
            return f"{follower.name}'s guestbook differs from the leader's"
    return None


# ------------------------------------------------------------------------------------------------------- logs

_REDIS_LOG = re.compile(r"^\d+:[XCSM] \d{1,2} \w{3} \d{4} (\d\d:\d\d:\d\d)\.\d+ [.\-*#] (.*)$")
LOG_KINDS: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    ("bad", "✗", re.compile(r"lost|Error condition|Connection refused|Timeout connecting|I/O error", re.I)),
    (
        "partial",
        "↻",
        re.compile(
            r"partial resynchronization (accepted|request.*accepted)|accepted a Partial|Successful partial", re.I
        ),
    ),
    ("full", "⇄", re.compile(r"Full resync|Starting BGSAVE for SYNC|asks for synchronization|Streamed RDB", re.I)),
    ("ok", "✓", re.compile(r"sync: Finished with success|Synchronization with replica .* succeeded", re.I)),
    ("link", "→", re.compile(r"Connecting to MASTER|Reconnecting to MASTER|MASTER <-> REPLICA sync started", re.I)),
)


def classify_log(text: str) -> tuple[str, str, str, str]:
    """(time, message, kind, icon) of one Redis log line; kind "" for lines that are not about replication."""
    match = _REDIS_LOG.match(text)
    clock, message = (match.group(1), match.group(2)) if match else ("", text)
    for kind, icon, pattern in LOG_KINDS:
        if pattern.search(message):
            return clock, message, kind, icon
    return clock, message, "", ""


# ----------------------------------------------------------------------------------------------------- feature


@dataclass
class Features:
    """The shared state of this module: last probe, current load, drill markers, logs cache and lease."""

    state: State
    probe: dict[str, Any] | None = None
    probe_error: dict[str, str] | None = None
    probing: bool = False
    load: LoadRun | None = None
    load_error: dict[str, str] | None = None
    marks: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MARKS_LIMIT))
    logs: list[tuple[str, str, list[LogLine]]] = field(default_factory=list)  # (pod, component, lines)
    logs_wanted_until: float = 0.0
    logs_fetches: int = 0
    lag_renders: int = 0
    _probe_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def platform(self) -> Platform:
        return self.state.platform

    def publish(self, *topics: str) -> None:
        self.state.hub.publish(*topics)

    def mark(self, kind: str, detail: str, node: str | None = None) -> None:
        """A marker on the lag chart (kind: one of replication_chart.MARKS); node None = every chart."""
        self.marks.append({"time": time.time(), "kind": kind, "detail": detail, "node": node})
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
            ticks = self.state.sampler.ticks
            history = self.state.sampler.history
            if ticks != seen and (history.to_json()["followers"] or seen == -1):
                seen = ticks
                self.publish("lag")

    async def _logs_ticker(self) -> None:
        """While a page shows the logs panel (a lease renewed by the page), read the Redis pods' logs each second."""
        while True:
            await asyncio.sleep(LOGS_REFRESH_SECONDS)
            if time.monotonic() > self.logs_wanted_until:
                continue
            with contextlib.suppress(Exception):
                await self.refresh_logs()

    async def refresh_logs(self) -> bool:
        """Read the leader's and followers' logs; publish `logs` when they changed. Returns whether they did."""
        pods = [p for p in await self.platform.get_pods() if p.component != "frontend" and not p.deleting]
        pods.sort(key=lambda p: (p.component != "redis-leader", p.created_at, p.name))
        results = await asyncio.gather(*(self.platform.logs(p.name, LOG_TAIL) for p in pods), return_exceptions=True)
        self.logs_fetches += 1
        logs: list[tuple[str, str, list[LogLine]]] = [
            (pod.name, pod.component, list(lines) if not isinstance(lines, BaseException) else [])
            for pod, lines in zip(pods, results, strict=True)
        ]

        def signature(items: list[tuple[str, str, list[LogLine]]]) -> list[tuple[str, int, str]]:
            return [(n, len(ls), ls[-1].text if ls else "") for n, _, ls in items]

        if signature(logs) == signature(self.logs):
            return False
        self.logs = logs
        self.publish("logs")
        return True

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
                    self.marks.append(
                        {
                            "time": time.time(),
                            "kind": "drill",
                            "detail": f"probe arrived {node['ms_after_leader']:.1f} ms after the leader",
                            "node": node["name"],
                        }
                    )
            self.publish("experiments", "lag")
            return result

    def start_load(self, rate: Any, seconds: Any) -> LoadRun:
        r, s = check_params(rate, seconds)
        if self.load is not None and self.load.running:
            raise_conflict(
                "A write load is already running.", "Wait for it to finish (or stop it), then start another."
            )
        load = LoadRun(self.platform, r, s, lambda: self.publish("experiments"))
        self.load, self.load_error = load, None
        load.start()
        self.publish("experiments")
        return load

    # -- rendering --------------------------------------------------------------------------------------------

    def fragment(self, topic: str) -> Markup:
        """A panel's fragment for the first render of the page (the live updates come over /events)."""
        render = {
            "lag": self.lag_html,
            "experiments": self.experiments_html,
            "drills": self.drills_html,
            "logs": self.logs_html,
        }[topic]
        return Markup(render())

    async def render_lag(self, request: Request) -> str:
        return self.lag_html()

    async def render_experiments(self, request: Request) -> str:
        return self.experiments_html()

    async def render_drills(self, request: Request, error: dict[str, str] | None = None) -> str:
        return self.drills_html(error)

    async def render_logs(self, request: Request) -> str:
        return self.logs_html()

    def lag_html(self) -> str:
        self.lag_renders += 1
        snapshot = self.state.sampler.snapshot
        now = time.time()
        charts = build_charts(
            self.state.sampler.history.to_json(),
            [f.node.name for f in snapshot.followers],
            now,
            LAG_WINDOW_SECONDS,
            drill_marks=list(self.marks),
        )
        return _render(
            "_lag.html",
            {
                "charts": charts,
                "marks": MARKS,
                "window": LAG_WINDOW_SECONDS,
                "interval": self.state.settings.sample_interval,
                "Markup": Markup,
                "human_bytes": human_bytes,
            },
        )

    def experiments_html(self) -> str:
        return _render(
            "_experiments.html",
            {
                "probe": self.probe,
                "probe_error": self.probe_error,
                "probing": self.probing,
                "load": self.load.to_json() if self.load else None,
                "load_error": self.load_error,
            },
        )

    def drills_html(self, error: dict[str, str] | None = None) -> str:
        lab = self.state.lab
        return _render(
            "_drills.html",
            {"drills": lab.to_json()["drills"], "lab": lab.to_json(), "drill_error": error},
        )

    def logs_html(self) -> str:
        columns = []
        for name, component, lines in self.logs:
            rows = []
            for line in lines:
                clock, message, kind, icon = classify_log(line.text)
                rows.append({"time": clock, "text": message, "kind": kind, "icon": icon})
            columns.append({"name": name, "component": component, "lines": rows})
        return _render("_logs.html", {"columns": columns, "watching": time.monotonic() <= self.logs_wanted_until})


def _render(template: str, ctx: dict[str, Any]) -> str:
    from dashboard.web import TEMPLATES

    return TEMPLATES.get_template(template).render(ctx)


class Conflict(DashboardError):
    """Something of the same kind is already running."""

    status = 409


def raise_conflict(message: str, hint: str) -> None:
    raise Conflict(message, hint)


# ------------------------------------------------------------------------------------------------------ drills


@dataclass
class PauseSeen:
    """What the pause drill observed on the paused follower."""

    max_gap: int = 0
    link_down: bool = False
    caught_up: float | None = None  # seconds after the pause ended


class Drills:
    """The drills' actions (registered on the lab; each runs under its lock and returns the success message)."""

    def __init__(self, features: Features) -> None:
        self.f = features
        self.lab = features.state.lab
        self.platform = features.state.platform

    def register(self) -> None:
        actions: dict[str, Callable[[str], Awaitable[str]]] = {
            "delete-follower": self.delete_follower,
            "network-blip": self.network_blip,
            "pause-replication": self.pause_replication,
            "delete-leader": self.delete_leader,
            "scale-followers": self.scale_followers,
            "scale-frontend": self.scale_frontend,
        }
        for step_id, action in actions.items():
            self.lab.register_action(step_id, action)

    def say(self, step_id: str, text: str, level: str = "info") -> None:
        self.lab.status[step_id].output.append(text)
        self.lab.log(step_id, text, level)

    async def _followers(self, step_id: str) -> tuple[RedisEndpoint, list[RedisEndpoint]]:
        leader, followers = await split_nodes(self.platform)
        if not followers:
            raise PrerequisiteMissing("No follower is running.", "Run the followers step first, then try again.")
        reason = await converged(self.platform)
        if reason is not None:
            self.say(step_id, f"Before the drill: {reason} (it may still be catching up).")
        return leader, followers

    async def delete_follower(self, step_id: str) -> str:
        leader, followers = await self._followers(step_id)
        victim = followers[0]
        before = await sync_counters(leader)
        started = time.monotonic()
        self.say(step_id, f"$ kubectl delete pod {victim.name}", "command")
        for line in await self.platform.delete_pod(victim.name):
            self.say(step_id, line)
        self.f.mark("drill", f"deleted {victim.name}", victim.name)

        async def back() -> str | None:
            names = {e.name for e in (await split_nodes(self.platform))[1]}
            if victim.name in names:
                return f"{victim.name} is still running"
            return await converged(self.platform, len(followers))

        await self.lab.wait(step_id, back, "A replacement follower linking up and catching up")
        took = time.monotonic() - started
        leader, now_followers = await split_nodes(self.platform)
        new = sorted({e.name for e in now_followers} - {e.name for e in followers})
        kind, full, partial = resync_words(before, await sync_counters(leader))
        for name in new:
            self.f.mark(f"{kind}_resync" if kind != "none" else "drill", f"replacement: {kind} resync", name)
        entries = len(split_entries((await node_state(leader))[1]))
        return (
            f"{victim.name} was deleted; {', '.join(new) or 'its replacement'} took its place and resynced with a "
            f"{kind.upper()} sync (leader: sync_full +{full}, sync_partial_ok +{partial}) in {took:.1f} s; "
            f"it holds all {entries} entries. A new pod starts empty, so only a full copy can restore it."
        )

    async def network_blip(self, step_id: str) -> str:
        leader, followers = await self._followers(step_id)
        victim = followers[0]
        before = await sync_counters(leader)
        self.say(step_id, f"$ redis-cli -h {victim.name} CLIENT KILL TYPE master", "command")
        client = redis_client(victim)
        try:
            killed = await command(client, "CLIENT", "KILL", "TYPE", "master")
            cut = time.monotonic()
        finally:
            await client.aclose()
        self.say(step_id, f"(integer) {killed}")
        self.f.mark("link_down", "link cut (CLIENT KILL TYPE master)", victim.name)
        relinked: list[float] = []

        async def up() -> str | None:
            info = await node_info(victim, "replication")
            if info.get("master_link_status") != "up":
                return f"{victim.name} has master_link_status:{info.get('master_link_status')}"
            if not relinked:
                relinked.append(time.monotonic() - cut)
            return await converged(self.platform, len(followers))

        await self.lab.wait(step_id, up, f"{victim.name} reconnecting to the leader")
        kind, full, partial = resync_words(before, await sync_counters(leader))
        self.f.mark(f"{kind}_resync" if kind != "none" else "link_up", f"reconnected: {kind} resync", victim.name)
        if kind == "full":
            why = "the leader could not serve it from its backlog (or the follower lost its replication id)"
        else:
            why = "it kept its data and replication id, and the leader's backlog held the bytes it missed"
        return (
            f"{victim.name}'s link was cut; it reconnected after {relinked[0] * 1000:.0f} ms with a {kind.upper()} "
            f"resync (leader: sync_partial_ok +{partial}, sync_full +{full}): {why}."
        )

    async def pause_replication(self, step_id: str) -> str:
        leader, followers = await self._followers(step_id)
        victim = followers[0]
        pause_ms = int(PAUSE_SECONDS * 1000)
        load = self.f.load
        own_load = load is None or not load.running
        if own_load:
            self.say(step_id, f"Writing {PAUSE_LOAD_RATE} entries per second through the frontend meanwhile.")
            load = self.f.start_load(PAUSE_LOAD_RATE, PAUSE_SECONDS + 1)
        assert load is not None
        self.say(step_id, f"$ redis-cli -h {victim.name} CLIENT PAUSE {pause_ms} WRITE", "command")
        client = redis_client(victim)
        try:
            await command(client, "CLIENT", "PAUSE", pause_ms, "WRITE")
        finally:
            await client.aclose()
        paused_at = time.monotonic()
        resume_at = paused_at + PAUSE_SECONDS
        self.f.mark("drill", f"writes paused for {PAUSE_SECONDS:g} s", victim.name)
        seen = PauseSeen()

        async def drained() -> str | None:
            leader_info = await node_info(leader, "replication")
            info = await node_info(victim, "replication")
            gap = int(leader_info.get("master_repl_offset", 0)) - int(info.get("slave_repl_offset", 0))
            seen.max_gap = max(seen.max_gap, gap)
            if info.get("master_link_status") != "up":
                seen.link_down = True
            clock = time.monotonic()
            if clock < resume_at:
                return f"{victim.name} is paused, {gap} bytes behind"
            if gap > 0:
                return f"{victim.name} is {gap} bytes behind"
            if seen.caught_up is None:
                seen.caught_up = clock - resume_at
            if own_load and load.running:
                return "the write load is still running"
            return await converged(self.platform, len(followers))

        await self.lab.wait(step_id, drained, f"{victim.name} falling behind and catching up")
        self.f.mark("drill", "pause over, caught up", victim.name)
        max_gap = seen.max_gap
        if max_gap <= 0:
            raise StepFailed(
                f"{victim.name}'s gap never grew while it was paused.",
                "Check that writes reach the leader (the frontend pods are ready), then run the drill again.",
            )
        behind = max((s.seconds_behind or 0.0) for s in self.f.state.sampler.history.samples(victim.name)[-40:])
        caught = seen.caught_up or 0.0
        link = "went down" if seen.link_down else "stayed up"
        wrote = f"{load.ok} entries were written" if own_load else "the running write load went on"
        return (
            f"{victim.name}'s writes were paused for {PAUSE_SECONDS:g} s while {wrote} through the frontend: its "
            f"gap grew to {human_bytes(max_gap)} ({max_gap} B, about {behind:.1f} s behind) and its link {link}; "
            f"it caught up {caught * 1000:.0f} ms after the pause ended and holds every entry."
        )

    async def delete_leader(self, step_id: str) -> str:
        leader, followers = await self._followers(step_id)
        before_info, raw = await node_state(leader)
        lost = len(split_entries(raw))
        started = time.time()
        self.say(step_id, f"The leader holds {lost} entries and has no persistence.")
        self.say(step_id, f"$ kubectl delete pod {leader.name}", "command")
        for line in await self.platform.delete_pod(leader.name):
            self.say(step_id, line)
        self.f.mark("drill", f"deleted the leader {leader.name}", None)

        async def resynced() -> str | None:
            new_leader, _ = await split_nodes(self.platform)
            if new_leader.name == leader.name:
                return f"{leader.name} is still running"
            info = await node_info(new_leader, "replication")
            if info.get("master_replid") == before_info.get("master_replid"):
                return "the leader has not restarted yet"
            return await converged(self.platform, len(followers))

        await self.lab.wait(step_id, resynced, "A new leader starting and the followers resyncing to it")
        new_leader, now_followers = await split_nodes(self.platform)
        _, new_raw = await node_state(new_leader)
        left = len(split_entries(new_raw))
        counters = await sync_counters(new_leader)
        downs = [
            e
            for e in self.f.state.sampler.history.events
            if e.time >= started and e.kind == "link_down" and e.node in {f.name for f in followers}
        ]
        for f in now_followers:
            self.f.mark("full_resync", "resynced to the new, empty leader", f.name)
        seen_down = f"{len(downs)} follower link(s) seen going down" if downs else "the links dropped between samples"
        if left == 0 and lost > 0:
            verdict = f"DATA LOSS: {lost} entries are gone from every node."
        elif lost == 0:
            verdict = "The guestbook was empty, so nothing was lost this time."
        else:
            verdict = f"The new leader holds {left} entries (of {lost}): it kept data, so it has persistence."
        return (
            f"{verdict} The leader {leader.name} was deleted; {new_leader.name} started empty, {seen_down}, and "
            f"{len(now_followers)} followers made {counters.full} full resync(s) to it and now hold {left} entries."
        )

    async def scale_followers(self, step_id: str) -> str:
        leader, followers = await self._followers(step_id)
        back_to = self.lab.desired["redis-follower"]
        before = await sync_counters(leader)
        self.say(step_id, "$ kubectl scale deployment redis-follower --replicas=3", "command")
        for line in await self.platform.scale("redis-follower", 3):
            self.say(step_id, line)

        async def three() -> str | None:
            return await converged(self.platform, 3)

        await self.lab.wait(step_id, three, "Three followers linking up and catching up")
        _, full, _ = resync_words(before, await sync_counters(leader))
        _, grown = await split_nodes(self.platform)
        new = sorted({e.name for e in grown} - {e.name for e in followers})
        for name in new:
            self.f.mark("full_resync" if full else "drill", "joined", name)
        self.say(step_id, f"3 followers in sync; {', '.join(new) or 'the new one'} joined with {full} full sync(s).")
        self.say(step_id, f"$ kubectl scale deployment redis-follower --replicas={back_to}", "command")
        for line in await self.platform.scale("redis-follower", back_to):
            self.say(step_id, line)

        async def back() -> str | None:
            return await converged(self.platform, back_to)

        await self.lab.wait(step_id, back, f"{back_to} followers left, in sync")
        _, shrunk = await split_nodes(self.platform)
        gone = sorted({e.name for e in grown} - {e.name for e in shrunk})
        return (
            f"Scaled to 3: {', '.join(new) or 'a new follower'} joined with a full sync (sync_full +{full}). "
            f"Scaled back to {back_to}: {', '.join(gone) or 'one follower'} was removed; the others stay in sync."
        )

    async def scale_frontend(self, step_id: str) -> str:
        leader, _ = await split_nodes(self.platform)
        before = len(split_entries((await node_state(leader))[1]))

        async def answering(want: int) -> str | None:
            return await frontends_answer(self.platform, want)

        for replicas in (5, 2):
            self.say(step_id, f"$ kubectl scale deployment frontend --replicas={replicas}", "command")
            for line in await self.platform.scale("frontend", replicas):
                self.say(step_id, line)

            async def probe(n: int = replicas) -> str | None:
                return await answering(n)

            await self.lab.wait(step_id, probe, f"{replicas} frontend replicas answering")
            self.say(step_id, f"{replicas} frontend replicas answer the guestbook API.", "ok")
        after = len(split_entries((await node_state((await split_nodes(self.platform))[0]))[1]))
        if after < before:
            raise StepFailed(f"The guestbook lost entries ({before} → {after}).", "Look at the activity log.")
        return f"5 frontend replicas answered, then 2 did; the guestbook still holds its {after} entries."


# ------------------------------------------------------------------------------------------------------ routes


async def _body_params(request: Request) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype == "application/json":
        try:
            data = await request.json()
        except ValueError:
            raise BadRequest("The body is not valid JSON.", 'Send {"rate": 50, "seconds": 10}.') from None
        if not isinstance(data, dict):
            raise BadRequest("The body must be a JSON object.", 'Send {"rate": 50, "seconds": 10}.')
        return data
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return dict((await request.form()).items())
    return dict(request.query_params.items())


def install(app: FastAPI, state: State) -> None:
    """Add this module's topics, routes and background tasks to the dashboard app."""
    features = Features(state)
    app.state.drills = features
    Drills(features).register()
    state.lab.before_cleanup.append(features.stop_load)
    state.add_topic("lag", features.render_lag)
    state.add_topic("experiments", features.render_experiments)
    state.add_topic("drills", features.render_drills)
    state.add_topic("logs", features.render_logs)
    state.lab.add_listener(lambda: state.hub.publish("drills"))

    async def start() -> None:
        features.start()

    state.on_start.append(start)
    state.on_close.append(features.close)

    def html_error(exc: DashboardError) -> dict[str, str]:
        return {"message": exc.message, "hint": exc.hint}

    # -- lag ----------------------------------------------------------------------------------------------------

    @app.get("/api/lag", tags=["observe"])
    async def api_lag() -> dict[str, Any]:
        """Per follower the last samples {time, gap_bytes, seconds_behind, link}; replication events; drill marks."""
        body = dict(state.sampler.history.to_json())
        body["interval"] = state.settings.sample_interval
        body["marks"] = list(features.marks)
        return body

    # -- probe --------------------------------------------------------------------------------------------------

    @app.post("/api/probe", tags=["experiments"])
    async def api_probe() -> dict[str, Any]:
        """Write one marked entry through the frontend; per node the ms until it appeared; WAIT's count."""
        return await features.run_probe()

    @app.get("/api/probe", tags=["experiments"])
    async def api_probe_last() -> dict[str, Any] | None:
        """The last probe's result (null before the first)."""
        return features.probe

    @app.post("/probe", response_class=HTMLResponse, include_in_schema=False)
    async def page_probe(request: Request) -> Response:
        with contextlib.suppress(DashboardError):
            await features.run_probe()
        return HTMLResponse(await features.render_experiments(request))

    # -- load ---------------------------------------------------------------------------------------------------

    @app.post("/api/load", tags=["experiments"], status_code=202)
    async def api_load(request: Request) -> dict[str, object]:
        """Start writing `rate` entries per second for `seconds` through the frontend (rate ≤ 500, seconds ≤ 60)."""
        params = await _body_params(request)
        return features.start_load(params.get("rate"), params.get("seconds")).to_json()

    @app.get("/api/load", tags=["experiments"])
    async def api_load_status() -> dict[str, object] | None:
        """The current or last write load: progress, then found/missing per node (null before the first)."""
        return features.load.to_json() if features.load else None

    @app.delete("/api/load", tags=["experiments"])
    async def api_load_stop() -> dict[str, object] | None:
        """Stop the running write load early (its entries are still accounted for)."""
        if features.load is not None:
            features.load.stop()
        return features.load.to_json() if features.load else None

    @app.post("/load", response_class=HTMLResponse, include_in_schema=False)
    async def page_load(request: Request) -> Response:
        params = await _body_params(request)
        try:
            features.start_load(params.get("rate"), params.get("seconds"))
        except DashboardError as exc:
            features.load_error = html_error(exc)
        return HTMLResponse(await features.render_experiments(request))

    @app.post("/load/stop", response_class=HTMLResponse, include_in_schema=False)
    async def page_load_stop(request: Request) -> Response:
        if features.load is not None:
            features.load.stop()
        return HTMLResponse(await features.render_experiments(request))

    # -- drills -------------------------------------------------------------------------------------------------

    async def run_drill(drill_id: str) -> dict[str, object]:
        if drill_id not in DRILL_IDS:
            raise UnknownStep(f"There is no drill called {drill_id!r}.", f"Use one of: {', '.join(DRILL_IDS)}.")
        result = await state.lab.run(drill_id)
        state.sampler.poke()
        return result

    @app.post("/api/drills/{drill_id}", tags=["lab"])
    async def api_drill(drill_id: str) -> dict[str, object]:
        """Run one failure drill (optional step) and return it. 404 unknown id, 409 before the main steps it needs."""
        return await run_drill(drill_id)

    @app.post("/drills/{drill_id}", response_class=HTMLResponse, include_in_schema=False)
    async def page_drill(request: Request, drill_id: str) -> Response:
        try:
            await run_drill(drill_id)
        except DashboardError as exc:
            error = {"id": drill_id, **html_error(exc)}
            return HTMLResponse(await features.render_drills(request, error), status_code=exc.status)
        return HTMLResponse(await features.render_drills(request))

    # -- logs ---------------------------------------------------------------------------------------------------

    @app.get("/logs/watch", include_in_schema=False)
    async def logs_watch() -> Response:
        """The page renews its interest in the logs panel (the logs are only read while someone looks)."""
        first = time.monotonic() > features.logs_wanted_until
        features.logs_wanted_until = time.monotonic() + LOGS_LEASE_SECONDS
        if first:
            with contextlib.suppress(Exception):
                await features.refresh_logs()
        return Response(status_code=204)

    @app.get("/api/logs-side", tags=["observe"])
    async def api_logs_side() -> list[dict[str, object]]:
        """Leader and followers' last log lines, each with its replication kind (ok/full/partial/bad/link or "")."""
        await features.refresh_logs()
        out: list[dict[str, object]] = []
        for name, component, lines in features.logs:
            rows = []
            for line in lines:
                _, message, kind, _ = classify_log(line.text)
                rows.append({"time": line.time, "text": line.text, "message": message, "kind": kind})
            out.append({"pod": name, "component": component, "lines": rows})
        return out

    @app.get("/api/drills-status", include_in_schema=False)
    async def api_status() -> JSONResponse:
        """Counters for tests and benchmarks: lag renders, log fetches."""
        return JSONResponse({"lag_renders": features.lag_renders, "logs_fetches": features.logs_fetches})
