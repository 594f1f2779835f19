"""The replication view in Chromium during drills: what an instructor projects.

The real dashboard runs as a subprocess (`dashboard_server`); the page is opened with `?view=replication&scale=1.5`.
While the pause drill runs (clicked in the page), the paused follower's lag chart must show a gap above 0, live
over Server-Sent Events; then the drill reports that it caught up. Deleting the leader asks for confirmation first
(a dismissed dialog does nothing), and once accepted the page shows the data loss. Waits are polls with deadlines.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Dashboard

pytestmark = pytest.mark.browser


@pytest.fixture
def page(browser: Any, dashboard_server: Dashboard) -> Iterator[Any]:
    dashboard_server.run_steps("leader", "followers", "frontend")
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(20000)
    pg.errors = []
    pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
    pg.goto(f"{dashboard_server.url}/?view=replication&scale=1.5")
    pg.wait_for_selector("#live.open")
    yield pg
    context.close()


def test_replication_view_shows_lag_during_the_pause_drill(page: Any, dashboard_server: Dashboard) -> None:
    assert page.locator("#panel-steps").count() == 0 and page.locator("#panel-pods").count() == 0
    assert page.locator("#panel-replication").is_visible() and page.locator("#panel-lag").is_visible()
    page.wait_for_selector(".lag-chart .lag-svg")
    assert page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--scale').trim()") == "1.5"
    page.click("#step-pause-replication button.run")
    page.wait_for_selector("#step-pause-replication.state-running")
    # live over SSE: a follower's chart turns "lagging" and its caption shows a gap above 0 bytes
    page.wait_for_selector(".lag-chart.lagging")
    gap = page.inner_text(".lag-chart.lagging .lag-now")
    assert "gap 0 B" not in gap
    page.wait_for_selector("#step-pause-replication.state-done", timeout=30000)
    message = page.inner_text("#step-pause-replication .message")
    assert "gap grew to" in message and "caught up" in message
    page.wait_for_function("() => !document.querySelector('.lag-chart.lagging:not(.gone)')")
    assert page.errors == []


def test_delete_leader_asks_first_then_shows_the_data_loss(page: Any, dashboard_server: Dashboard) -> None:
    page.click("#panel-experiments button.run")  # the probe writes one entry, so there is something to lose
    page.wait_for_selector(".probe .wait-line")
    with dashboard_server.client() as c:
        leader = c.get("/api/replication").json()["leader"]["name"]
    posted: list[str] = []
    page.on("request", lambda req: posted.append(req.url) if req.method == "POST" else None)
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#step-delete-leader button.run")  # htmx asks synchronously: a dismissed confirm sends nothing
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => r(null)))")
    assert not [u for u in posted if "delete-leader" in u]
    with dashboard_server.client() as c:
        assert c.get("/api/replication").json()["leader"]["name"] == leader
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#step-delete-leader button.run")
    page.wait_for_selector("#step-delete-leader.state-done", timeout=30000)
    loss = page.inner_text("#step-delete-leader .message.loss")
    assert "DATA LOSS" in loss and "entries are gone" in loss
    page.wait_for_function(
        "() => [...document.querySelectorAll('.entries .node .count')].every(e => e.textContent.trim() === '(0)')"
    )
    assert page.errors == []
