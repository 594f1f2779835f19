"""One Redis Service as the frontend sees it (`redis-leader`, `redis-follower`): redis-py's asyncio client per endpoint.

Like a client of a Kubernetes Service, the frontend talks to one endpoint at a time, picked round-robin (starting at
a random one, as kube-proxy picks one per connection) from the endpoints file. The client for that endpoint is kept
until the endpoint leaves the file or fails; then the next endpoint is tried, each at most once per call. The
protocol is redis-py's (with hiredis when installed); this module only decides which endpoint to use, when a
failed command may be sent again, and how the failure reads (`ServiceUnavailable`, one sentence and a hint).

- `pooled=True` (the leader): a connection pool, so concurrent writers do not wait for each other; redis-py checks a
  pooled connection before it lends it, so a connection the server closed while idle is replaced transparently.
- `pooled=False` (the follower's reads): one connection. `cmd=get` is single-flight (see `SingleFlight`), so at most
  one GET is in flight anyway.
- redis-py's own retries are off: a write that broke after it was sent must not be sent twice (an append would be
  doubled); reads (`idempotent=True`) are retried here once on the next endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dashboard.guestbook.endpoints import Address, EndpointsFile, LogFn, ServiceUnavailable

try:  # redis-py >= 7
    from redis.maint_notifications import MaintNotificationsConfig

    # Off on purpose: with its default ("auto"), redis-py 8's pool skips the check that replaces a connection the
    # server closed while it sat idle (`maint_notifications_enabled()` returns the truthy "auto"), so the next
    # write would go to a dead socket and fail after it was sent. Redis OSS sends no such notifications anyway.
    POOL_OPTIONS: dict[str, Any] = {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}
except ImportError:  # pragma: no cover - older redis-py checks the connection unconditionally
    POOL_OPTIONS = {}

T = TypeVar("T")

CONNECT_TIMEOUT = 1.0
COMMAND_TIMEOUT = 5.0
POOL_SIZE = 32
BROKEN = (RedisConnectionError, RedisTimeoutError, OSError)


def _reason(exc: BaseException) -> str:
    return str(exc).rstrip(".") or type(exc).__name__


class RedisService:
    """Commands for one Service name, sent to one of its endpoints with redis-py."""

    def __init__(
        self, name: str, endpoints: EndpointsFile, client_name: str, log: LogFn, *, pooled: bool = True
    ) -> None:
        self.name = name
        self._endpoints = endpoints
        self._client_name = client_name
        self._log = log
        self._pooled = pooled
        self._client: aioredis.Redis | None = None
        self._addr: Address | None = None
        self._used = False  # whether a command has succeeded on the current client
        self._version = -1
        self._next = random.randrange(1 << 16)
        self._lock = asyncio.Lock()

    # endpoints and clients -------------------------------------------------------------------------------------

    def _addresses(self) -> list[Address]:
        addrs = self._endpoints.lookup(self.name)
        if self._endpoints.version != self._version:
            self._version = self._endpoints.version
            if self._addr is not None and self._addr not in addrs:
                self._log(f"{self.name}: {self._addr[0]}:{self._addr[1]} left the endpoints; reconnecting")
                self._drop()
        return addrs

    def _make(self, addr: Address) -> aioredis.Redis:
        host, port = addr
        name = self.name
        log = self._log

        async def on_connect(conn: Any) -> None:
            await conn.on_connect()
            log(f"{name}: connection to {host}:{port} open")

        pool = aioredis.BlockingConnectionPool(
            host=host,
            port=port,
            client_name=self._client_name,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT if self._pooled else None,  # see `execute`
            retry=Retry(NoBackoff(), 0),
            max_connections=POOL_SIZE if self._pooled else 1,
            timeout=COMMAND_TIMEOUT,
            redis_connect_func=on_connect,
            **POOL_OPTIONS,
        )
        return aioredis.Redis(connection_pool=pool, single_connection_client=not self._pooled)

    def _drop(self, failed: aioredis.Redis | None = None) -> None:
        """Forget the current client (only if it is still `failed`: a concurrent caller may have replaced it)."""
        if failed is not None and self._client is not failed:
            return
        client, self._client, self._addr = self._client, None, None
        if client is not None:
            task = asyncio.ensure_future(client.aclose(close_connection_pool=True))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # closing a broken client may fail

    def _current(self, addrs: list[Address]) -> tuple[aioredis.Redis, Address]:
        if self._client is None or self._addr is None:
            addr = addrs[self._next % len(addrs)]
            self._next = (self._next + 1) % (1 << 16)
            self._client, self._addr, self._used = self._make(addr), addr, False
        return self._client, self._addr

    # commands --------------------------------------------------------------------------------------------------

    async def run(self, command: Callable[[aioredis.Redis], Awaitable[T]], *, idempotent: bool) -> T:
        """Run `command` on the current endpoint's client; move on to the next endpoint when it cannot connect.

        A command on a connection that broke under it is sent again (once, on the next endpoint) only when
        `idempotent`; otherwise the caller learns that the endpoint stopped answering. A client that has never
        answered counts as not connected (its endpoint is skipped), which for a write is exact unless the server
        died while executing the very first command of a new client.
        """
        addrs = self._addresses()
        failures: list[str] = []
        retried = False
        for _ in range(len(addrs) + 1):
            client, addr = self._current(addrs)
            used = self._used
            try:
                result = await command(client)
            except BROKEN as exc:
                self._drop(client)
                where = f"{addr[0]}:{addr[1]}"
                if not used:  # never answered: nothing was stored, try the next endpoint
                    failures.append(_reason(exc))
                    self._log(f"{self.name}: {_reason(exc)}")
                    if len(failures) >= len(addrs):
                        break
                    continue
                self._log(f"{self.name}: connection to {where} lost ({_reason(exc)})")
                self._endpoints.refresh(force=True)
                if not idempotent or retried:
                    raise ServiceUnavailable(
                        f"{self.name} at {where} stopped answering: {_reason(exc)}.",
                        f"Check the {self.name} pods (kubectl get pods -l app=redis) and try again.",
                    ) from None
                retried = True
                addrs = self._addresses()
                continue
            if self._client is client:
                self._used = True
            return result
        raise ServiceUnavailable(
            f"Cannot connect to {self.name}: {'; '.join(failures) or 'no endpoint answered'}.",
            f"Check that the {self.name} pods are Running (kubectl get pods -l app=redis) and that Redis listens.",
        )

    async def execute(self, client: aioredis.Redis, *args: str | bytes | int) -> Any:
        """One command on `client`. On the one-connection client (the follower's reads, at most one in flight
        thanks to `SingleFlight`), it goes straight to redis-py's connection (`send_command`, `read_response`):
        the client's per-command machinery (lock, retry wrapper, metrics) costs more than the GET itself."""
        if self._pooled:
            return await client.execute_command(*args)  # type: ignore[no-untyped-call]
        conn = client.connection or (await client.initialize()).connection
        assert conn is not None
        async with self._lock:
            try:
                async with asyncio.timeout(COMMAND_TIMEOUT):  # a timer, not redis-py's wait_for task per read
                    await conn.send_command(*args)
                    return await conn.read_response()
            except (ResponseError, asyncio.CancelledError) as exc:
                if not isinstance(exc, ResponseError):  # cancelled half-way: the connection is out of step
                    await conn.disconnect(nowait=True)
                raise
            except BaseException:
                await conn.disconnect(nowait=True)
                raise

    async def ping(self, within: float) -> bool:
        """Whether a PING through the service succeeds within `within` seconds."""

        async def ping(client: aioredis.Redis) -> bool:
            return await self.execute(client, "PING") in (True, b"PONG")

        try:
            return await asyncio.wait_for(self.run(ping, idempotent=True), within)
        except Exception:  # any failure means: not healthy
            return False

    async def close(self) -> None:
        client, self._client, self._addr = self._client, None, None
        if client is not None:
            with contextlib.suppress(*BROKEN):
                await client.aclose(close_connection_pool=True)


