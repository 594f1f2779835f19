"""Watching writes replicate: the "watch it replicate" probe and the bounded write load, both through the frontend.

Everything goes through the `Platform` protocol, so it works on the local platform and on a cluster: writes are
HTTP requests to a frontend pod (`frontend_endpoints()`, else the exposed `frontend_url()`), reads are Redis
commands to the addresses of `redis_endpoints()`.

- `write_entry` appends one entry through the frontend: `cmd=append` (this project's frontend appends atomically);
  against the upstream PHP frontend, which knows only get/set, it falls back to read-the-leader-then-`cmd=set`.
- `run_probe` writes one marked entry and measures, per node, when it appears: a watcher per node polls the tail of
  `guestbook` (`GETRANGE guestbook -4096 -1`, a full `GET` every 100 polls) back to back for 50 ms, then every
  millisecond, until a deadline. Times are `time.perf_counter_ns()` (CLOCK_MONOTONIC: comparable across processes
  on one machine, which the benchmark uses). Right after the frontend answers, the probe asks the leader how many
  followers acknowledged the write: `WAIT` only counts the offset of the connection that wrote, and the write went
  through the frontend's connection, so the probe first `PUBLISH`es the marker on its own leader connection (a
  write that is replicated but stores nothing) and then runs `WAIT <followers> <timeout>` there; the count is
  the number of followers whose acknowledged offset covers both writes.
- `LoadRun` writes N entries per second for T seconds (bounded), then checks that every entry the frontend
  acknowledged is on the leader and on every follower, and reports found / missing per node; entries gone from
  every node are DATA LOSS, said in the delete-leader drill's words (the leader restarted and has no persistence).

HTTP to the frontends is one library client, `FrontendHttp`: an aiohttp session whose keep-alive pool is shared by
every write of a load (at most `MAX_IN_FLIGHT` connections). Chosen by measurement (`bench/bench_probe.py`, load
section: 500 writes/s for 30 s through one frontend, the dashboard in-process on uvloop, one run, this 2-core
machine while other test suites ran; lag = how late a 10 ms timer fires):
  aiohttp (this module)      15000/15000 accounted for, lag p99 18 ms, 0.50 ms CPU/write, latency avg 8.6 ms
  httpx, one shared pool     14724/15000 written within 90 s (cannot keep 500/s), lag p99 47 ms,
                             4.9 ms CPU/write, latency avg 361 ms
  before (hand-written HttpConnection, old frontend, answers with every entry)
                             15000/15000, lag p99 46 ms, 0.61 ms CPU/write, latency avg 166 ms
Load writes ask for `quiet=1` answers, so an answer no longer carries the whole, growing guestbook.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from dashboard.errors import BadRequest, DashboardError, PrerequisiteMissing
from dashboard.guestbook.entries import KEY as GUESTBOOK_KEY
from dashboard.guestbook.entries import encode_entry, split_entries
from dashboard.models import RedisEndpoint
from dashboard.platforms.base import Platform

TAIL_BYTES = 4096
FULL_READ_EVERY = 100
TIGHT_SECONDS = 0.05
POLL_SECONDS = 0.001
PROBE_DEADLINE = 5.0
WAIT_TIMEOUT_MS = 1000
MAX_RATE = 500
MAX_SECONDS = 60
MAX_IN_FLIGHT = 64
CHECK_DEADLINE = 15.0


async def command(client: aioredis.Redis, *args: str | int) -> Any:
    """One Redis command by name (redis-py's `execute_command` is untyped)."""
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


def redis_client(endpoint: RedisEndpoint, timeout: float = 1.0) -> aioredis.Redis:
    return aioredis.Redis(host=endpoint.host, port=endpoint.port, socket_timeout=timeout, socket_connect_timeout=1.0)


async def ask(endpoint: RedisEndpoint, *args: str | int, timeout: float = 1.0) -> Any:
    """One Redis command on a connection of its own, closed after the answer."""
    client = redis_client(endpoint, timeout)
    try:
        return await command(client, *args)
    finally:
        await client.aclose()


async def frontend_bases(platform: Platform) -> list[str]:
    """Base URLs to write through: each ready frontend pod, else the exposed URL. Raises PrerequisiteMissing."""
    bases = await platform.frontend_endpoints()
    if not bases:
        url = platform.frontend_url()
        if url:
            bases = [url.rstrip("/")]
    if not bases:
        raise PrerequisiteMissing(
            "No frontend pod is ready to take a write.", "Run the frontend step first (step 3), then try again."
        )
    return bases


async def split_nodes(platform: Platform) -> tuple[RedisEndpoint, list[RedisEndpoint]]:
    """The leader endpoint and the follower endpoints. Raises PrerequisiteMissing when there is no leader."""
    endpoints = await platform.redis_endpoints()
    leaders = [e for e in endpoints if e.component == "redis-leader"]
    if not leaders:
        raise PrerequisiteMissing("No Redis leader is running.", "Run the leader step first, then try again.")
    followers = sorted((e for e in endpoints if e.component == "redis-follower"), key=lambda e: e.name)
    return leaders[0], followers


class WriteFailed(Exception):
    """The frontend did not store the entry (`str(exc)` says why)."""


# What a failed request through the frontend raises: a refused or broken connection, a timeout, a bad answer.
HTTP_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, ValueError)


