"""The one Redis sampler per platform: reads every Redis node on a timer and publishes a `ReplicationSnapshot`.

One asyncio task asks the platform for its Redis endpoints every `interval` seconds, then reads each node
concurrently over redis-py asyncio with one non-transactional pipeline: `INFO server replication stats` (the
replication state, the process's `run_id` and the leader's resync counters, in one command), `GET guestbook`,
`DBSIZE`. Only when a node holds keys besides `guestbook` (and at most `key_limit` of them) a second round
trip lists them (`SCAN`) and a pipeline of `DUMP`s digests their values, so the usual lab (one key) costs
three commands per node per tick. A Redis older than 7.0 takes one section per `INFO`: the first reply says so
(an error) and from then on that node gets the three sections as three commands of the same pipeline (five
commands per node). The pure derivations live in `dashboard.replication`.

Viewers never cause Redis commands: the web layer reads `snapshot` (and `history`) and is told of changes by
`add_listener`. `commands_sent` counts every command issued, so a benchmark can show that 50 viewers and
one viewer cost the same. A node that fails shows in the snapshot with its error; the loop never dies of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from dashboard.guestbook.entries import KEY as GUESTBOOK_KEY
from dashboard.models import Listener, RedisEndpoint
from dashboard.replication import (
    EntriesCache,
    LagHistory,
    NodeData,
    ReplicationSnapshot,
    build_snapshot,
    choose_leader,
    parse_info,
    parse_replication,
    unreachable_node,
)

log = logging.getLogger(__name__)

# DUMP's payload ends with a 2-byte RDB version and an 8-byte CRC64; they are dropped before digesting so that a
# leader and a follower running different Redis versions (the lab mixes 6.0 and 6.2) compare by value.
_DUMP_TRAILER = 10

# What each tick asks every node with INFO: `replication` for the chart and the panel, `server` for `run_id` (a new
# process: a follower restarted between two samples) and `tcp_port`, `stats` for `sync_full` / `sync_partial_ok`.
INFO_SECTIONS = ("server", "replication", "stats")


class EndpointSource(Protocol):
    """What the sampler needs from a platform (`dashboard.platforms.base.Platform` satisfies it)."""

    async def redis_endpoints(self) -> list[RedisEndpoint]: ...


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, TimeoutError) and not text:
        text = "no answer in time"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def takes_one_info_section(reply: Any) -> bool:
    """True for the reply of a Redis older than 7.0 to `INFO server replication stats`: its INFO takes at most one
    section and answers more with "ERR syntax error" (redis-py: a `ResponseError`, without the "ERR ")."""
    return isinstance(reply, ResponseError) and "syntax error" in str(reply).lower()


def _merge_info(replies: Sequence[Any]) -> dict[str, str] | Exception:
    """One dict of the `INFO` replies of a tick (one reply of several sections, or one per section). Only the
    `replication` section is required: an error there is the node's error; one in another section is skipped."""
    parsed = [parse_info(reply) for reply in replies if not isinstance(reply, Exception)]
    info = parsed[0] if len(parsed) == 1 else {k: v for part in parsed for k, v in part.items()}
    if "role" not in info:
        errors = [r for r in replies if isinstance(r, Exception)]
        return errors[0] if errors else ResponseError("INFO replication answered without a role")
    return info


def _info_pipeline(client: aioredis.Redis, by_section: bool) -> Any:
    """A pipeline that starts with this tick's `INFO`: one command of every section, or one per section."""
    pipe = client.pipeline(transaction=False)
    if by_section:
        for section in INFO_SECTIONS:
            pipe.execute_command("INFO", section)
    else:
        pipe.execute_command("INFO", *INFO_SECTIONS)
    return pipe


