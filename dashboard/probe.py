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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
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


def now_ns() -> int:
    return time.perf_counter_ns()


async def command(client: aioredis.Redis, *args: str | int) -> Any:
    """One Redis command by name (redis-py's `execute_command` is untyped)."""
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


def redis_client(endpoint: RedisEndpoint, timeout: float = 1.0) -> aioredis.Redis:
    return aioredis.Redis(host=endpoint.host, port=endpoint.port, socket_timeout=timeout, socket_connect_timeout=1.0)


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


@dataclass
class FrontendWriter:
    """Appends entries through the frontend; learns once whether it speaks `cmd=append` or only get/set."""

    platform: Platform
    client: httpx.AsyncClient
    append_supported: bool | None = None
    _set_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def write(self, base: str, entry: str) -> None:
        if self.append_supported is not False:
            response = await self.client.get(f"{base}/guestbook.php", params={"cmd": "append", "value": entry})
            if append_ok(response.status_code, response.content):
                self.append_supported = True
                return
            body = _json(response)
            if self.append_supported is None and response.status_code == 200 and isinstance(body, dict):
                self.append_supported = False  # upstream PHP: an unknown cmd is a read
            else:
                raise WriteFailed(_failure(response, body))
        await self._write_with_set(base, entry)

    async def _write_with_set(self, base: str, entry: str) -> None:
        """The upstream frontend's way (read, add, set the whole list), serialised so our own writes never race."""
        async with self._set_lock:
            leader, _ = await split_nodes(self.platform)
            client = redis_client(leader)
            try:
                raw = await client.get(GUESTBOOK_KEY)
            finally:
                await client.aclose()
            current = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
            value = f"{current},{encode_entry(entry)}" if current else encode_entry(entry)
            response = await self.client.get(f"{base}/guestbook.php", params={"cmd": "set", "value": value})
            body = _json(response)
            if response.status_code != 200 or not isinstance(body, dict) or body.get("message") != "Updated":
                raise WriteFailed(_failure(response, body))


def _json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.text)
    except ValueError:
        return None