class FrontendHttp:
    """The one HTTP client of the probe and the write load: an aiohttp session with a shared keep-alive pool.

    `get` answers (status, body); leaving `async with` closes the pool. Connections are reused across requests and
    frontends (up to `connections` at once, the load's in-flight bound).
    """

    def __init__(self, connections: int = MAX_IN_FLIGHT, timeout: float = 5.0) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, limit_per_host=connections),
            timeout=aiohttp.ClientTimeout(total=timeout),
            trust_env=False,  # the frontends are pod addresses or a loopback port: never through a proxy
            skip_auto_headers=("User-Agent",),
            headers={"Accept": "application/json"},
        )

    async def get(self, url: str, params: dict[str, str]) -> tuple[int, bytes]:
        async with self._session.get(url, params=params) as response:
            return response.status, await response.read()

    async def __aenter__(self) -> FrontendHttp:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()


def open_http(connections: int = MAX_IN_FLIGHT) -> FrontendHttp:
    """The client `run_probe` and `LoadRun` use (a function, so that the benchmark can compare libraries)."""
    return FrontendHttp(connections)


@dataclass
class FrontendWriter:
    """Appends entries through the frontend; learns once whether it speaks `cmd=append` or only get/set."""

    platform: Platform
    client: FrontendHttp
    append_supported: bool | None = None
    _set_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def write(self, base: str, entry: str) -> None:
        if self.append_supported is not False:
            # quiet=1: answer without the entries (else every answer lists the whole, growing guestbook);
            # the upstream PHP frontend ignores it
            status, body = await self.client.get(
                f"{base}/guestbook.php", {"cmd": "append", "value": entry, "quiet": "1"}
            )
            if append_ok(status, body):
                self.append_supported = True
                return
            data = _json(body)
            if self.append_supported is None and status == 200 and isinstance(data, dict):
                self.append_supported = False  # upstream PHP: an unknown cmd is a read
            else:
                raise WriteFailed(_failure(status, data))
        await self._write_with_set(base, entry)

    async def _write_with_set(self, base: str, entry: str) -> None:
        """The upstream frontend's way (read, add, set the whole list), serialised so our own writes never race."""
        async with self._set_lock:
            leader, _ = await split_nodes(self.platform)
            raw = await ask(leader, "GET", GUESTBOOK_KEY)
            current = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
            value = f"{current},{encode_entry(entry)}" if current else encode_entry(entry)
            status, body = await self.client.get(f"{base}/guestbook.php", {"cmd": "set", "value": value})
            data = _json(body)
            if status != 200 or not isinstance(data, dict) or data.get("message") != "Updated":
                raise WriteFailed(_failure(status, data))


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _failure(status: int, data: Any) -> str:
    """`HTTP 503: <the frontend's one-sentence error>` (or just the status when the answer has none)."""
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return f"HTTP {status}: {data['error']}"
    return f"HTTP {status}"