class Sampler:
    """Samples every Redis node of `platform` every `interval` seconds (see the module docstring).

    `snapshot` is the latest `ReplicationSnapshot`; `version` increases only when its content changes
    (not its `sampled_at`), and listeners are called then. `history` is the `LagHistory` for charts.
    `one_section_info`: ask every node one `INFO` per section from the start, as a Redis older than 7.0 needs
    (otherwise found out per node from its first reply). `idle_interval` with `watched`: while `watched()` is
    false, ticks come every `idle_interval` seconds instead (a `poke()` still samples at once).
    """

    def __init__(
        self,
        platform: EndpointSource,
        interval: float = 0.5,
        *,
        key_limit: int = 1000,
        socket_timeout: float = 0.5,
        connect_timeout: float = 0.3,
        one_section_info: bool = False,
        idle_interval: float | None = None,
        watched: Callable[[], bool] | None = None,
    ) -> None:
        self.platform = platform
        self.interval = interval
        self.idle_interval = idle_interval
        self.watched = watched
        self.key_limit = key_limit
        self.socket_timeout = socket_timeout
        self.connect_timeout = connect_timeout
        # a safety net above redis-py's own timeouts: one slow node never holds the tick for long
        self._node_timeout = connect_timeout + 4 * socket_timeout
        self.snapshot = ReplicationSnapshot()
        self.history = LagHistory()
        self.version = 0
        self.commands_sent = 0
        self.ticks = 0
        self.entries_cache = EntriesCache()  # unchanged guestbook values are not split again
        self._clients: dict[tuple[str, int], aioredis.Redis] = {}
        self._one_section_only = one_section_info
        self._one_section_info: set[tuple[str, int]] = set()  # nodes older than Redis 7.0: one INFO per section
        self._endpoints: list[RedisEndpoint] = []
        self._listeners: list[Listener] = []
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- public API -----------------------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call `listener()` (on the event loop, no arguments) whenever the snapshot's content changes."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Start the sampling task (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="redis-sampler")

    async def stop(self) -> None:
        """Stop the task and close every Redis connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        async with self._lock:
            for address in list(self._clients):
                await self._drop_client(address)

    @property
    def client_addresses(self) -> list[tuple[str, int]]:
        """The (host, port) of every Redis client currently kept open."""
        return list(self._clients)

    def current_interval(self) -> float:
        """The time between two ticks now: `interval`, or `idle_interval` (± 20 %, at random) while nobody needs the
        samples. The spread keeps a room's idle labs, whose steps ended together, from reading their Redis nodes
        all at the same instant: a burst of reads through the port-forwards on a loaded machine timed some out."""
        if self.idle_interval is not None and self.watched is not None and not self.watched():
            return max(self.interval, self.idle_interval) * random.uniform(0.8, 1.2)
        return self.interval

    def poke(self) -> None:
        """Wake the loop now instead of at the end of the interval (after a step, when pods changed)."""
        self._wake.set()

    async def sample_now(self) -> ReplicationSnapshot:
        """Run one tick now (after any tick in progress) and return its snapshot."""
        async with self._lock:
            await self._tick()
        return self.snapshot

    # -- the loop -------------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                async with self._lock:
                    await self._tick()
            except Exception:  # a bug must not stop the sampling; it is logged once per tick
                log.exception("Redis sampling tick failed")
            delay = max(0.0, self.current_interval() - (loop.time() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()

    async def _tick(self) -> None:
        now = time.time()
        errors: list[tuple[str, str]] = []
        try:
            self._endpoints = endpoints = list(await self.platform.redis_endpoints())
        except Exception as exc:  # any platform failure is shown in the snapshot, never raised
            endpoints = self._endpoints  # keep showing the last known nodes, and say why they may be stale
            errors.append(("platform", _describe(exc)))
        await self._prune_clients(endpoints)
        data: Sequence[NodeData] = await asyncio.gather(*(self._read_node(ep) for ep in endpoints))
        leader = choose_leader([d.replication for d in data])
        followers = [d.replication for d in data if d.replication is not leader]
        behind = self.history.record(now, leader, followers)
        snapshot = build_snapshot(data, now, behind, self.entries_cache, errors=errors)
        changed = snapshot != self.snapshot
        self.snapshot = snapshot
        self.ticks += 1
        if changed:
            self.version += 1
            for listener in list(self._listeners):
                try:
                    listener()
                except Exception:
                    log.exception("replication listener failed")

    # -- one node -------------------------------------------------------------------------------------------------

    def _client(self, endpoint: RedisEndpoint) -> aioredis.Redis:
        address = (endpoint.host, endpoint.port)
        client = self._clients.get(address)
        if client is None:
            client = aioredis.Redis(
                host=endpoint.host,
                port=endpoint.port,
                socket_timeout=self.socket_timeout,
                socket_connect_timeout=self.connect_timeout,
                retry=Retry(NoBackoff(), 0),  # the next tick is the retry
                max_connections=2,
            )
            client.set_response_callback("INFO", lambda response, **options: response)  # raw: parse_info parses it
            self._clients[address] = client
        return client

    async def _prune_clients(self, endpoints: Sequence[RedisEndpoint]) -> None:
        wanted = {(e.host, e.port) for e in endpoints}
        self._one_section_info &= wanted
        for address in [a for a in self._clients if a not in wanted]:
            await self._drop_client(address)

    async def _drop_client(self, address: tuple[str, int]) -> None:
        client = self._clients.pop(address, None)
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _read_node(self, endpoint: RedisEndpoint) -> NodeData:
        try:
            return await asyncio.wait_for(self._read(endpoint), timeout=self._node_timeout)
        except Exception as exc:
            if not isinstance(exc, RedisError | OSError | TimeoutError):  # an unexpected reply: costs this node only
                log.exception("reading Redis node %s failed", endpoint.name)
            # a connection that failed or timed out may hold a half-read reply: start afresh next tick
            await self._drop_client((endpoint.host, endpoint.port))
            return NodeData(unreachable_node(endpoint.name, endpoint.component, _describe(exc)))

    async def _read(self, endpoint: RedisEndpoint) -> NodeData:
        client = self._client(endpoint)
        address = (endpoint.host, endpoint.port)
        by_section = self._one_section_only or address in self._one_section_info
        pipe = _info_pipeline(client, by_section)
        pipe.get(GUESTBOOK_KEY)
        pipe.dbsize()
        *infos, raw, dbsize = await self._send(pipe)
        if not by_section and takes_one_info_section(infos[0]):
            self._one_section_info.add(address)
            infos = await self._send(_info_pipeline(client, by_section=True))
        info = _merge_info(infos)
        if isinstance(info, Exception):
            return NodeData(unreachable_node(endpoint.name, endpoint.component, _describe(info)))
        replication = parse_replication(endpoint.name, endpoint.component, info, host=endpoint.host)
        warnings: list[str] = []
        guestbook: bytes | None = None
        if isinstance(raw, Exception):
            warnings.append(f"GET {GUESTBOOK_KEY}: {raw}")  # WRONGTYPE, or LOADING while a follower syncs
        elif isinstance(raw, bytes):
            guestbook = raw
        size = dbsize if isinstance(dbsize, int) else None
        keys: dict[str, bytes] | None = None
        if size is not None:
            others = size - (1 if guestbook is not None else 0)
            if others <= 0:
                keys = {}
            elif size <= self.key_limit:
                try:
                    keys = await self._read_keys(client)
                except RedisError as exc:  # e.g. LOADING; the key comparison is skipped this tick
                    warnings.append(f"reading keys: {exc}")
        return NodeData(
            replication=replication,
            guestbook=guestbook,
            dbsize=size,
            keys=keys,
            warning="; ".join(warnings) or None,
        )

    async def _send(self, pipe: Any) -> list[Any]:
        """Execute a pipeline, counting its commands; errors come back as values (`raise_on_error=False`)."""
        self.commands_sent += len(pipe)
        return list(await pipe.execute(raise_on_error=False))

    async def _read_keys(self, client: aioredis.Redis) -> dict[str, bytes]:
        """Key → digest of its value for every key but `guestbook`: SCAN, then one pipeline of DUMPs."""
        names: list[bytes] = []
        cursor = 0
        while True:
            self.commands_sent += 1
            cursor, batch = await client.scan(cursor=cursor, count=self.key_limit)
            names.extend(name for name in batch if isinstance(name, bytes) and name != GUESTBOOK_KEY.encode())
            if cursor == 0:
                break
        names = sorted(set(names))
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.dump(name)
        dumps = await self._send(pipe)  # an empty pipeline sends nothing
        return {
            name.decode("utf-8", "backslashreplace"): hashlib.blake2b(dump[:-_DUMP_TRAILER], digest_size=16).digest()
            for name, dump in zip(names, dumps, strict=True)
            if isinstance(dump, bytes)  # None: the key expired or was deleted in between
        }
