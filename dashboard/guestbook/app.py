"""The guestbook frontend as an ASGI app: the upstream gb-frontend:v5 API (`/guestbook.php`), our page, `/healthz`.

Contract (compatible with the PHP image, minus its bugs):
  GET  /guestbook.php?cmd=set&value=V     SET guestbook V on redis-leader        -> {"message": "Updated"}
  GET  /guestbook.php?cmd=get (any cmd)    GET guestbook from redis-follower      -> {"data": raw, "entries": [...]}
  GET|POST /guestbook.php?cmd=append       append one entry atomically (Lua)      -> {"message": "Updated", "entries"}
           ...&quiet=1                     the same without the entries (a write load's answer stays small)
  GET  /healthz                            {"ok": true, "leader": bool, "follower": bool}
  GET  /  (+ /app.js, /style.css)          the page
POST bodies may be form-encoded or a JSON object; their fields override the query string's.
Every error is JSON `{"error": sentence, "hint": next step}`: 400 bad input, 404, 405, 413 body too large, 415,
501 chunked body, 502 Redis refused, 503 no reachable endpoint.
Entries: non-empty, at most `max_entry_length` characters, no control characters (C0, DEL, C1: newlines and
tabs included, since an entry is one line); everything else, any Unicode, is kept exactly.

HTTP itself (parsing, keep-alive, pipelining, HEAD, `Expect: 100-continue`, flow control) is uvicorn's; see
`server.py`. Concurrent `cmd=get`s share one Redis GET (`service.SingleFlight`), and the JSON answer is built once
per distinct stored value, so a read costs one dictionary lookup when nothing changed.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import redis.asyncio as aioredis
from redis.exceptions import ReadOnlyError, ResponseError

from dashboard.guestbook.endpoints import LogFn, ServiceUnavailable
from dashboard.guestbook.entries import KEY, encode_entry, split_entries
from dashboard.guestbook.service import RedisService, SingleFlight

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = tuple[tuple[bytes, bytes], ...]

MAX_VALUE_BYTES = 1024 * 1024  # the whole stored value (cmd=set, and the total an append may grow it to)
MAX_BODY = 4 * 1024 * 1024  # a request body (a 1 MiB value, form-encoded, fits)
PAGE_DIR = Path(__file__).resolve().parent / "page"
CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]")
SURROGATES = re.compile("[\ud800-\udfff]")  # a str holding one cannot be encoded: a lone surrogate
JSON_TYPE = b"application/json"

# ARGV: the encoded entry, the size limit, and "1" to return the new value ("0": its length only, for quiet=1)
APPEND_SCRIPT = """
local cur = redis.call('GET', KEYS[1])
local add = ARGV[1]
if cur and #cur > 0 then
  if #cur + 1 + #add > tonumber(ARGV[2]) then
    return redis.error_reply('GUESTBOOK_FULL the stored value would exceed ' .. ARGV[2] .. ' bytes')
  end
  local size = redis.call('APPEND', KEYS[1], ',' .. add)
  if ARGV[3] == '0' then return size end
  return cur .. ',' .. add
