"""Web safety rules as a pure function: Host, token, Origin, HX-Request."""

from __future__ import annotations

import pytest

from dashboard.errors import Forbidden
from dashboard.security import (
    Unauthorized,
    check_guestbook_write,
    check_request,
    guestbook_commands,
    host_allowed,
    host_name,
    same_token,
)


def check(
    method: str = "POST",
    token: str | None = None,
    loopback: bool = True,
    allowed_hosts: tuple[str, ...] = (),
    **headers: str,
) -> None:
    hdrs = {"host": "127.0.0.1:8000"}
    hdrs.update({k.replace("_", "-"): v for k, v in headers.items()})
    check_request(
        method=method,
        headers=hdrs,
        query_token=None,
        cookie_token=None,
        token=token,
        loopback_only=loopback,
        allowed_hosts=allowed_hosts,
    )


def test_htmx_post_from_the_page_passes() -> None:
    check(hx_request="true", origin="http://127.0.0.1:8000")


def test_script_post_with_hx_header_and_no_origin_passes() -> None:
    check(hx_request="true")


def test_cross_site_post_is_refused_even_with_hx_header() -> None:
    with pytest.raises(Forbidden, match="another site"):
        check(hx_request="true", origin="http://evil.example")


def test_post_without_hx_or_bearer_is_refused() -> None:
    with pytest.raises(Forbidden, match="HX-Request"):
        check()


def test_sec_fetch_site_cross_site_is_refused() -> None:
    with pytest.raises(Forbidden):
        check(hx_request="true", sec_fetch_site="cross-site")


def test_dns_rebinding_host_is_refused_on_loopback() -> None:
    with pytest.raises(Forbidden, match="localhost"):
        check_request(
            method="GET",
            headers={"host": "attacker.example:8000"},
            query_token=None,
            cookie_token=None,
            token=None,
            loopback_only=True,
        )


def test_token_required_when_set() -> None:
    with pytest.raises(Unauthorized):
        check(method="GET", token="s3cret", loopback=False)
    check(method="GET", token="s3cret", loopback=False, authorization="Bearer s3cret")
    with pytest.raises(Unauthorized):
        check(method="GET", token="s3cret", loopback=False, authorization="Bearer wrong")


def test_bearer_token_allows_a_script_post() -> None:
    check(token="s3cret", loopback=False, authorization="Bearer s3cret")


@pytest.mark.parametrize(
    ("header", "name"), [("127.0.0.1:8000", "127.0.0.1"), ("[::1]:8000", "::1"), ("localhost", "localhost")]
)
def test_host_name(header: str, name: str) -> None:
    assert host_name(header) == name


# -- DNS rebinding: only real loopback names and literals, plus --allowed-host (issue 9, item 1) ---------------------


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:8000",
        "LOCALHOST:1",
        "127.0.0.1",
        "127.0.0.1:8000",
        "127.9.8.7:80",
        "[::1]",
        "[::1]:8000",
    ],
)
def test_loopback_names_and_literals_are_accepted(host: str) -> None:
    assert host_allowed(host)
    check(method="GET", host=host)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1.nip.io:8000",
        "127.evil.example",
        "127.0.0.1.",
        "localhost.evil.example",
        "evil.test:8000",
        "0x7f.0.0.1",
        "127.1",
        "[::2]:8000",
        "::1",
        "127.0.0.1:8000:9",
        "127.0.0.1:port",
        "user@127.0.0.1",
        "",
    ],
)
def test_names_that_merely_look_local_are_refused_naming_the_setting(host: str) -> None:
    assert not host_allowed(host)
    with pytest.raises(Forbidden, match="--allowed-host") as exc:
        check(method="GET", host=host)
    assert str(exc.value).count(". ") == 0  # one sentence


def test_allowed_host_adds_exactly_that_name() -> None:
    check(method="GET", host="lab.test:8000", allowed_hosts=("lab.test",))
    check(method="GET", host="LAB.test", allowed_hosts=("lab.test",))
    with pytest.raises(Forbidden):
        check(method="GET", host="evil.lab.test", allowed_hosts=("lab.test",))


# -- tokens: compared as bytes, a non-ASCII token is a wrong token (item 5) ------------------------------------------


@pytest.mark.parametrize("where", ["bearer", "cookie", "query"])
@pytest.mark.parametrize("candidate", ["s3crét", "\u00ff" * 8, "\udcff", "日本語"])
def test_non_ascii_token_is_401_not_a_type_error(where: str, candidate: str) -> None:
    headers = {"host": "127.0.0.1:8000"}
    if where == "bearer":
        headers["authorization"] = f"Bearer {candidate}"
    with pytest.raises(Unauthorized):
        check_request(
            method="GET",
            headers=headers,
            query_token=candidate if where == "query" else None,
            cookie_token=candidate if where == "cookie" else None,
            token="s3cret",
            loopback_only=False,
        )


def test_a_non_ascii_token_of_the_dashboard_itself_works() -> None:
    assert same_token("clé", "clé") and not same_token("cle", "clé")


# -- cross-site writes through the /guestbook/ proxy (item 2) --------------------------------------------------------


def test_guestbook_commands_reads_every_cmd_of_a_raw_query() -> None:
    assert guestbook_commands(b"cmd=get") == {"get"}
    assert guestbook_commands(b"cmd=get&value=x&cmd=set") == {"get", "set"}
    assert guestbook_commands(b"c%6Dd=%41PPEND&value=%FF") == {"append"}
    assert guestbook_commands(b"value=a&cmdx=set") == set()


@pytest.mark.parametrize(
    "headers",
    [
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},  # another port of this host: same site, another origin
        {"origin": "http://evil.example"},
        {"origin": "null"},
        {"referer": "http://evil.example/page.html"},
        {"referer": "http://127.0.0.1:8080/"},  # the frontend's own page is another origin too
    ],
)
def test_a_write_a_browser_marks_as_foreign_is_refused(headers: dict[str, str]) -> None:
    for cmd in ("set", "append"):
        with pytest.raises(Forbidden, match="another site"):
            check_guestbook_write({"host": "127.0.0.1:8000", **headers}, {cmd})
    check_guestbook_write({"host": "127.0.0.1:8000", **headers}, {"get"})  # reads are never refused


@pytest.mark.parametrize(
    "headers",
    [
        {},  # a script
        {"sec-fetch-site": "same-origin", "referer": "http://127.0.0.1:8000/guestbook/"},  # the embedded page
        {"sec-fetch-site": "none"},  # typed in the address bar
        {"origin": "http://127.0.0.1:8000"},
    ],
)
def test_a_write_from_this_site_or_a_script_passes(headers: dict[str, str]) -> None:
    check_guestbook_write({"host": "127.0.0.1:8000", **headers}, {"set", "append"})
