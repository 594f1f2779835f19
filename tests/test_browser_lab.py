"""A new user's whole journey in a real browser, against the real dashboard (a subprocess) on the local platform.

Debian's Chromium under Playwright opens the page and does what a learner does: runs the steps in the wrong order
(refused inline, nothing started), then in order, watches the pods go Running, writes a hostile entry in the
embedded guestbook, sees it on the leader and both followers, kills a follower and sees it come back, and cleans
up. Everything is observed in the DOM without reloading; every wait is a poll with a deadline.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import Dashboard, children_of, is_alive, wait_for

pytestmark = pytest.mark.browser

STEP_ORDER = ("leader", "followers", "frontend", "expose")
ALL_STEPS = (*STEP_ORDER, "cleanup")
NASTY = "Hi, \"you\" & 'me' #1 + 2 = 3 😀 ünïcode"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
STEP_TIMEOUT_MS = 20_000
LIVE_TIMEOUT_MS = 5_000

# True once `entry` is listed (as exact text, not flagged missing/extra) under every node named in `names`.
ENTRY_ON_NODES_JS = """([entry, names]) => names.length > 0 && names.every(name => {
  const node = document.querySelector(`#replication .node[data-node="${CSS.escape(name)}"]`);
  return node !== null && [...node.querySelectorAll('li')].some(li => li.textContent === entry);
})"""

# The restart count shown for pod `name` on the pods board, once its row shows it ready; else null.
POD_RESTARTS_JS = """(name) => {
  for (const row of document.querySelectorAll('#pods tr.pod')) {
    const cells = row.querySelectorAll('td');
    if (cells[0].textContent.includes(name) && row.classList.contains('ready')) return cells[3].textContent.trim();
  }
  return null;
}"""

# Records (in window.__seenAt, ms since the epoch) when `entry` first shows under every node of the panel.
OBSERVE_ENTRY_JS = """([entry, names]) => {
  window.__seenAt = null;
  const check = () => {
    const ok = names.every(name => {
      const node = document.querySelector(`#replication .node[data-node="${CSS.escape(name)}"]`);
      return node !== null && [...node.querySelectorAll('li')].some(li => li.textContent === entry);
    });
    if (ok && window.__seenAt === null) { window.__seenAt = Date.now(); observer.disconnect(); }
  };
  const observer = new MutationObserver(check);
  observer.observe(document.body, {subtree: true, childList: true, characterData: true});
  check();
}"""


def expect() -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect


def open_page(browser: Any, dash: Dashboard, requests: list[str] | None = None) -> Any:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    if requests is not None:
        context.on("request", lambda req: requests.append(req.url))
    page = context.new_page()
    page.set_default_timeout(STEP_TIMEOUT_MS)
    page.goto(dash.url + "/")
    expect()(page.locator("#live")).to_have_class(_contains("open"), timeout=LIVE_TIMEOUT_MS)
    return page


def _contains(word: str) -> Any:
    import re

    return re.compile(rf"(^|\s){re.escape(word)}(\s|$)")


def node_names(dash: Dashboard) -> list[str]:
    rep = dash.get("/api/replication")
    return [rep["leader"]["name"], *(f["name"] for f in rep["followers"])]


def test_new_user_journey(browser: Any, dashboard_server: Dashboard, tmp_path: Path) -> None:
    dash = dashboard_server
    pw_expect = expect()
    requests: list[str] = []
    page = open_page(browser, dash, requests)
    page.on("dialog", lambda dialog: dialog.accept())

    # Five steps, none run.
    pw_expect(page.locator("#steps li.step")).to_have_count(5)
    for step_id in ALL_STEPS:
        pw_expect(page.locator(f"#step-{step_id} .state-label")).to_have_text("not run")

    # Step 2 first: refused inline with its hint (409), and nothing started.
    with page.expect_response(lambda r: r.url.endswith("/steps/followers")) as refused:
        page.click("#step-followers button.run")
    assert refused.value.status == 409
    alert = page.locator("#step-followers .refused")
    pw_expect(alert).to_be_visible()
    pw_expect(alert).to_contain_text("needs 'Start the Redis leader'")
    pw_expect(alert).to_contain_text("Run the leader step first")
    pw_expect(page.locator("#step-followers .state-label")).to_have_text("not run")
    assert dash.get("/api/pods") == []
    assert not dash.pid_table().get("pods")
    pw_expect(page.locator("#pods")).to_contain_text("No resources found")

    # Each step in order, each seen done.
    for step_id in STEP_ORDER:
        page.click(f"#step-{step_id} button.run")
        pw_expect(page.locator(f"#step-{step_id} .state-label")).to_contain_text("done", timeout=STEP_TIMEOUT_MS)
        pw_expect(page.locator(f"#step-{step_id}")).to_have_class(_contains("state-done"))
    dash.lab_pids()

    # The pods board: six pods, Running and ready.
    rows = page.locator("#pods tr.pod")
    pw_expect(rows).to_have_count(6)
    for i in range(6):
        pw_expect(rows.nth(i)).to_contain_text("Running")
        pw_expect(rows.nth(i)).to_contain_text("✓ 1/1")
    assert sorted(p["component"] for p in dash.get("/api/pods")) == ["frontend"] * 3 + ["redis-follower"] * 2 + [
        "redis-leader"
    ]

    # The guestbook appears; write a hostile entry in it.
    frame_el = page.locator("#guestbook iframe.guestbook")
    pw_expect(frame_el).to_be_visible()
    frame = page.frame_locator("#guestbook iframe.guestbook")
    pw_expect(frame.locator("#pod")).to_contain_text("frontend-")  # the embedded guestbook loaded and ran
    pw_expect(frame.locator("#entry")).to_be_visible()
    frame.locator("#entry").fill(NASTY)
    frame.locator("#submit").click()
    pw_expect(frame.locator("#entries li").first).to_have_text(NASTY)

    # Replicated: on the leader and on both followers, in sync.
    names = node_names(dash)
    assert len(names) == 3, names
    page.wait_for_function(ENTRY_ON_NODES_JS, arg=[NASTY, names], timeout=LIVE_TIMEOUT_MS)
    pw_expect(page.locator("#replication .sync")).to_contain_text("In sync", timeout=LIVE_TIMEOUT_MS)
    rep = dash.get("/api/replication")
    assert all(entries == [NASTY] for entries in rep["entries"].values()), rep["entries"]

    # kill -9 one follower (only its pid, as recorded by this dashboard): restarted, seen without a reload.
    pods = dash.lab_pids()
    follower, (pid, start) = next((n, p) for n, p in sorted(pods.items()) if n.startswith("redis-follower-"))
    assert is_alive(pid, start) and pid in children_of(dash.pid), (follower, pid)
    page.evaluate("window.__notReloaded = true")
    os.kill(pid, signal.SIGKILL)
    page.wait_for_function(f"(name) => ({POD_RESTARTS_JS})(name) === '1'", arg=follower, timeout=LIVE_TIMEOUT_MS)
    pw_expect(page.locator("#replication .sync")).to_contain_text("In sync", timeout=LIVE_TIMEOUT_MS)
    page.wait_for_function(ENTRY_ON_NODES_JS, arg=[NASTY, node_names(dash)], timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("window.__notReloaded") is True
    new_pid, _ = dash.lab_pids()[follower]
    assert new_pid != pid
    page.screenshot(path=str(tmp_path / "lab-running.png"), full_page=True)

    # Cleanup (confirm accepted): no pod, empty replication panel, no process.
    page.click("#step-cleanup button.run")
    pw_expect(page.locator("#step-cleanup .state-label")).to_contain_text("done", timeout=STEP_TIMEOUT_MS)
    pw_expect(page.locator("#pods")).to_contain_text("No resources found", timeout=LIVE_TIMEOUT_MS)
    pw_expect(page.locator("#pods tr.pod")).to_have_count(0)
    pw_expect(page.locator("#replication .node")).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    pw_expect(page.locator("#replication")).to_contain_text("No Redis node is running", timeout=LIVE_TIMEOUT_MS)
    wait_for(lambda: not dash.survivors(), 3.0, "every lab process to be gone after cleanup")
    assert dash.get("/api/pods") == []
    page.screenshot(path=str(tmp_path / "journey-end.png"), full_page=True)
    assert (tmp_path / "journey-end.png").stat().st_size > 0
    # Every request of the page, its htmx POSTs and the embedded guestbook's API calls went to loopback only.
    assert any("/steps/leader" in u for u in requests) and any("guestbook.php" in u for u in requests), requests
    bad = [u for u in requests if not _is_loopback(u)]
    assert not bad, bad
    page.context.close()


def test_two_pages_see_a_write_within_a_second(browser: Any, dashboard_server: Dashboard, record_property: Any) -> None:
    dash = dashboard_server
    dash.run_steps(*STEP_ORDER)
    frontend_url = dash.get("/api/lab")["frontend_url"]
    assert frontend_url and _is_loopback(frontend_url)
    names = node_names(dash)
    pages = [open_page(browser, dash), open_page(browser, dash)]
    entry = "seen by both, & fast #2"
    for page in pages:
        expect()(page.locator("#replication .sync")).to_contain_text("In sync")
        page.evaluate(OBSERVE_ENTRY_JS, [entry, names])
    with httpx.Client(timeout=5, trust_env=False) as client:
        written_at = time.time()
        r = client.get(frontend_url.rstrip("/") + "/guestbook.php", params={"cmd": "append", "value": entry})
    assert r.status_code == 200, r.text
    delays = []
    for page in pages:
        page.wait_for_function("() => window.__seenAt !== null", timeout=LIVE_TIMEOUT_MS)
        delays.append(page.evaluate("window.__seenAt") / 1000 - written_at)
    print(f"\nwrite → DOM (entry on every node) per page: {', '.join(f'{d * 1000:.0f} ms' for d in delays)}")
    record_property("write_to_dom_seconds", delays)
    assert all(d <= 1.0 for d in delays), delays
    for page in pages:
        page.context.close()


def _is_loopback(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname in LOOPBACK_HOSTS