end
redis.call('SET', KEYS[1], add)
if ARGV[3] == '0' then return #add end
return add
"""

ALLOW_API: Headers = ((b"allow", b"GET, HEAD, POST"),)
ALLOW_READ: Headers = ((b"allow", b"GET, HEAD"),)
ALLOW_WRITE: Headers = ((b"allow", b"GET, POST"),)
CLOSE: Headers = ((b"connection", b"close"),)
NO_STORE = (b"cache-control", b"no-store")
PAGE_HEADERS: Headers = (
    NO_STORE,
    (b"x-content-type-options", b"nosniff"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        b"base-uri 'none'; form-action 'self'; object-src 'none'",
    ),
)
STATIC_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
}


class Response:
    """A complete response with its two ASGI messages built once (uvicorn does not modify them)."""

    __slots__ = ("body", "error", "start", "status")

    def __init__(
        self, status: int, body: bytes, content_type: bytes = JSON_TYPE, headers: Headers = (), error: str = ""
    ) -> None:
        self.status = status
        self.body = {"type": "http.response.body", "body": body}
        self.error = error  # the one-sentence error, for the log line
        self.start = {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *headers],
        }


def json_response(status: int, payload: dict[str, Any], headers: Headers = (), error: str = "") -> Response:
    """A JSON response (UTF-8, non-ASCII kept as is)."""
    return Response(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"), JSON_TYPE, headers, error)


def error_response(status: int, error: str, hint: str, headers: Headers = ()) -> Response:
    """The one error shape of the frontend: `{"error": one sentence, "hint": next step}`."""
    return json_response(status, {"error": error, "hint": hint}, headers, error)


def printable(data: bytes, limit: int = 200) -> str:
    """Request bytes for a message or a log line: ASCII as is, anything else (and backslash) as `\\xNN` escapes."""
    return data[:limit].decode("ascii", "backslashreplace").translate(_ESCAPE_CONTROLS)


_ESCAPE_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, ord("\\")]}


UPDATED = json_response(200, {"message": "Updated"}, (NO_STORE,))


class BadInput(Exception):
    """The client sent something we do not accept (400 unless `status` says otherwise)."""

    def __init__(self, message: str, hint: str, status: int = 400, headers: Headers = ()) -> None:
        super().__init__(message)
        self.hint = hint
        self.status = status
        self.headers = headers


def parse_form(data: bytes) -> dict[str, str]:
    """`a=1&b=2` with `+` as space and percent-escapes, decoded as strict UTF-8; the last duplicate wins (like PHP)."""
    out: dict[str, str] = {}
    for part in data.split(b"&"):
        if not part:
            continue
        name, _, value = part.partition(b"=")
        try:
            key = unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8")
            out[key] = unquote_to_bytes(value.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            raise BadInput(
                "The request is not valid UTF-8 after percent-decoding.",
                "Encode text as UTF-8 and percent-encode it (encodeURIComponent in JavaScript).",
            ) from None
    return out


class GuestbookApp:
    """The ASGI application of one frontend pod."""

    def __init__(
        self, leader: RedisService, follower: RedisService, max_entry_length: int, pod_name: str, log: LogFn
    ) -> None:
        self.leader = leader
        self.follower = follower
        self.max_entry_length = max_entry_length
        self.pod_name = pod_name
        self.log = log
        self._last_raw: bytes | None = None
        self._last_response = Response(200, b"")
        self._static: dict[str, Response] = {}
        self._reads = SingleFlight(self._read_follower)
        self._append: Any = None  # redis-py's Script for APPEND_SCRIPT (EVALSHA, EVAL when the server lacks it)
        self._load_page()

    # static page ----------------------------------------------------------------------------------------------

    def _load_page(self) -> None:
        for name in ("index.html", "app.js", "style.css"):
            data = (PAGE_DIR / name).read_bytes()
            if name == "index.html":
                data = data.replace(b"{{MAX_ENTRY_LENGTH}}", str(self.max_entry_length).encode())
                pod = self.pod_name.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
                data = data.replace(b"{{POD_NAME}}", pod.encode("utf-8"))
            ctype = STATIC_TYPES[Path(name).suffix]
            self._static["/" + name] = Response(200, data, ctype, PAGE_HEADERS)
        self._static["/"] = self._static["/index.html"]

    # ASGI -----------------------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no lifespan, no websockets
            return
        try:
            resp = await self._dispatch(scope, receive)
        except BadInput as exc:
            resp = error_response(exc.status, str(exc), exc.hint, exc.headers)
        except Exception as exc:  # our own bug: one log line and the JSON error shape, never uvicorn's text 500
            self.log(f"internal error: {exc!r}")
            resp = error_response(500, "The frontend failed internally.", "See the frontend's log.", CLOSE)
        if resp.status >= 400:
            target = scope.get("raw_path", b"") + (b"?" + scope["query_string"] if scope["query_string"] else b"")
            self.log(f"{resp.status} {printable(scope['method'].encode(), 10)} {printable(target, 120)}: {resp.error}")
        await send(resp.start)
        await send(resp.body)

    async def _dispatch(self, scope: Scope, receive: Receive) -> Response:
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/guestbook.php":
            if method not in ("GET", "HEAD", "POST"):
                return self._not_allowed(method, ALLOW_API)
            return await self._guestbook(scope, receive)
        static = self._static.get(path)
        if static is not None or path == "/healthz":
            if method not in ("GET", "HEAD"):
                return self._not_allowed(method, ALLOW_READ)
            return static if static is not None else await self._healthz()
        return error_response(
            404,
            f"There is no page at {printable(scope.get('raw_path') or path.encode())}.",
            "The API is /guestbook.php?cmd=get|set|append; the page is /.",
        )

    @staticmethod
    def _not_allowed(method: str, allow: Headers) -> Response:
        return error_response(
            405,
            f"The method {printable(method.encode(), 20)} is not allowed here.",
            f"Use {allow[0][1].decode()}.",
            allow,
        )

    async def _guestbook(self, scope: Scope, receive: Receive) -> Response:
        if scope["query_string"] == b"cmd=get" and scope["method"] != "POST":  # the page's poll: skip the parsing
            return await self._redis(self._reads.get())
        params = parse_form(scope["query_string"])
        if scope["method"] == "POST":
            params.update(await self._body_params(scope, receive))
        cmd = params.get("cmd")
        if cmd is None:
            return error_response(
                400,
                "The request has no cmd parameter.",
                "Use cmd=get to read, cmd=append&value=TEXT to add an entry, cmd=set&value=V to replace all.",
            )
        if cmd in ("set", "append") and scope["method"] == "HEAD":
            return self._not_allowed("HEAD", ALLOW_WRITE)
        if cmd == "set":
            return await self._redis(self._set(params.get("value")))
        if cmd == "append":
            entry = self._valid_entry(params.get("value"))
            return await self._redis(self._append_entry(entry, quiet=params.get("quiet") == "1"))
        return await self._redis(self._reads.get())

    async def _body_params(self, scope: Scope, receive: Receive) -> dict[str, str]:
        headers = dict(scope["headers"])
        if b"transfer-encoding" in headers:
            raise BadInput(
                "Chunked request bodies are not supported.", "Send the body with a Content-Length.", 501, CLOSE
            )
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or len(length) > 12:  # uvicorn's parser refuses these first; kept as a guard
            raise BadInput("The Content-Length header is not a number.", "Send the body size in bytes.", 400, CLOSE)
        if int(length) > MAX_BODY:
            raise BadInput(f"The request body is larger than {MAX_BODY} bytes.", "Send a smaller body.", 413, CLOSE)
        if int(length) == 0:
            return {}
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:  # cannot happen with a Content-Length (the parser stops there); kept as a bound
                raise BadInput(f"The request body is larger than {MAX_BODY} bytes.", "Send a smaller body.", 413, CLOSE)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        ctype = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if ctype == b"application/x-www-form-urlencoded":
            return parse_form(body)
        if ctype == b"application/json":
            try:
                data = json.loads(body)
            except (UnicodeDecodeError, ValueError):
                raise BadInput("The request body is not valid JSON in UTF-8.", 'Send {"value": "text"}.') from None
            if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
                raise BadInput("The JSON body must be an object whose values are strings.", 'Send {"value": "text"}.')
            if any(SURROGATES.search(value) for value in data.values()):
                raise BadInput("The value is not valid Unicode (it contains a lone surrogate).", "Send real text.")
            return data
        raise BadInput(
            f"The Content-Type {printable(ctype, 60) or '(none)'} is not supported.",
            "Send application/x-www-form-urlencoded or application/json.",
            415,
        )

    def _valid_entry(self, value: str | None) -> str:
        if value is None:
            raise BadInput("cmd=append needs a value parameter with the entry.", "Send value=TEXT.")
        if not value.strip():
            raise BadInput("The entry is empty.", "Type some text before adding it.")
        if len(value) > self.max_entry_length:
            raise BadInput(
                f"The entry is {len(value)} characters long; the limit is {self.max_entry_length}.",
                f"Shorten it to at most {self.max_entry_length} characters.",
            )
        if CONTROL_CHARS.search(value):
            raise BadInput(
                "The entry contains a control character (such as a newline or a tab).",
                "Write the entry on one line, without control characters.",
            )
        return value

    async def _redis(self, work: Awaitable[Response]) -> Response:
        """Await a Redis-backed handler and turn Redis trouble into the JSON error shape."""
        try:
            return await work
        except ServiceUnavailable as exc:
            return error_response(503, str(exc), exc.hint)
        except ReadOnlyError:
            return error_response(
                502,
                "The redis-leader endpoint is a read-only replica, so it refused the write.",
                "Point the redis-leader Service at the leader pod (check its selector labels).",
            )
        except ResponseError as exc:
            return error_response(502, f"Redis refused the command: {str(exc).rstrip('.')}.", "Check the Redis logs.")

    # commands ------------------------------------------------------------------------------------------------

    async def _read_follower(self) -> Response:
        async def get(client: aioredis.Redis) -> Any:
            return await self.follower.execute(client, "GET", KEY)

        return self._get_response(await self.follower.run(get, idempotent=True))

    def _get_response(self, raw: Any) -> Response:
        if not isinstance(raw, bytes):
            raw = b""
        if raw != self._last_raw:
            payload: dict[str, Any] = {
                "data": raw.decode("utf-8", "replace"),
                "entries": split_entries(raw),
                "pod": self.pod_name,
            }
            body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self._last_response = Response(200, body, JSON_TYPE, (NO_STORE,))
            self._last_raw = raw
        return self._last_response

    async def _set(self, value: str | None) -> Response:
        data = (value or "").encode("utf-8")  # upstream stores an empty string when value is missing
        if len(data) > MAX_VALUE_BYTES:
            raise BadInput(
                f"The value is {len(data)} bytes; the limit is {MAX_VALUE_BYTES} bytes (1 MiB).",
                "Store fewer or shorter entries.",
            )

        async def set_value(client: aioredis.Redis) -> Any:
            return await client.set(KEY, data)

        await self.leader.run(set_value, idempotent=True)
        return UPDATED

    async def _append_entry(self, entry: str, quiet: bool) -> Response:
        args = [encode_entry(entry).encode("utf-8"), MAX_VALUE_BYTES, "0" if quiet else "1"]

        async def append(client: aioredis.Redis) -> Any:
            if self._append is None:
                self._append = client.register_script(APPEND_SCRIPT)
            return await self._append(keys=[KEY], args=args, client=client)

        try:
            reply = await self.leader.run(append, idempotent=False)
        except ResponseError as exc:
            if str(exc).startswith("GUESTBOOK_FULL "):
                raise BadInput(
                    f"The guestbook is full: {str(exc).split(' ', 1)[1]}.",
                    "Clear it (cmd=set with an empty value) before adding more.",
                ) from None
            raise
        if quiet:
            return UPDATED
        entries = split_entries(reply if isinstance(reply, bytes) else b"")
        return json_response(200, {"message": "Updated", "entries": entries}, (NO_STORE,))

    async def _healthz(self) -> Response:
        leader, follower = await asyncio.gather(self.leader.ping(1.0), self.follower.ping(1.0))
        return json_response(
            200, {"ok": True, "leader": leader, "follower": follower, "pod": self.pod_name}, (NO_STORE,)
        )
