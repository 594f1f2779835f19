"""The guestbook frontend's routes: the upstream gb-frontend:v5 API (`/guestbook.php`), our page, `/healthz`.

Contract (compatible with the PHP image, minus its bugs):
  GET  /guestbook.php?cmd=set&value=V     SET guestbook V on redis-leader        -> {"message": "Updated"}
  GET  /guestbook.php?cmd=get (any cmd)    GET guestbook from redis-follower      -> {"data": raw, "entries": [...]}
  GET|POST /guestbook.php?cmd=append       append one entry atomically (Lua)      -> {"message": "Updated", "entries"}
  GET  /healthz                            {"ok": true, "leader": bool, "follower": bool}
  GET  /  (+ /app.js, /style.css)          the page
POST bodies may be form-encoded or a JSON object; their fields override the query string's.
Every error is JSON `{"error": sentence, "hint": next step}`: 400 bad input, 404, 405, 415, 502 Redis refused,
503 no reachable endpoint.
Entries: non-empty, at most `max_entry_length` characters, no control characters (C0, DEL, C1: newlines and
tabs included, since an entry is one line); everything else, any Unicode, is kept exactly.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any
from urllib.parse import unquote_to_bytes

from dashboard.guestbook.entries import KEY, encode_entry, split_entries
from dashboard.guestbook.httpserver import JSON_TYPE, Request, Response, error_response, json_response
from dashboard.guestbook.resp import RedisReplyError, Reply
from dashboard.guestbook.service import RedisService, ServiceUnavailable

LogFn = Callable[[str], None]

MAX_VALUE_BYTES = 1024 * 1024  # the whole stored value (cmd=set, and the total an append may grow it to)
PAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page")
CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]")

APPEND_SCRIPT = """
local cur = redis.call('GET', KEYS[1])
local add = ARGV[1]
if cur and #cur > 0 then
  if #cur + 1 + #add > tonumber(ARGV[2]) then
    return redis.error_reply('GUESTBOOK_FULL the stored value would exceed ' .. ARGV[2] .. ' bytes')
  end
  redis.call('APPEND', KEYS[1], ',' .. add)
  return cur .. ',' .. add
end
redis.call('SET', KEYS[1], add)
return add
"""
APPEND_SHA = hashlib.sha1(APPEND_SCRIPT.encode()).hexdigest()

ALLOW_API = ((b"Allow", b"GET, HEAD, POST"),)
ALLOW_READ = ((b"Allow", b"GET, HEAD"),)
NO_STORE = (b"Cache-Control", b"no-store")
PAGE_HEADERS = (
    NO_STORE,
    (b"X-Content-Type-Options", b"nosniff"),
    (
        b"Content-Security-Policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        b"base-uri 'none'; form-action 'self'; object-src 'none'",
    ),
)
STATIC_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
}


def _chain(out: asyncio.Future[Response], task: asyncio.Future[Response]) -> None:
    """Copy a finished task's outcome into `out`."""
    if out.done():
        return
    if task.cancelled():
        out.cancel()
    elif (exc := task.exception()) is not None:
        out.set_exception(exc)
    else:
        out.set_result(task.result())


class BadInput(Exception):
    """The client sent something we do not accept (400 unless `status` says otherwise)."""

    def __init__(self, message: str, hint: str, status: int = 400) -> None:
        super().__init__(message)
        self.hint = hint
        self.status = status


def parse_form(data: bytes) -> dict[str, str]:
    """`a=1&b=2` with `+` as space and percent-escapes, decoded as strict UTF-8; the last duplicate wins (like PHP)."""
    out: dict[str, str] = {}
    if not data:
        return out
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