def append_ok(status: int, body: bytes) -> bool:
    """Whether a cmd=append answer says "Updated" (looks at the start only: the answer may list every entry)."""
    return status == 200 and b'"message"' in body[:48] and b'"Updated"' in body[:64]


# ---------------------------------------------------------------------------------------------------------- probe


@dataclass
class NodeTiming:
    """When the probe's entry appeared on one node."""

    name: str
    role: str  # "leader" | "follower"
    seen_ns: int | None = None
    polls: int = 0
    error: str | None = None

    def to_json(self, sent_ns: int, leader_ns: int | None) -> dict[str, object]:
        after_sent = None if self.seen_ns is None else round((self.seen_ns - sent_ns) / 1e6, 3)
        after_leader = None
        if self.seen_ns is not None and leader_ns is not None and self.role == "follower":
            after_leader = round(max(0, self.seen_ns - leader_ns) / 1e6, 3)
        return {
            "name": self.name,
            "role": self.role,
            "ms": after_sent,
            "ms_after_leader": after_leader,
            "seen_ns": self.seen_ns,
            "polls": self.polls,
            "error": self.error,
        }


async def _watch(client: aioredis.Redis, marker: bytes, timing: NodeTiming, end: float) -> None:
    """Poll one node until `marker` is in its guestbook; record the midpoint of the poll that first saw it."""
    started = time.monotonic()
    while True:
        asked = time.perf_counter_ns()
        try:
            if timing.polls % FULL_READ_EVERY == FULL_READ_EVERY - 1:
                value = await client.get(GUESTBOOK_KEY)
            else:
                value = await client.getrange(GUESTBOOK_KEY, -TAIL_BYTES, -1)
        except (RedisError, OSError) as exc:
            timing.error = f"{type(exc).__name__}: {exc}"
            value = None
        answered = time.perf_counter_ns()
        timing.polls += 1
        if isinstance(value, bytes) and marker in value:
            timing.seen_ns = (asked + answered) // 2
            timing.error = None
            return
        clock = time.monotonic()
        if clock >= end:
            timing.error = timing.error or "not there before the deadline"
            return
        await asyncio.sleep(0 if clock - started < TIGHT_SECONDS else POLL_SECONDS)


async def run_probe(platform: Platform) -> dict[str, Any]:
    """Write one marked entry through the frontend and time its arrival on every node (see the module docstring)."""
    leader, followers = await split_nodes(platform)
    bases = await frontend_bases(platform)
    marker = f"probe {time.strftime('%H:%M:%S')} #{secrets.token_hex(3)}"
    marker_bytes = encode_entry(marker).encode("utf-8")
    nodes = [leader, *followers]
    clients = {e.name: redis_client(e) for e in nodes}
    timings = {e.name: NodeTiming(e.name, "leader" if e is leader else "follower") for e in nodes}
    acked: int | None = None
    wait_ms: float | None = None
    wait_error: str | None = None
    try:
        # connect everything first, so that connection set-up is not counted as propagation time
        await asyncio.gather(*(c.ping() for c in clients.values()), return_exceptions=True)
        async with open_http(1) as http:
            with contextlib.suppress(*HTTP_ERRORS):
                await http.get(f"{bases[0]}/healthz", {})  # warm the HTTP connection
            writer = FrontendWriter(platform, http)
            end = time.monotonic() + PROBE_DEADLINE
            watchers = [asyncio.create_task(_watch(clients[n], marker_bytes, timings[n], end)) for n in clients]
            sent_ns = time.perf_counter_ns()
            try:
                await writer.write(bases[0], marker)
            except (*HTTP_ERRORS, WriteFailed, DashboardError) as exc:
                for task in watchers:
                    task.cancel()
                await asyncio.gather(*watchers, return_exceptions=True)
                message = exc.message if isinstance(exc, DashboardError) else str(exc) or type(exc).__name__
                raise DashboardError(
                    f"The probe's write through {bases[0]} failed: {message}",
                    "Check that the frontend pods are ready (pods board), then try again.",
                ) from exc
            acked_ns = time.perf_counter_ns()
            try:
                leader_client = clients[leader.name]
                await leader_client.publish("guestbook-lab:probe", marker)
                waited = time.perf_counter_ns()
                acked = int(await command(leader_client, "WAIT", len(followers), WAIT_TIMEOUT_MS))
                wait_ms = round((time.perf_counter_ns() - waited) / 1e6, 3)
            except (RedisError, OSError) as exc:
                wait_error = f"{type(exc).__name__}: {exc}"
            await asyncio.gather(*watchers)
    finally:
        for client in clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()
    leader_ns = timings[leader.name].seen_ns
    follower_ms = [t.to_json(sent_ns, leader_ns)["ms_after_leader"] for t in timings.values() if t.role == "follower"]
    return {
        "entry": marker,
        "frontend": bases[0],
        "append_supported": writer.append_supported,
        "at": time.time(),
        "sent_ns": sent_ns,
        "write_ms": round((acked_ns - sent_ns) / 1e6, 3),
        "nodes": [t.to_json(sent_ns, leader_ns) for t in timings.values()],
        "followers": len(followers),
        "acknowledged": acked,
        "wait_ms": wait_ms,
        "wait_error": wait_error,
        "all_arrived": all(t.seen_ns is not None for t in timings.values()),
        "max_follower_ms": max((m for m in follower_ms if isinstance(m, float)), default=None),
    }


