"""Hostile input and faults against the real dashboard process (issue 9): real redis-server, real frontends.

The `/guestbook/` proxy's edge cases end in the frontend's own answer or ours (400/403/413, never 500/502), and
cross-site writes through it are refused while the frontend's own port keeps upstream's API; a 100 MB body is
refused without the dashboard's memory growing; SIGTERM in the middle of a drill or a write load exits 0 quietly;
the token stays out of `ps` and out of the children's environment. All traffic on 127.0.0.1, every loop bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    HX,
    PROJECT_ROOT,
    Dashboard,
    StartDashboard,
    assert_lab_gone,
    launch_dashboard,
    wait_for,
)
from tests.redis_helpers import free_port

MB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def entries(c: httpx.Client) -> list[str]:
    r = c.get("/guestbook/guestbook.php?cmd=get")
    assert r.status_code == 200, r.text
    return list(r.json()["entries"])


def test_the_guestbook_proxy_passes_on_the_frontends_answer_or_refuses_cleanly(dashboard_server: Dashboard) -> None:
    dash = dashboard_server
    dash.run_steps("leader", "followers", "frontend", "expose")
    with dash.client() as c:
        frontend_url = c.get("/api/lab").json()["frontend_url"]
        assert c.get("/guestbook/guestbook.php?cmd=append&value=keep").status_code == 200
        wait_for(lambda: entries(c) == ["keep"], 5, "the entry on the follower")

        # invalid UTF-8 reaches the frontend as sent: its own 400, nothing stored as U+FFFD
        r = c.get("/guestbook/guestbook.php?cmd=append&value=%FF%FEx")
        assert r.status_code == 400 and "UTF-8" in r.json()["error"], r.text
        # raw forwarding keeps every escape: '+' is a space, %2B a plus, %26 an ampersand
        r = c.get("/guestbook/guestbook.php?cmd=append&value=a+%2B%26%C3%A9")
        assert r.status_code == 200, r.text
        wait_for(lambda: entries(c) == ["keep", "a +&é"], 5, "the escaped entry on the follower")

        for path in ("/guestbook/a%0Ab", "/guestbook/%00", "/guestbook/guestbook.php%0D%0AX-Injected:%201"):
            r = c.get(path)
            assert r.status_code == 400 and "control character" in r.json()["error"], (path, r.text)

        big = b"cmd=append&value=" + b"x" * (5 * MB)
        r = c.post(
            "/guestbook/guestbook.php",
            content=big,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": dash.url},
        )
        assert r.status_code == 413 and "larger than" in r.json()["error"], r.text[:300]

        # an <img> on another site, or a link followed from it: refused, the guestbook untouched
        for headers in (
            {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "image"},
            {"Sec-Fetch-Site": "same-site"},
            {"Referer": "http://evil.example/page.html"},
            {"Origin": "http://evil.example"},
        ):
            for query in ("cmd=set&value=", "cmd=append&value=spam", "cmd=get&cmd=set&value="):
                r = c.get(f"/guestbook/guestbook.php?{query}", headers=headers)
                assert r.status_code == 403 and "another site" in r.json()["error"], (headers, query, r.text)
            assert c.get("/guestbook/guestbook.php?cmd=get", headers=headers).status_code == 200  # reads pass
        assert entries(c) == ["keep", "a +&é"]

    # the frontend's own port keeps upstream's API, GET writes included
    with httpx.Client(base_url=frontend_url, timeout=10, trust_env=False) as f:
        r = f.get("/guestbook.php?cmd=append&value=direct", headers={"Sec-Fetch-Site": "cross-site"})
        assert r.status_code == 200 and r.json()["message"] == "Updated", r.text
    assert "Traceback" not in dash.log_text()


def test_a_100_mb_body_is_refused_without_the_dashboard_growing(dashboard_server: Dashboard) -> None:
    dash = dashboard_server
    before = rss_bytes(dash.pid)
    chunk = b"x" * (256 * 1024)
    total = 100 * MB

    def body() -> Iterator[bytes]:
        for _ in range(total // len(chunk)):
            yield chunk

    started = time.monotonic()
    with dash.client(timeout=60) as c:
        # streamed (chunked: no length to check first) and announced (Content-Length: refused before reading)
        for extra in ({}, {"Content-Length": str(total)}):
            r = c.post("/api/load", content=body(), headers=HX | {"Content-Type": "application/json"} | extra)
            assert r.status_code == 413 and "larger than" in r.json()["error"], r.text[:300]
        assert c.get("/api/lab").status_code == 200  # still serving
    grown = rss_bytes(dash.pid) - before
    print(f"RSS before {before / MB:.1f} MiB, grown by {grown / MB:.1f} MiB, {time.monotonic() - started:.1f} s")
    assert grown < 20 * MB, f"the dashboard grew by {grown / MB:.0f} MiB on a refused body"


@pytest.mark.parametrize("what", ["pause-replication", "load"])
def test_sigterm_during_a_drill_or_the_load_exits_0_without_a_traceback(
    start_dashboard: StartDashboard, what: str
) -> None:
    dash = start_dashboard()
    dash.run_steps("leader", "followers", "frontend", "expose")
    answers: list[int] = []
    if what == "load":
        with dash.client() as c:
            assert c.post("/api/load", json={"rate": 50, "seconds": 30}, headers=HX).status_code == 202
    else:

        def drill() -> None:
            with dash.client() as c:
                try:
                    answers.append(c.post(f"/api/drills/{what}", headers=HX).status_code)
                except httpx.HTTPError:  # the connection may close under the request at shutdown
                    answers.append(-1)

        threading.Thread(target=drill, daemon=True).start()
        wait_for(lambda: _running(dash, what), 10, f"the {what} drill to run")
    time.sleep(0.3)
    started = time.monotonic()
    code = dash.stop(signal.SIGTERM, timeout=8)
    took = time.monotonic() - started
    log = dash.log_text()
    print(f"{what}: exit {code} in {took:.2f} s; the drill's request answered {answers}")
    assert code == 0, log
    assert "Traceback" not in log and "CancelledError" not in log and "ERROR" not in log, log
    assert_lab_gone(dash)


def _running(dash: Dashboard, drill_id: str) -> bool:
    return any(d["id"] == drill_id and d["state"] == "running" for d in dash.get("/api/lab")["drills"])


# -- the token: out of ps, out of the children (item 13) -----------------------------------------------------------


def launch_with_token(tmp_path: Path, token: str, *extra: str, env_token: bool = False) -> Dashboard:
    """`python -m dashboard` with a token (so /healthz needs it too): given by environment, file or flag."""
    return launch_dashboard(tmp_path / "run", tmp_path / "dashboard.log", *extra, token=token, via_env=env_token)


@pytest.fixture
def token_dashboards() -> Iterator[list[Dashboard]]:
    started: list[Dashboard] = []
    yield started
    for dash in started:
        if dash.proc.poll() is None:
            code = dash.stop(signal.SIGTERM)
            assert code == 0, dash.log_text()
        assert_lab_gone(dash)


def test_a_token_from_the_environment_is_not_inherited_by_the_lab(
    tmp_path: Path, token_dashboards: list[Dashboard]
) -> None:
    token = "env-token-4d1f9c"
    dash = launch_with_token(tmp_path, token, env_token=True)
    token_dashboards.append(dash)
    bearer = {"Authorization": f"Bearer {token}"}
    with dash.client() as c:
        assert c.get("/api/lab").status_code == 401
        for step in ("leader", "followers", "frontend", "expose"):
            r = c.post(f"/api/steps/{step}", headers=bearer)
            assert r.status_code == 200 and r.json()["state"] == "done", r.text
    pods = dash.lab_pids()
    assert len(pods) >= 6, pods  # leader, 2 followers, 3 frontends
    for name, (pid, _) in pods.items():
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"GUESTBOOK_LAB_TOKEN" not in environ and token.encode() not in environ, name
    assert "visible" not in dash.log_text()  # no warning: the environment is the recommended way


def test_a_token_file_keeps_the_token_out_of_ps(tmp_path: Path, token_dashboards: list[Dashboard]) -> None:
    token = "file-token-7e2a0b"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    dash = launch_with_token(tmp_path, token, "--token-file", str(token_file))
    token_dashboards.append(dash)
    assert token.encode() not in Path(f"/proc/{dash.pid}/cmdline").read_bytes()
    with dash.client() as c:
        assert c.get("/api/lab", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert c.get("/api/lab", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert "visible" not in dash.log_text()


def test_token_on_the_command_line_warns_in_one_line(tmp_path: Path, token_dashboards: list[Dashboard]) -> None:
    dash = launch_with_token(tmp_path, "flag-token-1234", "--token", "flag-token-1234")
    token_dashboards.append(dash)
    warnings = [line for line in dash.log_text().splitlines() if "visible" in line]
    assert len(warnings) == 1 and "--token-file" in warnings[0] and "GUESTBOOK_LAB_TOKEN" in warnings[0], warnings


def test_an_unreadable_token_file_is_one_sentence(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUESTBOOK_LAB_")}
    run = subprocess.run(
        [sys.executable, "-m", "dashboard", "--token-file", str(tmp_path / "missing"), "--port", str(free_port())],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2
    assert "--token-file" in run.stderr and "Traceback" not in run.stderr and len(run.stderr.splitlines()) == 1