def _check_unicode(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput("The value is not valid Unicode (it contains a lone surrogate).", "Send real text.") from None


class GuestbookApp:
    """The request handler; `__call__` answers synchronously when it can and returns a coroutine otherwise."""

    def __init__(
        self, leader: RedisService, follower: RedisService, max_entry_length: int, pod_name: str, log: LogFn
    ) -> None:
        self.leader = leader
        self.follower = follower
        self.max_entry_length = max_entry_length
        self.pod_name = pod_name
        self.log = log
        self._last_raw: bytes | None = None
        self._last_response = Response(200, b"", JSON_TYPE)
        self._static: dict[bytes, Response] = {}
        self._load_page()

    # static page ----------------------------------------------------------------------------------------------

    def _load_page(self) -> None:
        for name in ("index.html", "app.js", "style.css"):
            with open(os.path.join(PAGE_DIR, name), "rb") as fh:
                data = fh.read()
            if name == "index.html":
                data = data.replace(b"{{MAX_ENTRY_LENGTH}}", str(self.max_entry_length).encode())
                pod = self.pod_name.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
                data = data.replace(b"{{POD_NAME}}", pod.encode("utf-8"))
            ctype = STATIC_TYPES[os.path.splitext(name)[1]]
            self._static[b"/" + name.encode()] = Response(200, data, ctype, PAGE_HEADERS)
        self._static[b"/"] = self._static[b"/index.html"]

    # dispatch -------------------------------------------------------------------------------------------------

    def __call__(self, req: Request) -> Response | Awaitable[Response]:
        path = req.path
        method = req.method
        if path == b"/guestbook.php":
            if method not in (b"GET", b"HEAD", b"POST"):
                return self._not_allowed(method, ALLOW_API)
            return self._guestbook(req)
        static = self._static.get(path)
        if static is not None or path == b"/healthz":
            if method not in (b"GET", b"HEAD"):
                return self._not_allowed(method, ALLOW_READ)
            return static if static is not None else self._healthz()
        return error_response(
            404,
            f"There is no page at {path.decode('utf-8', 'replace')[:200]}.",
            "The API is /guestbook.php?cmd=get|set|append; the page is /.",
        )

    @staticmethod
    def _not_allowed(method: bytes, allow: tuple[tuple[bytes, bytes], ...]) -> Response:
        return error_response(
            405,
            f"The method {method.decode('latin-1')[:20]} is not allowed here.",
            f"Use {allow[0][1].decode()}.",
            allow,
        )

    def _guestbook(self, req: Request) -> Response | Awaitable[Response]:
        try:
            params = self._params(req)
        except BadInput as exc:
            return error_response(exc.status, str(exc), exc.hint)
        cmd = params.get("cmd")
        if cmd is None:
            return error_response(
                400,
                "The request has no cmd parameter.",
                "Use cmd=get to read, cmd=append&value=TEXT to add an entry, cmd=set&value=V to replace all.",
            )
        if cmd in ("set", "append") and req.method == b"HEAD":
            return self._not_allowed(req.method, ((b"Allow", b"GET, POST"),))
        if cmd == "set":
            return self._run(self._set(params.get("value")))
        if cmd == "append":
            try:
                entry = self._valid_entry(params.get("value"))
            except BadInput as exc:
                return error_response(exc.status, str(exc), exc.hint)
            return self._run(self._append(entry))
        return self._get_fast() or self._run(self._get())

    def _params(self, req: Request) -> dict[str, str]:
        params = parse_form(req.query)
        if req.method != b"POST" or not req.body:
            return params
        ctype = req.headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if ctype == b"application/x-www-form-urlencoded":
            params.update(parse_form(req.body))
        elif ctype == b"application/json":
            try:
                data = json.loads(req.body)
            except (UnicodeDecodeError, ValueError):
                raise BadInput("The request body is not valid JSON in UTF-8.", 'Send {"value": "text"}.') from None
            if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
                raise BadInput("The JSON body must be an object whose values are strings.", 'Send {"value": "text"}.')
            for value in data.values():
                _check_unicode(value)
            params.update(data)
        else:
            raise BadInput(
                f"The Content-Type {ctype.decode('latin-1')[:60] or '(none)'} is not supported.",
                "Send application/x-www-form-urlencoded or application/json.",
                415,
            )
        return params

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

    async def _run(self, work: Awaitable[Response]) -> Response:
        """Await a Redis-backed handler and turn Redis trouble into the JSON error shape."""
        try:
            return await work
        except BadInput as exc:
            return error_response(exc.status, str(exc), exc.hint)
        except ServiceUnavailable as exc:
            return error_response(503, str(exc), exc.hint)
        except RedisReplyError as exc:
            if exc.code == "READONLY":
                return error_response(
                    502,
                    "The redis-leader endpoint is a read-only replica, so it refused the write.",
                    "Point the redis-leader Service at the leader pod (check its selector labels).",
                )
            return error_response(502, f"Redis refused the command: {exc}.", "Check the Redis logs.")

    # commands ------------------------------------------------------------------------------------------------

    def _get_fast(self) -> asyncio.Future[Response] | None:
        """The hot path: with a live follower connection, answer from the GET's callback (no task per request)."""
        reply = self.follower.get_shared_nowait(KEY)
        if reply is None:
            return None
        out: asyncio.Future[Response] = reply.get_loop().create_future()
        reply.add_done_callback(partial(self._get_fast_done, out))
        return out

    def _get_fast_done(self, out: asyncio.Future[Response], reply: asyncio.Future[Reply]) -> None:
        exc = reply.exception()
        if exc is None:
            out.set_result(self._get_response(reply.result()))
            return
        # the connection broke (or Redis refused): take the slow path, which reconnects, retries and explains
        task = asyncio.ensure_future(self._run(self._get()))
        task.add_done_callback(partial(_chain, out))

    async def _get(self) -> Response:
        return self._get_response(await self.follower.get_shared(KEY))

    def _get_response(self, raw: Reply) -> Response:
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
        await self.leader.call("SET", KEY, data, idempotent=True)
        return json_response(200, {"message": "Updated"}, (NO_STORE,))

    async def _append(self, entry: str) -> Response:
        args = (KEY, encode_entry(entry).encode("utf-8"), MAX_VALUE_BYTES)
        try:
            try:
                reply = await self.leader.call("EVALSHA", APPEND_SHA, 1, *args, idempotent=False)
            except RedisReplyError as exc:
                if exc.code != "NOSCRIPT":
                    raise
                reply = await self.leader.call("EVAL", APPEND_SCRIPT, 1, *args, idempotent=False)
        except RedisReplyError as exc:
            if exc.code == "GUESTBOOK_FULL":
                raise BadInput(
                    f"The guestbook is full: {str(exc).split(' ', 1)[1]}.",
                    "Clear it (cmd=set with an empty value) before adding more.",
                ) from None
            raise
        entries = split_entries(reply if isinstance(reply, bytes) else b"")
        return json_response(200, {"message": "Updated", "entries": entries}, (NO_STORE,))

    async def _healthz(self) -> Response:
        leader, follower = await asyncio.gather(self.leader.ping(1.0), self.follower.ping(1.0))
        return json_response(
            200, {"ok": True, "leader": leader, "follower": follower, "pod": self.pod_name}, (NO_STORE,)
        )