# ----------------------------------------------------------------------------------------------------------- load


@dataclass
class NodeCount:
    """How many of the load's entries one node holds."""

    name: str
    role: str
    found: int = 0
    missing: int = 0
    missing_sample: list[str] = field(default_factory=list)
    error: str | None = None
    missing_entries: frozenset[str] = field(default=frozenset(), repr=False)  # all of them (not in the JSON)

    def to_json(self) -> dict[str, object]:
        return {k: v for k, v in vars(self).items() if k != "missing_entries"}


def check_params(rate: Any, seconds: Any) -> tuple[int, float]:
    """Validate the load's parameters: real numbers (not bools, not strings, finite), rate whole, within bounds."""
    hint = f"Send rate 1–{MAX_RATE} and seconds 1–{MAX_SECONDS}, as numbers."
    for value in (rate, seconds):
        if isinstance(value, bool) or not isinstance(value, int | float):
            got = f"rate={rate!r:.40}, seconds={seconds!r:.40}"
            raise BadRequest(f"A write load needs both rate and seconds, as numbers (got {got}).", hint)
        if isinstance(value, float) and not math.isfinite(value):
            raise BadRequest(f"A write load needs finite numbers (got rate={rate!r}, seconds={seconds!r}).", hint)
    if not 1 <= rate <= MAX_RATE or not 0.1 <= seconds <= MAX_SECONDS:
        raise BadRequest(
            f"A write load of {rate!r:.40}/s for {seconds!r:.40} s is out of bounds.",
            f"Use a rate from 1 to {MAX_RATE} writes per second and from 0.1 to {MAX_SECONDS} seconds.",
        )
    if rate != int(rate):
        raise BadRequest(f"A write load's rate must be a whole number of writes per second (got {rate!r}).", hint)
    return int(rate), float(seconds)