class SingleFlight(Generic[T]):
    """Single-flight for one read: concurrent callers share the one read in flight (Go's `singleflight`).

    The first caller starts the read; callers that arrive while it is in flight wait for the same answer, and the
    next caller after it finished starts a new one. So at most one read is in flight however many clients ask.
    The answer a late joiner gets was read at most one Redis round trip before it arrived; the read goes to a
    follower, which lags the leader by at least that anyway, so joining adds no staleness a client could rely on
    not seeing. (Measured with `bench/bench_guestbook.py`, 10 connections, the same run: 13,663 req/s joining the
    read in flight, 10,734 req/s when late callers queued for a read of their own.)
    Each caller gets a future of its own (cancelling it touches nobody else), resolved when the read finishes.
    """

    def __init__(self, read: Callable[[], Awaitable[T]]) -> None:
        self._read = read
        self._waiters: list[asyncio.Future[T]] = []  # waiting for the read in flight; empty when none is

    def get(self) -> asyncio.Future[T]:
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        if len(self._waiters) == 1:
            asyncio.ensure_future(self._read()).add_done_callback(self._finished)
        return fut

    def _finished(self, task: asyncio.Future[T]) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            _copy_outcome(fut, task)


def _copy_outcome(out: asyncio.Future[T], task: asyncio.Future[T]) -> None:
    if out.done():
        return
    if task.cancelled():
        out.cancel()
    elif (exc := task.exception()) is not None:
        out.set_exception(exc)
    else:
        out.set_result(task.result())
