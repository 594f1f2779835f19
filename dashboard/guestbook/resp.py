"""A tiny RESP2 client on asyncio: one persistent, pipelined connection to one Redis endpoint.

Commands are queued into a write batch that is flushed once per event-loop iteration, and every command
gets a future in a FIFO that is resolved in order as replies arrive, so concurrent callers share one
connection without waiting for each other. A watchdog aborts the connection when the oldest reply is
overdue, which fails every pending future with `RedisConnectionError` (callers decide whether to retry).
Only what the guestbook frontend needs: GET, SET, EVAL/EVALSHA, PING, CLIENT SETNAME.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import cast

Reply = bytes | int | None | list["Reply"]

_CRLF = b"\r\n"


class RedisConnectionError(Exception):
    """The connection failed or was lost before the reply arrived."""


class RedisReplyError(Exception):
    """Redis answered with an error reply (`-ERR ...`, `-NOSCRIPT ...`, `-READONLY ...`)."""

    @property
    def code(self) -> str:
        return str(self).split(" ", 1)[0]


def encode_command(args: tuple[bytes | str | int, ...]) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode("utf-8")
        else:
            data = str(arg).encode("ascii")
        parts.append(b"$%d\r\n" % len(data))
        parts.append(data)
        parts.append(_CRLF)
    return b"".join(parts)


class _Incomplete(Exception):
    pass


def _parse(buf: bytearray, pos: int) -> tuple[Reply | RedisReplyError, int]:
    """Parse one reply at `pos`; return it and the position after it. Raise `_Incomplete` when more data is needed."""
    end = buf.find(_CRLF, pos)
    if end < 0:
        raise _Incomplete
    kind = buf[pos]
    if kind == 36:  # $ bulk string
        length = int(buf[pos + 1 : end])
        if length < 0:
            return None, end + 2
        start = end + 2
        stop = start + length
        if len(buf) < stop + 2:
            raise _Incomplete
        return bytes(buf[start:stop]), stop + 2
    if kind == 43:  # + simple string
        return bytes(buf[pos + 1 : end]), end + 2
    if kind == 58:  # : integer
        return int(buf[pos + 1 : end]), end + 2
    if kind == 45:  # - error
        return RedisReplyError(buf[pos + 1 : end].decode("utf-8", "replace")), end + 2
    if kind == 42:  # * array
        count = int(buf[pos + 1 : end])
        if count < 0:
            return None, end + 2
        items: list[Reply] = []
        nxt = end + 2
        for _ in range(count):
            item, nxt = _parse(buf, nxt)
            if isinstance(item, RedisReplyError):
                item = None  # errors inside arrays do not occur in the commands we send
            items.append(item)
        return items, nxt
    raise RedisConnectionError(f"protocol error: unexpected reply type byte {kind!r}")


class RedisConnection(asyncio.Protocol):
    """One TCP connection to one Redis server. Use `open()`; then `send()` as often as you like."""

    def __init__(self, host: str, port: int, reply_timeout: float) -> None:
        self.host = host
        self.port = port
        self.reply_timeout = reply_timeout
        self.batch = 0  # number of write batches flushed so far; commands sent in the current batch share it
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._pending: deque[tuple[asyncio.Future[Reply], float]] = deque()
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._buf = bytearray()
        self._closed = False
        self._error = "not connected yet"
        self._watchdog: asyncio.TimerHandle | None = None
        self.on_lost: Callable[[RedisConnection, str], None] | None = None  # called once if the link fails

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def closed(self) -> bool:
        return self._closed

    @classmethod
    async def open(
        cls, host: str, port: int, *, connect_timeout: float = 1.0, reply_timeout: float = 2.0, name: str = ""
    ) -> RedisConnection:
        """Connect (with a timeout) and, if `name` is given, send CLIENT SETNAME (pipelined, not awaited)."""
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: cls(host, port, reply_timeout), host, port), connect_timeout
            )
        except TimeoutError:
            raise RedisConnectionError(
                f"{host}:{port} did not accept a connection within {connect_timeout:g} s"
            ) from None
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise RedisConnectionError(f"{host}:{port} refused the connection ({reason.lower()})") from None
        if name:
            fut = proto.send("CLIENT", "SETNAME", name)
            fut.add_done_callback(_ignore_result)
        return proto

    # asyncio.Protocol -------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self._watchdog = self._loop.call_later(0.25, self._check_overdue)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        pending = self._pending
        try:
            while pos < len(buf):
                reply, pos = _parse(buf, pos)
                if not pending:
                    raise RedisConnectionError("protocol error: a reply arrived with no command waiting for it")
                fut = pending.popleft()[0]
                if not fut.done():
                    if isinstance(reply, RedisReplyError):
                        fut.set_exception(reply)
                    else:
                        fut.set_result(reply)
        except _Incomplete:
            pass
        except (RedisConnectionError, ValueError) as exc:
            self._fail(f"{self.address}: {exc}")
            return
        if pos:
            del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"connection to {self.address} lost" + (f" ({exc})" if exc else "")
        self._fail(reason)

    # API ------------------------------------------------------------------------------------------------------

    def send(self, *args: bytes | str | int) -> asyncio.Future[Reply]:
        """Queue one command; the future resolves to its reply (or raises RedisReplyError / RedisConnectionError)."""
        fut: asyncio.Future[Reply] = self._loop.create_future()
        if self._closed:
            fut.set_exception(RedisConnectionError(self._error))
            return fut
        self._out.append(encode_command(args))
        self._pending.append((fut, time.monotonic()))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return fut

    def close(self, reason: str = "closed by the frontend") -> None:
        self.on_lost = None  # a deliberate close is not a failure
        self._fail(reason)

    # internals ------------------------------------------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_scheduled = False
        self.batch += 1
        if self._out and self._transport is not None and not self._closed:
            self._transport.write(b"".join(self._out))
        self._out.clear()

    def _check_overdue(self) -> None:
        if self._closed:
            return
        if self._pending and time.monotonic() - self._pending[0][1] > self.reply_timeout:
            self._fail(f"{self.address} did not answer within {self.reply_timeout:g} s")
            return
        self._watchdog = self._loop.call_later(0.25, self._check_overdue)

    def _fail(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._error = reason
        if self.on_lost is not None:
            self.on_lost(self, reason)
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._transport is not None:
            self._transport.abort()
        pending, self._pending = self._pending, deque()
        for fut, _ in pending:
            if not fut.done():
                fut.set_exception(RedisConnectionError(reason))
        self._out.clear()


def _ignore_result(fut: asyncio.Future[Reply]) -> None:
    if not fut.cancelled():
        fut.exception()  # mark retrieved; a failed SETNAME is not worth a log line