class LoadRun:
    """One bounded write load through the frontend, then the accounting of its entries on every node."""

    def __init__(self, platform: Platform, rate: int, seconds: float, on_change: Callable[[], None]) -> None:
        self.platform = platform
        self.rate = rate
        self.seconds = seconds
        self.planned = max(1, round(rate * seconds))
        self.id = secrets.token_hex(2)
        self.state = "running"  # running | checking | done | stopped | failed
        self.started_at = time.time()
        self.finished_at: float | None = None
        self.sent = 0
        self.ok = 0
        self.failed = 0
        self.errors: list[str] = []
        self.written: list[str] = []
        self.nodes: list[NodeCount] = []
        self.message = ""
        self.entries_lost = 0  # acknowledged entries on no node at all
        self.leader_restart: str | None = None  # how the leader restarted during the load, when it did
        self.latency_ms_max = 0.0
        self._latency_total = 0.0
        self._on_change = on_change
        self._last_publish = 0.0
        self._stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"write-load-{self.id}")

    def stop(self) -> None:
        self._stop.set()

    @property
    def running(self) -> bool:
        return self.state in ("running", "checking")

    def entry(self, i: int) -> str:
        return f"load {self.id} {i:05d}"

    def _changed(self, force: bool = False) -> None:
        clock = time.monotonic()
        if force or clock - self._last_publish >= 0.25:
            self._last_publish = clock
            self._on_change()

    async def _run(self) -> None:
        try:
            leader_before = await leader_pod(self.platform)
            await self._write_all()
            if self.ok:
                self.state = "checking"
                self._changed(force=True)
                await self._account()
                self.entries_lost = lost_everywhere(self.nodes)
                self.leader_restart = leader_restart(leader_before, await leader_pod(self.platform))
            stopped = self._stop.is_set()
            complete = all(n.missing == 0 and n.error is None for n in self.nodes)
            self.state = "stopped" if stopped else "done" if complete else "failed"
            self.message = self._summary(complete)
        except asyncio.CancelledError:
            self.state = "stopped"
            self.message = f"Stopped after {self.ok} writes."
            raise
        except Exception as exc:  # shown as one sentence in the panel
            self.state = "failed"
            self.message = exc.message if isinstance(exc, DashboardError) else f"{type(exc).__name__}: {exc}"
        finally:
            self.finished_at = time.time()
            self._changed(force=True)

    def _summary(self, complete: bool) -> str:
        wrote = f"Wrote {self.ok} of {self.planned} entries ({self.failed} failed)"
        followers = [n for n in self.nodes if n.role == "follower"]
        if complete:
            return f"{wrote}; every one is on the leader and on all {len(followers)} followers."
        lacking = ", ".join(f"{n.name} lacks {n.missing}" for n in self.nodes if n.missing or n.error)
        if self.entries_lost:
            why = (
                f"the leader {self.leader_restart} during the load and has no persistence, so it came back empty"
                if self.leader_restart
                else "the leader does not hold them either"
            )
            others = [n for n in self.nodes if n.missing > self.entries_lost or n.error]
            rest = "; beyond those: " + ", ".join(f"{n.name} lacks {n.missing - self.entries_lost}" for n in others)
            return (
                f"DATA LOSS: {self.entries_lost} acknowledged entries are gone from every node: {why}. "
                f"{wrote}{rest if others else ''}."
            )
        return f"{wrote}; not accounted for everywhere: {lacking}."

    async def _write_all(self) -> None:
        bases = await frontend_bases(self.platform)
        async with open_http(MAX_IN_FLIGHT) as http:
            writer = FrontendWriter(self.platform, http)
            # the first write finds out whether the frontend appends (ours) or only gets and sets (upstream PHP)
            await self._one(writer, bases[0], self.entry(0))
            self.sent = 1
            gate = asyncio.Semaphore(MAX_IN_FLIGHT)
            pending: set[asyncio.Task[None]] = set()
            start = time.monotonic()
            for i in range(1, self.planned):
                delay = start + i / self.rate - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), timeout=delay)
                if self._stop.is_set():
                    break
                await gate.acquire()
                self.sent += 1
                task = asyncio.create_task(self._gated(writer, bases[i % len(bases)], self.entry(i), gate))
                pending.add(task)
                task.add_done_callback(pending.discard)
                self._changed()
            if pending:
                await asyncio.gather(*pending)

    async def _gated(self, writer: FrontendWriter, base: str, entry: str, gate: asyncio.Semaphore) -> None:
        try:
            await self._one(writer, base, entry)
        finally:
            gate.release()

    async def _one(self, writer: FrontendWriter, base: str, entry: str) -> None:
        began = time.perf_counter()
        try:
            await writer.write(base, entry)
        except HTTP_ERRORS as exc:
            self.failed += 1
            if len(self.errors) < 5:
                self.errors.append(f"{entry}: {type(exc).__name__} {exc}".strip())
        except (WriteFailed, DashboardError) as exc:
            self.failed += 1
            if len(self.errors) < 5:
                self.errors.append(f"{entry}: {exc}" if str(exc) else f"{entry}: {type(exc).__name__}")
        else:
            self.ok += 1
            self.written.append(entry)
            took = (time.perf_counter() - began) * 1000
            self._latency_total += took
            self.latency_ms_max = max(self.latency_ms_max, took)
        finally:
            self._changed()

    async def _account(self) -> None:
        """Wait (with a deadline) until every node holds every acknowledged entry; then count per node."""
        deadline = time.monotonic() + CHECK_DEADLINE
        while True:
            self.nodes = await count_entries(self.platform, self.written)
            done = self.nodes and all(n.missing == 0 and n.error is None for n in self.nodes)
            if done or time.monotonic() >= deadline:
                return
            self._changed()
            await asyncio.sleep(0.05)

    def to_json(self) -> dict[str, object]:
        elapsed = (self.finished_at or time.time()) - self.started_at
        return {
            "id": self.id,
            "state": self.state,
            "rate": self.rate,
            "seconds": self.seconds,
            "planned": self.planned,
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "errors": list(self.errors),
            "elapsed_seconds": round(elapsed, 2),
            "progress": round(min(1.0, self.sent / self.planned), 3),
            "latency_ms_avg": round(self._latency_total / self.ok, 2) if self.ok else None,
            "latency_ms_max": round(self.latency_ms_max, 2),
            "nodes": [n.to_json() for n in self.nodes],
            "message": self.message,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "data_loss": self.entries_lost > 0,
            "entries_lost": self.entries_lost,
        }


