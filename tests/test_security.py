"""Web safety rules as a pure function: Host, token, Origin, HX-Request."""

from __future__ import annotations

import pytest

from dashboard.errors import Forbidden
from dashboard.security import Unauthorized, check_request, host_name


def check(method: str = "POST", token: str | None = None, loopback: bool = True, **headers: str) -> None:
    hdrs = {"host": "127.0.0.1:8000"}
    hdrs.update({k.replace("_", "-"): v for k, v in headers.items()})
    check_request(method=method, headers=hdrs, query_token=None, cookie_token=None, token=token, loopback_only=loopback)


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
