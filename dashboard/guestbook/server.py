"""Process wiring for one frontend: command line, logging, and uvicorn with the limits a network-facing server needs.

HTTP is uvicorn's httptools protocol (llhttp parses; keep-alive, pipelining in order, HEAD, `Expect: 100-continue`,
and flow control both ways: uvicorn stops reading a pipelining client while a request of it runs and stops
answering while its answers are not being read, so a client that never reads costs a bounded amount of memory).
The event loop is uvloop when installed, unless GUESTBOOK_LOOP=asyncio.

uvicorn's settings cover keep-alive idleness (`timeout_keep_alive`) and a concurrency number (`limit_concurrency`),
but not everything; `FrontendProtocol` adds, at the protocol layer where the bytes arrive:
- a deadline for the request head (`--header-timeout`, like Apache's RequestReadTimeout or nginx's
  client_header_timeout): uvicorn cancels its keep-alive timer at the first byte of a request and arms nothing
  until the response, so a slowloris client sending a byte every few seconds, or a connection that never sends
  anything, would be held forever. Past the deadline a partial head is answered 408, a silent connection closed.
- a bound on the head's size (431 past `MAX_HEAD`): httptools buffers a header value whole, without a limit.
- the connection cap (`--max-connections`, given to uvicorn as `limit_concurrency`) enforced when a connection is
  accepted: uvicorn checks it only when a request head is complete, so idle or slow connections were never
  refused. Refusals and parse errors answer in the frontend's JSON error shape instead of uvicorn's plain text.
- a client that half-closes (sends its requests, then EOF) still gets its answers before the connection closes.
Every log record is one line (see `Logger`); request data in it is escaped (`app.printable`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import sys
import time
import weakref
from collections.abc import Callable, Coroutine, Generator
from typing import Any, ClassVar, cast

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from dashboard.guestbook.app import GuestbookApp, printable
from dashboard.guestbook.endpoints import EndpointsFile, LogFn
from dashboard.guestbook.service import RedisService

MAX_HEAD = 4 * 1024 * 1024  # request line + headers; a 1 MiB value percent-encoded in a GET URL is at most 3 MiB
HEADER_TIMEOUT = 10.0
KEEP_ALIVE_TIMEOUT = 15
MAX_CONNECTIONS = 1000
SHUTDOWN_TIMEOUT = 5
SWEEP_SECONDS = 1.0
LINE_BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dashboard.guestbook", description="One guestbook frontend pod.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="port to listen on (0 picks a free one)")
    parser.add_argument("--endpoints", required=True, help="JSON file with the redis-leader/redis-follower endpoints")
    parser.add_argument("--max-entry-length", type=int, default=500, help="longest entry in characters (500)")
    parser.add_argument("--name", default="frontend", help="pod name, shown on the page and in Redis CLIENT LIST")
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=HEADER_TIMEOUT,
        help=f"seconds to send a request head ({HEADER_TIMEOUT:g})",
    )
    parser.add_argument(
        "--keep-alive-timeout", type=int, default=KEEP_ALIVE_TIMEOUT, help=f"idle seconds ({KEEP_ALIVE_TIMEOUT})"
    )
    parser.add_argument(
        "--max-connections", type=int, default=MAX_CONNECTIONS, help=f"open connections at most ({MAX_CONNECTIONS})"
    )
    args = parser.parse_args(argv)
    if args.max_entry_length < 1:
        parser.error("--max-entry-length must be at least 1")
    if not 0 < args.header_timeout <= 3600:
        parser.error("--header-timeout must be between 0 and 3600 seconds")
    if args.keep_alive_timeout < 1:
        parser.error("--keep-alive-timeout must be at least 1 second")
    if args.max_connections < 1:
        parser.error("--max-connections must be at least 1")
    return args


def one_line(text: str) -> str:
    """`text` with every control character and line separator written as an escape: a record is always one line."""
    return LINE_BREAKS.sub(lambda m: json.dumps(m.group())[1:-1], text)


class Logger:
    """One line per record on stdout, flushed at once (the platform reads it as the pod's log)."""

    def __init__(self, name: str) -> None:
        self.name = one_line(name)

    def __call__(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        sys.stdout.write(f"{stamp} {self.name}: {one_line(line)}\n")
        sys.stdout.flush()


class _ToLogger(logging.Handler):
    """uvicorn's own warnings and errors, as one-line records of the frontend's log (no tracebacks)."""

    def __init__(self, log: LogFn) -> None:
        super().__init__(logging.WARNING)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f": {record.exc_info[1]!r}"
        self._log(f"server: {text}")


class FrontendProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the head deadline, head size bound and connection cap (module docstring)."""

    head_timeout = HEADER_TIMEOUT
    log: LogFn = staticmethod(print)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = self.limit_concurrency
        self.limit_concurrency = None  # enforced in connection_made, with a JSON answer
        self._head_since: float | None = None  # loop time the current head began (None: not reading one)
        self._head_bytes = 0
        self._reading_head = True
        self._eof = False

    # connection -----------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CorkedTransport(transport))  # type: ignore[arg-type]
        if self.max_connections is not None and len(self.connections) > self.max_connections:
            self._reject(
                503,
                f"The frontend has {self.max_connections} open connections, its limit.",
                "Close idle connections or retry in a moment.",
            )
            return
        self._head_since = self.loop.time()
        _HeadSweeper.watch(self)

    def eof_received(self) -> bool | None:  # type: ignore[override]
        if (self.cycle is not None and not self.cycle.response_complete) or self.pipeline:
            self._eof = True
            return True  # stay half-open: answer what was asked, then close (on_response_complete)
        return None

    def on_response_complete(self) -> None:
        cast(CorkedTransport, self.transport).flush()  # the whole answer, head and body, in one write
        super().on_response_complete()
        if self._eof and not self.pipeline and self.cycle.response_complete and not self.transport.is_closing():
            self.transport.close()

    # request head ---------------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                self._reject(431, "The request line and headers are too large.", f"Keep them under {MAX_HEAD} bytes.")
                return
            if self._head_since is None:
                self._head_since = self.loop.time()
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no upgrades here: the request was handed to the app as a plain one
        except httptools.HttpParserError as exc:
            reason = str(exc).rstrip(".") or "unparsable"
            self._reject(
                400,
                f"The request is not valid HTTP/1.1 ({reason}).",
                "Send: METHOD /path HTTP/1.1, header lines 'Name: value', each ending in CRLF.",
            )

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        self._head_since = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True

    def head_overdue(self, now: float) -> None:
        """Called about once a second: enforce the head deadline (see the module docstring)."""
        since = self._head_since
        if since is None or now - since < self.head_timeout or self.transport.is_closing() or not self._reading_head:
            return
        self._head_since = None
        if self.cycle is not None and not self.cycle.response_complete:
            self._head_since = now  # an answer is still on its way; the next head waits behind it
        elif self._head_bytes == 0:
            self.transport.close()  # connected, never sent anything
        else:
            self._reject(
                408,
                f"The request head did not arrive within {self.head_timeout:g} seconds.",
                "Send the whole request line and headers at once.",
            )

    def _reject(self, status: int, error: str, hint: str) -> None:
        """Answer in the JSON error shape and close (the stream cannot be framed, or the client is unwelcome)."""
        self._head_since = None
        self.log(
            f"{status} (connection from {printable(str(self.client[0] if self.client else '?').encode())}): {error}"
        )
        if self.transport.is_closing():
            return
        body = json.dumps({"error": error, "hint": hint}).encode()
        reason = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
        head = [b"HTTP/1.1 %d %s\r\n" % (status, reason.get(status, b"Service Unavailable"))]
        head += [b"%s: %s\r\n" % (name, value) for name, value in self.server_state.default_headers]
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()


class _HeadSweeper:
    """One timer per process, not one per request: every second, each open connection checks its head deadline."""

    connections: ClassVar[weakref.WeakSet[FrontendProtocol]] = weakref.WeakSet()
    handle: ClassVar[asyncio.TimerHandle | None] = None

    @classmethod
    def watch(cls, protocol: FrontendProtocol) -> None:
        cls.connections.add(protocol)
        if cls.handle is None:
            cls.handle = protocol.loop.call_later(SWEEP_SECONDS, cls.sweep, protocol.loop)

    @classmethod
    def sweep(cls, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for protocol in list(cls.connections):
            protocol.head_overdue(now)
        cls.handle = loop.call_later(SWEEP_SECONDS, cls.sweep, loop) if cls.connections else None


class CorkedTransport:
    """The connection's transport, with each answer's writes sent as one.

    uvicorn writes a response's head and its body separately; sent as they come that is two system calls and two
    TCP segments per answer. Writes are kept until the answer is complete (`FrontendProtocol.on_response_complete`
    calls `flush`), the connection closes, or the write is an interim `100 Continue` (the client waits for it).
    Everything else is the real transport's (reading, pausing, closing, flow control).
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def write(self, data: bytes) -> None:
        self._pending.append(data)
        if data.startswith(b"HTTP/1.1 100 "):
            self.flush()

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()


def protocol_class(head_timeout: float, log: LogFn) -> type[FrontendProtocol]:
    """The protocol class for uvicorn's `http=` setting, with this process's head deadline and logger."""
    return type("GuestbookHttpProtocol", (FrontendProtocol,), {"head_timeout": head_timeout, "log": staticmethod(log)})


class FrontendServer(uvicorn.Server):
    """uvicorn's server: prints the listening line once it accepts, and exits 0 on SIGTERM/SIGINT.

    (uvicorn's own signal capture re-raises the signal after a graceful shutdown, so the process would end by
    the signal instead of exit 0, which the platform reads as a crash.)
    """

    def __init__(self, config: uvicorn.Config, ready_line: str, log: LogFn) -> None:
        super().__init__(config)
        self._ready_line = ready_line
        self._log = log

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop)
        try:
            yield
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def _stop(self) -> None:
        if not self.should_exit:
            self._log("stopping")
        self.force_exit = self.should_exit  # a second signal: do not wait for open connections
        self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            sys.stdout.write(self._ready_line + "\n")
            sys.stdout.flush()


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (bound here, so a busy port is one clear line instead of uvicorn's log)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


async def serve(args: argparse.Namespace, sock: socket.socket) -> None:
    log = Logger(args.name)
    uvicorn_logger = logging.getLogger("uvicorn")
    uvicorn_logger.handlers = [_ToLogger(log)]
    uvicorn_logger.setLevel(logging.WARNING)
    uvicorn_logger.propagate = False
    endpoints = EndpointsFile(args.endpoints, log)
    client_name = "gb-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in args.name)
    leader = RedisService("redis-leader", endpoints, client_name, log, pooled=True)
    follower = RedisService("redis-follower", endpoints, client_name, log, pooled=False)
    app = GuestbookApp(leader, follower, args.max_entry_length, args.name, log)
    config = uvicorn.Config(
        app,
        http=protocol_class(args.header_timeout, log),
        ws="none",
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
        server_header=False,
        date_header=False,
        proxy_headers=False,  # no proxy in front that we trust; and its middleware costs on every request
        headers=[("server", "guestbook-frontend")],
        timeout_keep_alive=args.keep_alive_timeout,
        limit_concurrency=args.max_connections,
        timeout_graceful_shutdown=SHUTDOWN_TIMEOUT,
        backlog=1024,
    )
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    server = FrontendServer(config, f"listening on http://{host}:{port}", log)
    try:
        await server.serve(sockets=[sock])
    finally:
        await leader.close()
        await follower.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        sys.stdout.write(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}\n")
        sys.stdout.flush()
        return 1
    runner: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    if os.environ.get("GUESTBOOK_LOOP", "auto") != "asyncio":  # GUESTBOOK_LOOP=asyncio forces the stdlib loop
        with contextlib.suppress(ImportError):
            import uvloop  # optional: a faster event loop when installed

            runner = uvloop.run
    runner(serve(args, sock))
    return 0
