"""A small, fast HTTP/1.1 server on asyncio.Protocol: just enough HTTP for the guestbook frontend.

Keep-alive (HTTP/1.1 by default, HTTP/1.0 on request), pipelining-safe (one request at a time per connection,
in order; further bytes stay buffered), Content-Length request bodies only (chunked is refused with 501),
`Expect: 100-continue`, HEAD, limits on the request head (431) and body (413), flow control both ways, and
idle connections closed after a while. The application is one callable that gets a `Request` and returns a
`Response`, or an awaitable of one; everything about routing and content lives in `app.py`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, cast

MAX_HEAD = 4 * 1024 * 1024  # request line + headers; a 1 MiB value percent-encoded in a GET URL is at most 3 MiB
MAX_HEADER_LINES = 100
MAX_BODY = 4 * 1024 * 1024
IDLE_TIMEOUT = 75.0
PAUSE_BUFFER = 1024 * 1024  # stop reading a pipelining client while this much is buffered and a request is running

REASONS = {
    100: "Continue",
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

JSON_TYPE = b"application/json"


class Request:
    """One parsed request. Header names are lower-case bytes; `target` is the raw request target."""

    __slots__ = ("body", "headers", "method", "path", "query", "target", "version")

    def __init__(self, method: bytes, target: bytes, headers: dict[bytes, bytes], body: bytes, version: bytes) -> None:
        self.method = method
        self.target = target
        path, _, self.query = target.partition(b"?")
        if path.startswith((b"http://", b"https://")):  # absolute-form: keep only the path
            rest = path.split(b"//", 1)[1]
            slash = rest.find(b"/")
            path = rest[slash:] if slash >= 0 else b"/"
        self.path = path
        self.headers = headers
        self.body = body
        self.version = version


class Response:
    """A complete response; `headers` are extra header lines (name, value) besides Content-Type/Length."""

    __slots__ = ("body", "content_type", "error", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: bytes = JSON_TYPE,
        headers: tuple[tuple[bytes, bytes], ...] = (),
        error: str = "",
    ) -> None:
        self.error = error  # the one-sentence error, for the log line
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers


def json_response(status: int, payload: dict[str, Any], headers: tuple[tuple[bytes, bytes], ...] = ()) -> Response:
    """A JSON response (UTF-8, non-ASCII kept as is)."""
    return Response(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"), JSON_TYPE, headers)


def error_response(status: int, error: str, hint: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> Response:
    """The one error shape of the frontend: `{"error": one sentence, "hint": next step}`."""
    resp = json_response(status, {"error": error, "hint": hint}, headers)
    resp.error = error
    return resp


Handler = Callable[[Request], "Response | Awaitable[Response]"]


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    __slots__ = (
        "_buf",
        "_busy",
        "_closing",
        "_continued",
        "_eof",
        "_paused_reading",
        "_paused_writing",
        "_scan",
        "_server",
        "_transport",
        "last_active",
    )

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._scan = 0
        self._busy = False
        self._closing = False
        self._paused_reading = False
        self._paused_writing = False
        self._continued = False
        self._eof = False
        self.last_active = time.monotonic()

    # asyncio.Protocol -------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        self._buf += data
        if not self._busy:
            self._process()
        elif len(self._buf) > PAUSE_BUFFER:
            self._pause()

    def pause_writing(self) -> None:
        self._paused_writing = True
        self._pause()

    def resume_writing(self) -> None:
        self._paused_writing = False
        self._resume()

    def eof_received(self) -> bool | None:
        self._eof = True
        if self._busy:
            return True  # keep the socket half-open until the running request is answered, then close
        return None

    # request loop ---------------------------------------------------------------------------------------------

    def _pause(self) -> None:
        if not self._paused_reading and self._transport is not None:
            self._paused_reading = True
            self._transport.pause_reading()

    def _resume(self) -> None:
        if self._paused_reading and not self._paused_writing and self._transport is not None:
            self._paused_reading = False
            self._transport.resume_reading()

    def _process(self) -> None:
        while not self._busy and not self._closing:
            req = self._parse_one()
            if req is None:
                break
            try:
                result = self._server.handler(req)
            except Exception as exc:  # the app's own bug: answer 500 and keep serving
                self._server.log(f"internal error on {req.target[:200]!r}: {exc!r}")
                result = error_response(500, "The frontend failed internally.", "See the frontend's log.")
            if isinstance(result, Response):
                self._write(req, result)
                continue
            self._busy = True
            task = asyncio.ensure_future(result)
            task.add_done_callback(partial(self._finished, req))
            break
        if not self._busy:
            if self._eof and self._transport is not None:
                self._transport.close()  # the client finished sending and everything it asked is answered
                return
            self._resume()

    def _finished(self, req: Request, task: asyncio.Future[Response]) -> None:
        self._busy = False
        if task.cancelled():
            resp = error_response(503, "The request was cancelled because the frontend is stopping.", "Retry.")
        elif (exc := task.exception()) is not None:
            self._server.log(f"internal error on {req.target[:200]!r}: {exc!r}")
            resp = error_response(500, "The frontend failed internally.", "See the frontend's log.")
        else:
            resp = task.result()
        if self._closing:
            return
        self._write(req, resp)
        if self._transport is not None and self._transport.is_closing():
            return
        self._process()

    def _parse_one(self) -> Request | None:
        buf = self._buf
        while buf[:2] == b"\r\n":  # tolerate stray CRLFs between requests (RFC 9112 2.2)
            del buf[:2]
        if not buf:
            return None
        end = buf.find(b"\r\n\r\n", self._scan)
        if end < 0:
            if len(buf) > MAX_HEAD:
                self._reject(431, "The request line and headers are too large.", f"Keep them under {MAX_HEAD} bytes.")
            else:
                self._scan = max(0, len(buf) - 3)
            return None
        if end > MAX_HEAD:
            self._reject(431, "The request line and headers are too large.", f"Keep them under {MAX_HEAD} bytes.")
            return None
        lines = bytes(buf[:end]).split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self._reject(400, "The request line is not valid HTTP/1.1.", "Send: METHOD /path HTTP/1.1.")
            return None
        if len(lines) > MAX_HEADER_LINES:
            self._reject(431, "The request has too many header lines.", f"Send at most {MAX_HEADER_LINES}.")
            return None
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                self._reject(400, "A request header line is malformed.", "Send headers as 'Name: value'.")
                return None
            key = name.lower()
            value = value.strip()
            if key in headers:
                if key == b"content-length" and headers[key] != value:
                    self._reject(400, "The request has conflicting Content-Length headers.", "Send one.")
                    return None
                headers[key] = headers[key] + b", " + value
            else:
                headers[key] = value
        if b"transfer-encoding" in headers:
            self._reject(501, "Chunked request bodies are not supported.", "Send the body with a Content-Length.")
            return None
        length = 0
        cl = headers.get(b"content-length")
        if cl is not None:
            if not cl.isdigit() or len(cl) > 12:
                self._reject(400, "The Content-Length header is not a number.", "Send the body size in bytes.")
                return None
            length = int(cl)
            if length > MAX_BODY:
                self._reject(413, f"The request body is larger than {MAX_BODY} bytes.", "Send a smaller body.")
                return None
        start = end + 4
        if len(buf) < start + length:
            if not self._continued and headers.get(b"expect", b"").lower() == b"100-continue":
                self._continued = True
                assert self._transport is not None
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._scan = end  # the head is complete; wait for the body
            return None
        body = bytes(buf[start : start + length])
        del buf[: start + length]
        self._scan = 0
        self._continued = False
        return Request(parts[0], parts[1], headers, body, parts[2])

    def _reject(self, status: int, error: str, hint: str) -> None:
        """Answer a request that cannot be parsed, then close (the stream can no longer be framed)."""
        self._closing = True
        self._buf.clear()
        self._send(error_response(status, error, hint), keep_alive=False, head=False, what="(unparsable request)")

    def _write(self, req: Request, resp: Response) -> None:
        conn = req.headers.get(b"connection", b"").lower()
        keep_alive = b"close" not in conn if req.version == b"HTTP/1.1" else b"keep-alive" in conn
        if resp.status >= 400:
            what = f"{req.method.decode('latin-1')[:10]} {req.target.decode('utf-8', 'replace')[:120]}"
        else:
            what = ""
        self._send(resp, keep_alive, req.method == b"HEAD", what)

    def _send(self, resp: Response, keep_alive: bool, head: bool, what: str = "") -> None:
        if resp.status >= 400:
            self._server.log(f"{resp.status} {what}: {resp.error or REASONS.get(resp.status, '')}")
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        body = resp.body
        out = [
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
            % (resp.status, REASONS.get(resp.status, "Unknown").encode(), resp.content_type, len(body)),
            self._server.common_headers,
        ]
        for name, value in resp.headers:
            out.append(b"%s: %s\r\n" % (name, value))
        out.append(b"\r\n" if keep_alive else b"Connection: close\r\n\r\n")
        if not head:
            out.append(body)
        transport.write(b"".join(out))
        if not keep_alive:
            self._closing = True
            transport.close()


class HttpServer:
    """Owns the listening socket and the open connections."""

    def __init__(self, handler: Handler, log: Callable[[str], None], server_name: str = "guestbook-frontend") -> None:
        self.handler = handler
        self.log = log
        self.common_headers = b"Server: %s\r\n" % server_name.encode("ascii", "replace")
        self.connections: set[HttpProtocol] = set()
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen; return the bound port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpProtocol(self), host, port, reuse_address=True, backlog=1024
        )
        self._sweeper = loop.call_later(IDLE_TIMEOUT / 3, self._sweep)
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

    def _sweep(self) -> None:
        cutoff = time.monotonic() - IDLE_TIMEOUT
        for conn in list(self.connections):
            if conn.last_active < cutoff and not conn._busy and conn._transport is not None:
                conn._transport.close()
        self._sweeper = asyncio.get_running_loop().call_later(IDLE_TIMEOUT / 3, self._sweep)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if conn._transport is not None:
                conn._transport.close()
        if self._server is not None:
            await self._server.wait_closed()
