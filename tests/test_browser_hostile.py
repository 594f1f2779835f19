"""DNS rebinding and framing in a real browser (issue 9, items 1 and 4), against the real dashboard process.

Chromium's `--host-resolver-rules` maps `evil.test` to 127.0.0.1, as an attacker's DNS would after a rebind: the
dashboard refuses the page under that name (403 naming --allowed-host), and serves it once started with
`--allowed-host evil.test`. A page of another site that frames the dashboard gets nothing (frame-ancestors
'self'), while the dashboard's own embedded guestbook (an iframe of /guestbook/) still loads and writes.
The attacker's page is served on another loopback port (another origin) by a thread of the test: all traffic
stays on loopback.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Dashboard, StartDashboard, chromium, wait_for

pytestmark = pytest.mark.browser

REBOUND = "evil.test"
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def rebinding_browser() -> Iterator[Any]:
    """Headless Chromium (Debian's) that resolves evil.test to 127.0.0.1."""
    with chromium(f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1") as instance:
        yield instance


@pytest.fixture
def page(rebinding_browser: Any) -> Iterator[Any]:
    context = rebinding_browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        yield page
    finally:
        context.close()


def test_a_rebound_name_gets_403_and_cannot_drive_the_lab(dashboard_server: Dashboard, page: Any) -> None:
    response = page.goto(f"http://{REBOUND}:{dashboard_server.port}/")
    assert response.status == 403
    assert "--allowed-host" in page.inner_text("body")
    # the attacker's script, same-origin with the rebound name, cannot read the lab or run cleanup either
    statuses = page.evaluate(
        """async () => [
            (await fetch('/api/lab')).status,
            (await fetch('/api/steps/cleanup', {method: 'POST', headers: {'HX-Request': 'true'}})).status,
        ]"""
    )
    assert statuses == [403, 403]


def test_allowed_host_serves_that_name(start_dashboard: StartDashboard, page: Any) -> None:
    dash = start_dashboard(None, "--allowed-host", REBOUND)
    response = page.goto(f"http://{REBOUND}:{dash.port}/")
    assert response.status == 200
    page.wait_for_selector("#steps")
    lab = page.evaluate("async () => (await fetch('/api/lab')).json()")
    assert lab["steps"][0]["id"] == "leader"


def test_other_sites_cannot_frame_the_dashboard_but_its_guestbook_embeds(
    dashboard_server: Dashboard, page: Any
) -> None:
    dash = dashboard_server
    dash.run_steps("leader", "followers", "frontend", "expose")
    frontend_url = dash.get("/api/lab")["frontend_url"]
    # the frontend's own port sends no frame-ancestors: framing it works, which shows the browser would have
    # framed a loopback page for the attacker, and that only the dashboard's headers stop it
    attacker_html = (
        f'<h1>win a prize</h1><iframe id="victim" src="{dash.url}/"></iframe>'
        f'<iframe id="control" src="{frontend_url}"></iframe>'
    )
    with attacker_site(attacker_html) as attacker_url:
        page.goto(attacker_url)
        check_framing(page)

    # the dashboard's own page embeds the guestbook through /guestbook/ and can write through it
    page.goto(f"{dash.url}/")
    frame = page.frame_locator("#guestbook iframe.guestbook")
    frame.locator("#entry").fill("framed by the dashboard itself")
    frame.locator("#submit").click()
    frame.locator("#entries li", has_text="framed by the dashboard itself").wait_for()


def check_framing(page: Any) -> None:
    """The control frame (the frontend's own page) loads; the dashboard's frame is refused by the browser."""
    page.frame_locator("#control").locator("#entry").wait_for()  # framed by another site: allowed there
    handle = page.locator("#victim").element_handle()
    page.wait_for_function("(el) => el.contentWindow !== null", arg=handle)
    victim = handle.content_frame()
    assert victim is not None
    wait_for(lambda: victim.url.startswith("chrome-error://"), 10, "the browser to refuse the dashboard's frame")
    assert victim.query_selector("#steps") is None, "another site framed the dashboard"


@contextlib.contextmanager
def attacker_site(html: str) -> Iterator[str]:
    """Another site: a page on another loopback port (another origin), served by a thread until the block ends."""
    body = html.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
