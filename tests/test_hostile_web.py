"""Hostile input to the web layer, in process over a fake platform (issue 9): every bad request is one sentence.

DNS-rebinding Hosts (403 naming --allowed-host), framing headers on every answer, bad numbers for the write load,
non-ASCII tokens, control characters in paths and bodies over the 1 MiB cap: 400/401/403/413 with one sentence,
never a 500 and never a traceback in the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from dashboard.settings import Settings
from dashboard.web import create_app
from dashboard.web.limits import MAX_BODY_BYTES
from dashboard.web.routes.guestbook import raw_guestbook_path
from tests.fakes import FakePlatform

HX = {"HX-Request": "true"}


@pytest.fixture
def platform() -> FakePlatform:
    return FakePlatform()


def make_client(platform: FakePlatform, tmp_path: Path, **settings: object) -> TestClient:
    config = Settings(run_dir=tmp_path / "run", sample_interval=0.1, step_timeout=0.3, **settings)  # type: ignore[arg-type]
    return TestClient(create_app(config, platform), base_url="http://127.0.0.1:8000")


@pytest.fixture
def client(platform: FakePlatform, tmp_path: Path) -> Iterator[TestClient]:
    with make_client(platform, tmp_path) as c:
        yield c


@pytest.fixture(autouse=True)
def no_error_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No test here may make the dashboard log an error (a traceback in its terminal)."""
    caplog.set_level(logging.WARNING)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def one_sentence(body: dict[str, str]) -> str:
    error = body["error"]
    assert error.endswith(".") and "Traceback" not in error and body["hint"], body
    return error


# -- item 1: DNS rebinding ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1.nip.io:8000", "127.evil.example", "evil.test:8000", "localhost.evil"])
def test_a_rebinding_host_is_403_naming_the_setting(client: TestClient, host: str) -> None:
    for method, path in (("GET", "/api/lab"), ("POST", "/api/steps/cleanup"), ("GET", "/")):
        r = client.request(method, path, headers={"Host": host, **HX, "Accept": "application/json"})
        assert r.status_code == 403, (method, path, r.text)
        assert "--allowed-host" in one_sentence(r.json())


def test_loopback_literals_and_localhost_are_served(client: TestClient) -> None:
    for host in ("127.0.0.1:8000", "127.0.0.2", "localhost:8000", "[::1]:8000"):
        assert client.get("/api/lab", headers={"Host": host}).status_code == 200, host


def test_allowed_host_serves_that_name_only(platform: FakePlatform, tmp_path: Path) -> None:
    with make_client(platform, tmp_path, allowed_host=["lab.test", "other.test"]) as c:
        assert c.get("/api/lab", headers={"Host": "lab.test:8000"}).status_code == 200
        assert c.get("/api/lab", headers={"Host": "other.test"}).status_code == 200
        assert c.get("/api/lab", headers={"Host": "evil.test"}).status_code == 403


# -- item 4: framing --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 200),
        ("GET", "/api/lab", 200),
        ("GET", "/static/app.css", 200),
        ("GET", "/no-such-page", 404),
        ("POST", "/api/steps/leader", 403),  # refused by the guard: no HX-Request
        ("GET", "/guestbook/", 409),  # the proxy, before expose
        ("GET", "/docs", 200),
    ],
)
def test_every_answer_forbids_framing_by_other_sites(client: TestClient, method: str, path: str, status: int) -> None:
    r = client.request(method, path)
    assert r.status_code == status
    assert "frame-ancestors 'self'" in r.headers.get_list("content-security-policy")
    assert r.headers["x-frame-options"] == "SAMEORIGIN"