def _compare(raw: object, wanted: set[str], expected: Sequence[str]) -> tuple[int, list[str]]:
    """(how many of `wanted` the stored value holds, the expected entries it lacks, in order)."""
    present = set(split_entries(raw)) if isinstance(raw, bytes) else set()
    return len(wanted & present), [e for e in expected if e not in present]


def lost_everywhere(nodes: Sequence[NodeCount]) -> int:
    """How many entries no node holds; 0 when a node could not be read (nothing can be said of "every node")."""
    if not nodes or any(n.error for n in nodes):
        return 0
    return len(frozenset.intersection(*(n.missing_entries for n in nodes)))


async def leader_pod(platform: Platform) -> tuple[str, int] | None:
    """The leader pod's name and restart count (None when there is none, or the platform cannot say)."""
    try:
        pods = await platform.get_pods()
    except Exception:  # the accounting goes on without it; only the cause of a loss goes unsaid
        return None
    leaders = sorted((p.name, p.restarts) for p in pods if p.component == "redis-leader" and not p.deleting)
    return leaders[0] if leaders else None


def leader_restart(before: tuple[str, int] | None, after: tuple[str, int] | None) -> str | None:
    """How the leader restarted between two `leader_pod` readings ("restarted (restarts 0 → 1)"), else None."""
    if before is None or after is None:
        return None
    if after[0] != before[0]:
        return f"{before[0]} was replaced by {after[0]}"
    if after[1] > before[1]:
        return f"{after[0]} restarted (restarts {before[1]} → {after[1]})"
    return None


async def count_entries(platform: Platform, expected: Sequence[str]) -> list[NodeCount]:
    """Per Redis node: how many of `expected` its guestbook holds, and a few of the missing ones."""
    leader, followers = await split_nodes(platform)
    wanted = set(expected)

    async def one(endpoint: RedisEndpoint) -> NodeCount:
        count = NodeCount(endpoint.name, "leader" if endpoint is leader else "follower")
        try:
            raw = await ask(endpoint, "GET", GUESTBOOK_KEY, timeout=2.0)
        except (RedisError, OSError) as exc:
            count.error = f"{type(exc).__name__}: {exc}"
            count.missing = len(wanted)
            return count
        # tens of thousands of entries take milliseconds to split and compare: off the event loop
        count.found, missing = await asyncio.to_thread(_compare, raw, wanted, expected)
        count.missing = len(missing)
        count.missing_sample = missing[:5]
        count.missing_entries = frozenset(missing)
        return count

    return list(await asyncio.gather(*(one(e) for e in [leader, *followers])))
