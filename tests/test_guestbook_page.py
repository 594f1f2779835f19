"""The guestbook page in a real browser (Debian's Chromium driven by Playwright) against a real frontend and Redis.

Checks what only a browser can: hostile entries typed into the form come back as exactly that text (never as
markup or script), entries written by someone else appear by polling, server errors are shown in words, and the
page never asks for anything outside its own origin. Skipped when Chromium or Playwright is not available.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.redis_helpers import RedisProc, start_redis, wait_until
from tests.test_guestbook import Frontend, start_frontend, write_endpoints

Stack = tuple[Frontend, RedisProc, RedisProc, Path]  # frontend, leader, follower, endpoints file


pytestmark = pytest.mark.browser  # `browser` comes from conftest: Debian's Chromium, failing in CI if missing


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    leader = start_redis()
    follower = start_redis(replicaof=("127.0.0.1", leader.port))
    path = write_endpoints(tmp_path_factory.mktemp("gbpage") / "endpoints.json", [leader.port], [follower.port])
    fe = start_frontend(path, "--max-entry-length", "40", name="page-pod")
    try:
        yield fe, leader, follower, path
    finally:
        fe.stop()
        follower.stop()
        leader.stop()


@pytest.fixture
def page(browser: Any, stack: Stack) -> Iterator[Any]:
    fe, leader, _, _ = stack
    leader.command("DEL", "guestbook")
    context = browser.new_context(viewport={"width": 900, "height": 500})
    pg = context.new_page()
    pg.set_default_timeout(5000)
    pg.requested = []
    pg.on("request", lambda req: pg.requested.append(req.url))
    pg.goto(f"http://127.0.0.1:{fe.port}/")
    yield pg
    context.close()


def entry_texts(pg: Any) -> list[str]:
    texts: list[str] = pg.eval_on_selector_all("#entries li", "els => els.map(e => e.textContent)")
    return texts


def add(pg: Any, text: str) -> None:
    pg.fill("#entry", text)
    pg.press("#entry", "Enter")
    pg.wait_for_function("t => document.querySelector('#entries li')?.textContent === t", arg=text)


def test_page_shows_limit_pod_and_empty_state(page: Any) -> None:
    page.wait_for_selector("#empty:not([hidden])")
    assert "40" in page.text_content("#limit")
    assert page.text_content("#pod") == "page-pod"


def test_hostile_entries_round_trip_as_text(page: Any, stack: Stack) -> None:
    fe = stack[0]
    nasty = [
        '<img src=x onerror="window.__pwned=1">',
        "<script>window.__pwned=2</script>",
        "a, b & c # d + e % f",
        'quote " \\ backslash',
        "😀 שלום 中文 ",
    ]
    for text in nasty:
        add(page, text)
    assert entry_texts(page) == list(reversed(nasty))  # newest first
    assert page.evaluate("window.__pwned") is None
    assert page.query_selector("#entries img") is None and page.query_selector("#entries script") is None
    assert fe.entries() == nasty


def test_entries_from_others_appear_by_polling(page: Any, stack: Stack) -> None:
    fe = stack[0]
    page.wait_for_selector("#empty:not([hidden])")
    assert fe.append("written elsewhere")[0] == 200
    page.wait_for_function("() => document.querySelector('#entries li')?.textContent === 'written elsewhere'")


def test_too_long_entry_is_blocked_with_the_limit_shown(page: Any) -> None:
    page.fill("#entry", "x" * 41)
    assert page.is_disabled("#submit")
    assert "the limit is 40" in page.text_content("#limit")


def test_server_errors_are_shown_in_words(page: Any, stack: Stack) -> None:
    _, leader, follower, path = stack
    write_endpoints(path, [leader.port], [])
    try:
        page.wait_for_selector("#error:not([hidden])")
        assert "redis-follower Service has no ready endpoints" in page.text_content("#error")
    finally:
        write_endpoints(path, [leader.port], [follower.port])
    page.wait_for_selector("#error", state="hidden")


def test_page_requests_stay_on_its_origin(page: Any, stack: Stack) -> None:
    add(page, "one request more")
    wait_until(lambda: any("cmd=append" in u for u in page.requested), 5)
    origin = f"http://127.0.0.1:{stack[0].port}/"
    assert page.requested and all(u.startswith(origin) for u in page.requested), page.requested