# -- item 5: numbers and tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"rate": Infinity, "seconds": 5}',
        '{"rate": 50, "seconds": -Infinity}',
        '{"rate": NaN, "seconds": 5}',
        '{"rate": 1e309, "seconds": 5}',
        '{"rate": -1e309, "seconds": 5}',
        '{"rate": 50, "seconds": 1e35}',
        '{"rate": 1e35, "seconds": 5}',
        '{"rate": 50, "seconds": 1e309}',
        '{"rate": 1' + "0" * 400 + ', "seconds": 5}',
        '{"rate": true, "seconds": 5}',
        '{"rate": 50, "seconds": false}',
        '{"rate": "50", "seconds": 5}',
        '{"rate": 50, "seconds": "10"}',
        '{"rate": 50.5, "seconds": 5}',
        '{"rate": [50], "seconds": 5}',
        '{"rate": null, "seconds": 5}',
    ],
)
def test_load_with_a_bad_json_number_is_one_sentence_400(client: TestClient, body: str) -> None:
    r = client.post("/api/load", content=body, headers=HX | {"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    one_sentence(r.json())


@pytest.mark.parametrize(
    "form",
    [
        {"rate": "1e3", "seconds": "5"},
        {"rate": " 50", "seconds": "5"},
        {"rate": "50", "seconds": "inf"},
        {"rate": "٥٠"},
    ],
)
def test_load_form_fields_are_strict_decimal_numbers(client: TestClient, form: dict[str, str]) -> None:
    r = client.post("/api/load", data=form, headers=HX)
    assert r.status_code == 400, r.text
    one_sentence(r.json())


def test_load_form_with_decimal_numbers_is_taken(client: TestClient) -> None:
    """The page's form sends text; plain decimals are numbers (the fake has no frontend, so the load then fails)."""
    r = client.post("/api/load", data={"rate": "50", "seconds": "2.5"}, headers=HX)
    assert r.status_code == 202, r.text
    assert r.json()["rate"] == 50 and r.json()["seconds"] == 2.5


@pytest.mark.parametrize("candidate", ["s3crét".encode(), "\u00ff\u00fe".encode("latin-1"), "日本".encode()])
def test_a_non_ascii_token_anywhere_is_401(platform: FakePlatform, tmp_path: Path, candidate: bytes) -> None:
    with make_client(platform, tmp_path, token="s3cret") as c:
        attempts = [
            c.get("/api/lab", headers={"Authorization": b"Bearer " + candidate}),
            c.get("/api/lab", headers={"Cookie": b"guestbook_lab_token=" + candidate}),
            c.get("/api/lab?token=" + "".join(f"%{b:02X}" for b in candidate)),
        ]
        for r in attempts:
            assert r.status_code == 401, r.text
            one_sentence(r.json())
        assert c.get("/api/lab", headers={"Authorization": "Bearer s3cret"}).status_code == 200


# -- item 6/7: paths and bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/guestbook/a%0Ab", "/guestbook/a%00b", "/guestbook/%0D%0AX:1", "/api/lab%09", "/x%7F"]
)
def test_a_control_character_in_the_path_is_400(client: TestClient, platform: FakePlatform, path: str) -> None:
    platform.url = "http://127.0.0.1:1/"
    r = client.get(path)
    assert r.status_code == 400, r.text
    assert "control character" in one_sentence(r.json())


def test_a_body_over_the_cap_is_413_by_its_length(client: TestClient) -> None:
    body = json.dumps({"rate": 50, "seconds": 5, "pad": "x" * MAX_BODY_BYTES})
    for path in ("/api/load", "/api/steps/leader", "/guestbook/guestbook.php", "/api/lab"):
        r = client.post(path, content=body, headers=HX | {"Content-Type": "application/json"})
        assert r.status_code == 413, (path, r.text)
        assert "larger than" in one_sentence(r.json())


def test_a_streamed_body_over_the_cap_is_413_as_it_streams(client: TestClient) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"rate": 50, "seconds": 5, "pad": "'
        for _ in range(4 * MAX_BODY_BYTES // 65536):
            sent += 65536
            yield b"x" * 65536
        yield b'"}'

    r = client.post("/api/load", content=chunks(), headers=HX | {"Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    assert "larger than" in one_sentence(r.json())


def test_a_body_under_the_cap_is_read_as_before(client: TestClient) -> None:
    body = json.dumps({"rate": 0, "seconds": 5, "pad": "x" * (MAX_BODY_BYTES - 100)})
    r = client.post("/api/load", content=body, headers=HX | {"Content-Type": "application/json"})
    assert r.status_code == 400 and "out of bounds" in r.json()["error"]


@pytest.mark.parametrize(
    ("raw_path", "lab_id", "forwarded"),
    [
        (b"/guestbook/guestbook.php", None, b"guestbook.php"),
        (b"/guestbook/", None, b""),
        (b"/guestbook/a%3Fcmd=set/b%2F", None, b"a%3Fcmd=set/b%2F"),  # escapes stay escapes: no query injected
        (b"/labs/guestbook/guestbook/guestbook.php", "guestbook", b"guestbook.php"),
        (b"/labs/room-1/guestbook/app.js", "room-1", b"app.js"),
    ],
)
def test_the_proxy_forwards_the_raw_path_after_guestbook(raw_path: bytes, lab_id: str | None, forwarded: bytes) -> None:
    params = {"path": "ignored"} | ({"lab_id": lab_id} if lab_id else {})
    request = Request({"type": "http", "raw_path": raw_path, "path_params": params, "headers": []})
    assert raw_guestbook_path(request, "ignored") == forwarded
