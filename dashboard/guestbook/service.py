"""A Redis Service as the frontend sees it through kube-proxy: one name, several endpoints, one connection at a time.

`RedisService` keeps one persistent pipelined connection to one endpoint of its service, picked round-robin (from a
random start) when
it (re)connects, like kube-proxy picks a backend per TCP connection. When the endpoints file drops that endpoint
the connection is closed and the next command connects to a listed one. When a connection fails, the endpoints
file is re-read at once and the other endpoints are tried. Idempotent commands are retried once on a fresh
connection when the connection broke under them; non-idempotent ones (EVAL append) are not.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from dashboard.guestbook.endpoints import Address, EndpointsFile, EndpointsUnavailable
from dashboard.guestbook.resp import RedisConnection, RedisConnectionError, Reply

LogFn = Callable[[str], None]


class ServiceUnavailable(Exception):
    """No endpoint of the service answers. `str(exc)` is one sentence; `hint` is the next step."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


class RedisService:
    """Commands for one Service name (`redis-leader` or `redis-follower`), sent over one shared connection."""

    def __init__(self, name: str, endpoints: EndpointsFile, client_name: str, log: LogFn) -> None:
        self.name = name
        self._endpoints = endpoints
        self._client_name = client_name
        self._log = log
        self._conn: RedisConnection | None = None
        self._connecting: asyncio.Future[RedisConnection] | None = None
        self._version = -1
        # Start at a random endpoint, as kube-proxy picks one per connection: replicas spread over the followers.
        self._next = random.randrange(1 << 16)
        self._shared_get: tuple[asyncio.Future[Reply], RedisConnection, int] | None = None

    # connection management ---------------------------------------------------------------------------------

    def _current(self) -> RedisConnection | None:
        """The open connection, if it still points at a listed endpoint. Raises EndpointsUnavailable."""
        addrs = self._endpoints.lookup(self.name)
        conn = self._conn
        if conn is None:
            return None
        if conn.closed:
            self._conn = None
            return None
        if self._endpoints.version != self._version:
            self._version = self._endpoints.version
            if (conn.host, conn.port) not in addrs:
                self._log(f"{self.name}: {conn.address} left the endpoints; reconnecting")
                conn.close("endpoint removed from the Service")
                self._conn = None
                return None
        return conn

    async def connection(self) -> RedisConnection:
        """The shared connection, connecting (round-robin over the endpoints, each tried once) when needed."""
        try:
            conn = self._current()
        except EndpointsUnavailable as exc:
            raise ServiceUnavailable(str(exc), exc.hint) from None
        if conn is not None:
            return conn
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
            self._connecting.add_done_callback(self._connected)
        return await asyncio.shield(self._connecting)

    def _connected(self, fut: asyncio.Future[RedisConnection]) -> None:
        self._connecting = None
        if not fut.cancelled() and fut.exception() is None:
            self._conn = fut.result()
            self._version = self._endpoints.version

    async def _connect(self) -> RedisConnection:
        self._endpoints.refresh(force=True)
        try:
            addrs: list[Address] = list(self._endpoints.lookup(self.name))
        except EndpointsUnavailable as exc:
            raise ServiceUnavailable(str(exc), exc.hint) from None
        failures: list[str] = []
        for i in range(len(addrs)):
            host, port = addrs[(self._next + i) % len(addrs)]
            try:
                conn = await RedisConnection.open(host, port, name=self._client_name)
            except RedisConnectionError as exc:
                failures.append(str(exc))
                self._log(f"{self.name}: {exc}")
                continue
            self._next = (self._next + i + 1) % len(addrs)
            conn.on_lost = self._lost
            return conn
        raise ServiceUnavailable(
            f"Cannot connect to {self.name}: {'; '.join(failures)}.",
            f"Check that the {self.name} pods are Running (kubectl get pods -l app=redis) and that Redis listens.",
        )

    def _lost(self, conn: RedisConnection, reason: str) -> None:
        """A connection failed under us (once per connection): log it and re-read the endpoints at once."""
        if self._conn is conn:
            self._conn = None
        self._log(f"{self.name}: {reason}")
        self._endpoints.refresh(force=True)

    def _broken(self, conn: RedisConnection, exc: RedisConnectionError) -> None:
        if self._conn is conn:
            self._conn = None

    # commands ---------------------------------------------------------------------------------------------

    async def call(self, *args: bytes | str | int, idempotent: bool) -> Reply:
        """Send one command; retry once on a new connection if it broke and the command is idempotent."""
        for attempt in (1, 2):
            conn = await self.connection()
            try:
                return await conn.send(*args)
            except RedisConnectionError as exc:
                self._broken(conn, exc)
                if not idempotent or attempt == 2:
                    raise ServiceUnavailable(
                        f"{self.name} at {conn.address} stopped answering: {exc}.",
                        f"Check the {self.name} pods (kubectl get pods -l app=redis) and try again.",
                    ) from None
        raise AssertionError("unreachable")

    def get_shared_nowait(self, key: str) -> asyncio.Future[Reply] | None:
        """The future of a GET `key` on the current connection, or None when there is no usable connection yet.

        A GET that is queued but not yet sent is shared with later callers. That keeps reads honest: the shared
        GET leaves after every joiner arrived, so nobody gets a value older than what the server held when
        their request came in. Callers must not cancel the returned future (others may be waiting on it).
        """
        try:
            conn = self._current()
        except EndpointsUnavailable:
            return None
        if conn is None:
            return None
        shared = self._shared_get
        if shared is not None and shared[1] is conn and shared[2] == conn.batch and not shared[0].done():
            return shared[0]
        fut = conn.send("GET", key)
        self._shared_get = (fut, conn, conn.batch)
        return fut

    async def get_shared(self, key: str) -> Reply:
        """GET `key` (sharing an unsent GET, see `get_shared_nowait`), connecting and retrying once as needed."""
        for attempt in (1, 2):
            conn = await self.connection()
            fut = self.get_shared_nowait(key) or conn.send("GET", key)
            try:
                return await asyncio.shield(fut)
            except RedisConnectionError as exc:
                self._broken(conn, exc)
                if attempt == 2:
                    raise ServiceUnavailable(
                        f"{self.name} at {conn.address} stopped answering: {exc}.",
                        f"Check the {self.name} pods (kubectl get pods -l app=redis) and try again.",
                    ) from None
        raise AssertionError("unreachable")

    async def ping(self, within: float) -> bool:
        """Whether a PING through the service succeeds within `within` seconds."""
        try:
            return await asyncio.wait_for(self.call("PING", idempotent=True), within) == b"PONG"
        except Exception:  # any failure means: not healthy
            return False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
