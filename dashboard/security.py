"""Who may talk to the dashboard: loopback by default, a token otherwise, and no state change from another site.

Rules, checked on every request before any route runs:
- Bound to loopback, the Host must be a loopback name: `localhost`, an IP literal in 127.0.0.0/8 or `[::1]`, with
  an optional port, or a name given with `--allowed-host`. Nothing else, not even `127.0.0.1.nip.io`: a page under
  a name that an attacker's DNS resolves to 127.0.0.1 (DNS rebinding) gets 403.
- With a token set (always when bound to a non-loopback address): `Authorization: Bearer <token>`, or the
  cookie set by opening the page once with `?token=<token>` (as Jupyter does).
- A state-changing request (POST, PUT, PATCH, DELETE) must come from this site: an `Origin`, when sent, must
  match the Host; `Sec-Fetch-Site: cross-site` is refused; and it must carry `HX-Request: true` (htmx sends it)
  or a valid bearer token — headers a cross-site form or a simple cross-site fetch cannot send. The one
  exception is the embedded guestbook posting through `/guestbook/`: it must send a matching Origin instead.
- Through the `/guestbook/` proxy, a command that changes the guestbook (`cmd=set`, `cmd=append`, by any method:
  upstream's API writes over GET) is refused when the browser says it comes from another site (`Sec-Fetch-Site`
  cross-site or same-site, a foreign `Origin` or `Referer`): an `<img>` elsewhere cannot wipe the guestbook.
  The frontend's own port keeps upstream's API unchanged.
- Tokens are compared as UTF-8 bytes in constant time: a non-ASCII token is simply wrong (401), never an error.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Collection, Iterable
from urllib.parse import unquote_plus, urlsplit

from dashboard.errors import DashboardError, Forbidden
from dashboard.settings import is_loopback_host

COOKIE = "guestbook_lab_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ALLOWED_HOST_SETTING = "--allowed-host (env GUESTBOOK_LAB_ALLOWED_HOST)"
# A Host header: a bracketed IPv6 literal or a name/IPv4 literal, then an optional decimal port.
HOST_HEADER = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\[\]:/@\s]+)(?::[0-9]{1,5})?")
WRITE_COMMANDS = frozenset({"set", "append"})


class Unauthorized(DashboardError):
    status = 401


def generate_token() -> str:
    return secrets.token_urlsafe(24)


def host_name(host_header: str) -> str:
    """'127.0.0.1:8000' -> '127.0.0.1', '[::1]:8000' -> '::1'."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def host_allowed(host_header: str, allowed_hosts: Iterable[str] = ()) -> bool:
    """Whether a Host header names this loopback dashboard: `localhost`, a loopback IP literal, or an allowed name."""
    match = HOST_HEADER.fullmatch(host_header)
    if match is None:
        return False
    name = match.group(1).lower()
    if name == "localhost" or name in {a.lower() for a in allowed_hosts}:
        return True
    # a loopback IP literal ([::1], 127.0.0.0/8), never a DNS name that merely starts with `127.`
    return (name.startswith("[") or name.replace(".", "").isdigit()) and is_loopback_host(name)


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, or None."""
    return authorization[7:].strip() if authorization.lower().startswith("bearer ") else None


def same_token(candidate: str, token: str) -> bool:
    """Constant-time comparison of two tokens as UTF-8 bytes (a non-ASCII candidate is just a wrong token)."""
    return hmac.compare_digest(candidate.encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass"))


def foreign(url: str | None, host: str) -> bool:
    """An `Origin`/`Referer` value that names another site than `host` (absent: not foreign; "null": foreign)."""
    if url is None:
        return False
    return url == "null" or urlsplit(url).netloc.lower() != host.lower()


def guestbook_commands(query_string: bytes) -> set[str]:
    """The `cmd` values of a raw query string (every duplicate: the frontend keeps the last, we check them all)."""
    commands = set()
    for pair in query_string.split(b"&"):
        name, _, value = pair.partition(b"=")
        if unquote_plus(name.decode("latin-1")) == "cmd":
            commands.add(unquote_plus(value.decode("latin-1"), encoding="latin-1").strip().lower())
    return commands


def check_guestbook_write(headers: dict[str, str], commands: Collection[str]) -> None:
    """Refuse a write to the guestbook through the dashboard's proxy that a browser says comes from another site.

    `commands`: the request's `cmd` values (query string and form). A read is never refused; a write from a script
    (no Sec-Fetch-Site, Origin or Referer) or from the dashboard's own page passes.
    """
    if not WRITE_COMMANDS & set(commands):
        return
    host = headers.get("host", "")
    site = headers.get("sec-fetch-site", "")
    if (
        site in ("cross-site", "same-site")
        or foreign(headers.get("origin"), host)
        or foreign(headers.get("referer"), host)
    ):
        raise Forbidden(
            "A page of another site may not change the guestbook through the dashboard.",
            "Write from the guestbook in the dashboard's page, or call the frontend's own URL from a script.",
        )


def check_request(
    *,
    method: str,
    headers: dict[str, str],
    query_token: str | None,
    cookie_token: str | None,
    token: str | None,
    loopback_only: bool,
    page_form: bool = False,
    allowed_hosts: Iterable[str] = (),
) -> None:
    """Raise Forbidden/Unauthorized when the request must be refused. `headers` has lower-case names.

    `page_form`: the request is the embedded guestbook page posting to its own API through the dashboard's
    `/guestbook/` proxy. It cannot add HX-Request, so it only has to be same-origin (Origin matching the Host).
    """
    host = headers.get("host", "")
    if loopback_only and not host_allowed(host, allowed_hosts):
        name = host_name(host)[:100] or "an empty Host"
        raise Forbidden(
            f"This dashboard only answers requests for localhost and loopback addresses, not for {name}: "
            f"to open it under that name, start it with {ALLOWED_HOST_SETTING}.",
            "Open it at http://127.0.0.1:<port>/, or add the name with --allowed-host NAME.",
        )
    bearer = bearer_token(headers.get("authorization", ""))
    has_token = token is not None and any(
        candidate is not None and same_token(candidate, token) for candidate in (bearer, cookie_token, query_token)
    )
    if token is not None and not has_token:
        raise Unauthorized(
            "This dashboard needs its access token.",
            "Open the URL with ?token=… that the dashboard printed at start, or send Authorization: Bearer <token>.",
        )
    if method.upper() in UNSAFE_METHODS:
        origin = headers.get("origin")
        if origin == "null":
            raise Forbidden("A request from an opaque origin may not change the lab.", "Use the dashboard's own page.")
        if foreign(origin, host):
            raise Forbidden(
                f"A request from another site ({origin}) may not change the lab.",
                "Use the dashboard's own page, or call the API from a script without an Origin header.",
            )
        if headers.get("sec-fetch-site") == "cross-site":
            raise Forbidden("A cross-site request may not change the lab.", "Use the dashboard's own page.")
        if page_form:
            if origin is None:
                raise Forbidden(
                    "A write to the embedded guestbook must come from the dashboard's own page.",
                    "Use the guestbook in the page, or call the frontend's own URL from a script.",
                )
            return
        hx = headers.get("hx-request", "").lower() == "true"
        bearer_ok = bearer is not None and (token is None or same_token(bearer, token))
        if not (hx or bearer_ok):
            raise Forbidden(
                "A request that changes the lab must carry HX-Request: true or Authorization: Bearer <token>.",
                "From a script, add the header HX-Request: true (or the token); the dashboard's page sends it for you.",
            )