def _failure_bytes(status: int, body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return f"HTTP {status}: {data['error']}"
    return f"HTTP {status}"


def _failure(response: httpx.Response, body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return f"HTTP {response.status_code}: {body['error']}"
    return f"HTTP {response.status_code}"


class HttpConnection:
    """A minimal HTTP/1.1 keep-alive GET client over asyncio streams: the write load's hot path.

    httpx costs about 2–3 ms of CPU per request, which caps a load at a few hundred writes per second and slows
    the dashboard's event loop; this costs a tenth of that. Content-Length and chunked bodies; one request at a
    time per connection; any protocol surprise closes the connection and raises.
    """

    def __init__(self, base: str) -> None:
        url = httpx.URL(base)
        self.host = url.host
        self.port = url.port or 80
        self.authority = f"{self.host}:{self.port}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, target: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(self._get(target), timeout)
        except BaseException:
            self.close()
            raise

    async def _get(self, target: str) -> tuple[int, bytes]:
        if self._writer is None or self._reader is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {self.authority}\r\nAccept: application/json\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                data = await reader.readexactly(size + 2)
                if size == 0:
                    break
                chunks.append(data[:-2])
            body = b"".join(chunks)
        else:
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def append_target(entry: str) -> str:
    return "/guestbook.php?" + httpx.QueryParams({"cmd": "append", "value": entry}).__str__()


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


async def _watch(
    endpoint: RedisEndpoint, client: aioredis.Redis, marker: bytes, timing: NodeTiming, end: float
) -> None:
    """Poll `endpoint` until `marker` is in its guestbook; record the midpoint of the poll that first saw it."""
    started = time.monotonic()
    while True:
        asked = now_ns()
        try:
            if timing.polls % FULL_READ_EVERY == FULL_READ_EVERY - 1:
                value = await client.get(GUESTBOOK_KEY)
            else:
                value = await client.getrange(GUESTBOOK_KEY, -TAIL_BYTES, -1)
        except (RedisError, OSError) as exc:
            timing.error = f"{type(exc).__name__}: {exc}"
            value = None
        answered = now_ns()
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


async def run_probe(platform: Platform, *, deadline: float = PROBE_DEADLINE) -> dict[str, Any]:
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
        async with httpx.AsyncClient(timeout=5.0) as http:
            with contextlib.suppress(httpx.HTTPError):
                await http.head(f"{bases[0]}/")  # warm the HTTP connection
            writer = FrontendWriter(platform, http)
            end = time.monotonic() + deadline
            watchers = [
                asyncio.create_task(_watch(e, clients[e.name], marker_bytes, timings[e.name], end)) for e in nodes
            ]
            sent_ns = now_ns()
            try:
                await writer.write(bases[0], marker)
            except (httpx.HTTPError, WriteFailed, DashboardError) as exc:
                for task in watchers:
                    task.cancel()
                await asyncio.gather(*watchers, return_exceptions=True)
                message = exc.message if isinstance(exc, DashboardError) else str(exc) or type(exc).__name__
                raise DashboardError(
                    f"The probe's write through {bases[0]} failed: {message}",
                    "Check that the frontend pods are ready (pods board), then try again.",
                ) from exc
            acked_ns = now_ns()
            try:
                leader_client = clients[leader.name]
                await leader_client.publish("guestbook-lab:probe", marker)
                waited = now_ns()
                acked = int(await command(leader_client, "WAIT", len(followers), WAIT_TIMEOUT_MS))
                wait_ms = round((now_ns() - waited) / 1e6, 3)
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
        return {
            "name": self.name,
            "role": self.role,
            "found": self.found,
            "missing": self.missing,
            "missing_sample": self.missing_sample,
            "error": self.error,
        }


def check_params(rate: Any, seconds: Any) -> tuple[int, float]:
    """Validate the load's parameters (BadRequest with the bounds when out of range)."""
    try:
        r = int(rate)
        s = float(seconds)
    except (TypeError, ValueError):
        raise BadRequest(
            f"A write load needs both rate and seconds, as numbers (got rate={rate!r}, seconds={seconds!r}).",
            f"Send rate 1–{MAX_RATE} and seconds 1–{MAX_SECONDS}.",
        ) from None
    if not 1 <= r <= MAX_RATE or not 0.1 <= s <= MAX_SECONDS:
        raise BadRequest(
            f"A write load of {r}/s for {s:g} s is out of bounds.",
            f"Use a rate from 1 to {MAX_RATE} writes per second and from 0.1 to {MAX_SECONDS} seconds.",
        )
    return r, s


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
        limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT)
        async with httpx.AsyncClient(timeout=5.0, limits=limits) as http:
            writer = FrontendWriter(self.platform, http)
            # the first write finds out whether the frontend appends (ours) or only gets and sets (upstream PHP)
            await self._one(writer, None, bases[0], self.entry(0))
            self.sent = 1
            idle: list[HttpConnection] = []
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
                base = bases[i % len(bases)]
                conn = None
                if writer.append_supported:
                    conn = next((c for c in idle if c.authority == httpx.URL(base).netloc.decode()), None)
                    if conn is not None:
                        idle.remove(conn)
                    else:
                        conn = HttpConnection(base)
                task = asyncio.create_task(self._gated(writer, conn, base, self.entry(i), gate, idle))
                pending.add(task)
                task.add_done_callback(pending.discard)
                self._changed()
            if pending:
                await asyncio.gather(*pending)
            for conn in idle:
                conn.close()

    async def _gated(
        self,
        writer: FrontendWriter,
        conn: HttpConnection | None,
        base: str,
        entry: str,
        gate: asyncio.Semaphore,
        idle: list[HttpConnection],
    ) -> None:
        try:
            await self._one(writer, conn, base, entry)
        finally:
            if conn is not None:
                idle.append(conn)
            gate.release()

    async def _one(self, writer: FrontendWriter, conn: HttpConnection | None, base: str, entry: str) -> None:
        began = time.perf_counter()
        try:
            if conn is not None:
                status, body = await conn.get(append_target(entry))
                if not append_ok(status, body):
                    raise WriteFailed(_failure_bytes(status, body))
            else:
                await writer.write(base, entry)
        except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
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
        client = redis_client(endpoint, timeout=2.0)
        try:
            raw = await client.get(GUESTBOOK_KEY)
        except (RedisError, OSError) as exc:
            count.error = f"{type(exc).__name__}: {exc}"
            count.missing = len(wanted)
            return count
        finally:
            await client.aclose()
        present = set(split_entries(raw)) if isinstance(raw, bytes) else set()
        count.found = len(wanted & present)
        missing = [e for e in expected if e not in present]
        count.missing = len(missing)
        count.missing_sample = missing[:5]
        count.missing_entries = frozenset(missing)
        return count

    return list(await asyncio.gather(*(one(e) for e in [leader, *followers])))
