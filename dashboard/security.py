"""Who may talk to the dashboard: loopback by default, a token otherwise, and no state change from another site.

Rules, checked on every request before any route runs:
- Host must be the address the dashboard serves (stops DNS rebinding when bound to loopback).
- With a token set (always when bound to a non-loopback address): `Authorization: Bearer <token>`, or the
  cookie set by opening the page once with `?token=<token>` (as Jupyter does).
- A state-changing request (POST, PUT, PATCH, DELETE) must come from this site: an `Origin`, when sent, must
  match the Host; `Sec-Fetch-Site: cross-site` is refused; and it must carry `HX-Request: true` (htmx sends it)
  or a valid bearer token — headers a cross-site form or a simple cross-site fetch cannot send. The one
  exception is the embedded guestbook posting through `/guestbook/`: it must send a matching Origin instead.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from dashboard.errors import DashboardError, Forbidden

COOKIE = "guestbook_lab_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]", "ip6-localhost"})


class Unauthorized(DashboardError):
    status = 401


def generate_token() -> str:
    return secrets.token_urlsafe(24)


def host_name(host_header: str) -> str:
    """'127.0.0.1:8000' -> '127.0.0.1', '[::1]:8000' -> '::1'."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def check_request(
    *,
    method: str,
    headers: dict[str, str],
    query_token: str | None,
    cookie_token: str | None,
    token: str | None,
    loopback_only: bool,
    page_form: bool = False,
) -> None:
    """Raise Forbidden/Unauthorized when the request must be refused. `headers` has lower-case names.

    `page_form`: the request is the embedded guestbook page posting to its own API through the dashboard's
    `/guestbook/` proxy. It cannot add HX-Request, so it only has to be same-origin (Origin matching the Host).
    """
    host = headers.get("host", "")
    if loopback_only:
        name = host_name(host)
        if name not in LOOPBACK_NAMES and not name.startswith("127."):
            raise Forbidden(
                f"This dashboard only answers requests for localhost, not for {name or 'an empty Host'}.",
                "Open it at http://127.0.0.1:<port>/, or start it with --host and a token to serve other machines.",
            )
    bearer = headers.get("authorization", "")
    bearer_token = bearer[7:].strip() if bearer.lower().startswith("bearer ") else None
    has_token = token is not None and any(
        candidate is not None and hmac.compare_digest(candidate, token)
        for candidate in (bearer_token, cookie_token, query_token)
    )
    if token is not None and not has_token:
        raise Unauthorized(
            "This dashboard needs its access token.",
            "Open the URL with ?token=… that the dashboard printed at start, or send Authorization: Bearer <token>.",
        )
    if method.upper() in UNSAFE_METHODS:
        origin = headers.get("origin")
        if origin is not None and origin != "null":
            if urlsplit(origin).netloc.lower() != host.lower():
                raise Forbidden(
                    f"A request from another site ({origin}) may not change the lab.",
                    "Use the dashboard's own page, or call the API from a script without an Origin header.",
                )
        elif origin == "null":
            raise Forbidden("A request from an opaque origin may not change the lab.", "Use the dashboard's own page.")
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
        bearer_ok = bearer_token is not None and (token is None or hmac.compare_digest(bearer_token, token))
        if not (hx or bearer_ok):
            raise Forbidden(
                "A request that changes the lab must carry HX-Request: true or Authorization: Bearer <token>.",
                "From a script, add the header HX-Request: true (or the token); the dashboard's page sends it for you.",
            )
