"""Shared fixtures: the real dashboard as a subprocess, and Debian's Chromium under Playwright.

`dashboard_server` runs `python -m dashboard` on a free loopback port with its own run dir, waits for /healthz
(polling with a deadline), yields a `Dashboard` handle, and at teardown sends SIGTERM to exactly that pid and
asserts that no process the lab ever recorded in its pid table (`run_dir/pods.json`) survived and that the run dir
is gone. `start_dashboard` is the factory behind it, for tests that need several starts on the same run dir or
another signal. `browser` is one headless Chromium per module, launched from /usr/bin/chromium (Playwright
never downloads a browser here); without Chromium the browser tests are skipped, except in CI where that fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.polling import wait_until
from tests.redis_helpers import free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HX = {"HX-Request": "true"}
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


# -- processes, read from /proc (never signalled unless the test started them or the dashboard recorded them) --------


def stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (after the parenthesised command name), or None if there is no such pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def start_time_of(pid: int) -> int | None:
    """Start time of `pid` in clock ticks after boot (field 22), or None."""
    fields = stat_fields(pid)
    return int(fields[19]) if fields else None


def is_alive(pid: int, start_time: int | None = None) -> bool:
    """A live, non-zombie process with this pid (and, if given, this start time: never a reused pid)."""
    fields = stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return start_time is None or int(fields[19]) == start_time


def children_of(pid: int) -> list[int]:
    """Pids whose parent is `pid` (a snapshot)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(int(entry))
            if fields is not None and int(fields[1]) == pid:
                out.append(int(entry))
    return out


wait_for = wait_until  # the dashboard tests' name for the one polling helper


# -- the dashboard as a subprocess -------------------------------------------------------------------------------


@dataclass
class Dashboard:
    """One `python -m dashboard` process started by a test, and what its lab recorded."""

    proc: subprocess.Popen[bytes]
    port: int
    run_dir: Path
    log_path: Path
    seen: dict[int, int] = field(default_factory=dict)  # every lab pid -> start time read from pods.json

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout, trust_env=False)

    def step(self, step_id: str) -> httpx.Response:
        """POST /api/steps/<id> as a script does (HX-Request: true)."""
        with self.client() as c:
            return c.post(f"/api/steps/{step_id}", headers=HX)

    def run_steps(self, *steps: str) -> None:
        for step_id in steps:
            r = self.step(step_id)
            assert r.status_code == 200, (step_id, r.status_code, r.text)
            assert r.json()["state"] == "done", r.json()
        self.lab_pids()

    def get(self, path: str) -> Any:
        with self.client() as c:
            r = c.get(path)
            r.raise_for_status()
            return r.json()

    def pid_table(self) -> dict[str, Any]:
        try:
            data = json.loads((self.run_dir / "pods.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def lab_pids(self) -> dict[str, tuple[int, int]]:
        """The lab's pods now: name -> (pid, start time), from the pid table; remembered for the final check."""
        pods: dict[str, tuple[int, int]] = {}
        for entry in self.pid_table().get("pods") or []:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                pid, start = int(entry["pid"]), int(entry["start_time"])
                pods[str(entry["pod"])] = (pid, start)
                self.seen[pid] = start
        return pods

    def survivors(self) -> list[int]:
        """Pids the lab recorded at any time that still run (same start time: not a reused pid)."""
        return sorted(pid for pid, start in self.seen.items() if is_alive(pid, start))

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        """Record the lab's pids, send `sig` to the dashboard (only its pid) and wait for it; its exit code."""
        self.lab_pids()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            raise AssertionError(f"the dashboard did not stop within {timeout:g} s of {sig.name}") from None

    def kill_leftovers(self) -> None:
        """Last resort at teardown: SIGKILL recorded lab pids that still run (same start time)."""
        for pid in self.survivors():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


StartDashboard = Callable[..., Dashboard]


def launch_dashboard(
    run_dir: Path,
    log_path: Path,
    *extra: str,
    port: int | None = None,
    token: str | None = None,
    via_env: bool = False,
) -> Dashboard:
    """Start `python -m dashboard` on 127.0.0.1 and return once its /healthz answers (polled with a deadline).

    With no `port`, a free one; when another process took it meanwhile (other tests on this machine start servers
    on ephemeral ports too), the dashboard cannot bind and exits: up to three tries on a new free port. `token`:
    the dashboard's token (given in `extra`, or with `via_env` in GUESTBOOK_LAB_TOKEN), sent to /healthz."""
    if port is not None:
        return _launch_dashboard(run_dir, log_path, extra, port, token, via_env)
    for attempt in range(3):
        try:
            return _launch_dashboard(run_dir, log_path, extra, free_port(), token, via_env)
        except PortTaken:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class PortTaken(AssertionError):
    """The dashboard exited because its --port was taken by another process between free_port() and its bind."""


def _launch_dashboard(
    run_dir: Path, log_path: Path, extra: tuple[str, ...], port: int, token: str | None, via_env: bool
) -> Dashboard:
    cmd = [sys.executable, "-m", "dashboard", "--port", str(port), "--frontend-port", "0", "--run-dir", str(run_dir)]
    cmd += ["--sample-interval", "0.2", *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUESTBOOK_LAB_")}
    env["PYTHONUNBUFFERED"] = "1"
    if via_env and token is not None:
        env["GUESTBOOK_LAB_TOKEN"] = token
    bearer = {"Authorization": f"Bearer {token}"} if token is not None else {}
    log_file = open(log_path, "ab")  # noqa: SIM115 - the child keeps it; closed by the OS when the test ends
    try:
        proc = subprocess.Popen(
            cmd, cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
        )
    finally:
        log_file.close()
    dash = Dashboard(proc, port, run_dir, log_path)

    def healthy() -> bool:
        if proc.poll() is not None:
            log = dash.log_text()
            error = PortTaken if "already in use" in log else AssertionError
            raise error(f"the dashboard exited with {proc.returncode}:\n{log}")
        try:
            with dash.client(timeout=1.0) as c:
                answer = c.get("/healthz", headers=bearer)
                # the dashboard's own /healthz (a guestbook frontend on a port taken meanwhile answers one too)
                return answer.status_code == 200 and "labs" in answer.json()
        except (httpx.HTTPError, ValueError):
            return False

    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not healthy():
            if time.monotonic() >= deadline:
                raise AssertionError(f"the dashboard did not answer /healthz within {START_TIMEOUT:g} s")
            time.sleep(0.02)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        raise
    return dash


def assert_lab_gone(dash: Dashboard, timeout: float = 3.0) -> None:
    """No process the lab recorded still runs, and the run dir is empty or gone (within `timeout`)."""
    try:
        wait_for(lambda: not dash.survivors(), timeout, "every lab process to be gone")
    except AssertionError:
        raise AssertionError(f"lab processes survived: {dash.survivors()}\n{dash.log_text()}") from None
    leftovers = sorted(p.name for p in dash.run_dir.iterdir()) if dash.run_dir.exists() else []
    assert not leftovers, f"files left in {dash.run_dir}: {leftovers}"


def assert_clean_exit(dash: Dashboard, code: int | None, sig: signal.Signals) -> None:
    """A graceful stop: exit 0, or the signal re-raised after the shutdown (uvicorn does that), never a traceback."""
    assert code in (0, -sig, 128 + sig), f"the dashboard exited with {code} on {sig.name}:\n{dash.log_text()}"
    assert "Traceback" not in dash.log_text(), dash.log_text()


@pytest.fixture
def start_dashboard(tmp_path: Path) -> Iterator[StartDashboard]:
    """A factory: `start_dashboard(run_dir=None, *extra_flags)` → a running `Dashboard`. All are stopped at the end."""
    started: list[Dashboard] = []

    def start(run_dir: Path | None = None, *extra: str) -> Dashboard:
        log_path = tmp_path / f"dashboard-{len(started)}.log"
        dash = launch_dashboard(run_dir or tmp_path / "run", log_path, *extra)
        started.append(dash)
        return dash

    yield start
    for dash in started:
        if dash.proc.poll() is None:
            with contextlib.suppress(AssertionError):
                dash.stop()
        dash.kill_leftovers()


def stop_cleanly(dash: Dashboard) -> None:
    """SIGTERM the dashboard: it exits cleanly and leaves no lab process and no run-dir file behind."""
    assert_clean_exit(dash, dash.stop(signal.SIGTERM), signal.SIGTERM)
    assert_lab_gone(dash)


@pytest.fixture
def dashboard_server(start_dashboard: StartDashboard) -> Iterator[Dashboard]:
    """The real dashboard on 127.0.0.1 with a fresh run dir; stopped with SIGTERM and checked to leave nothing."""
    dash = start_dashboard()
    yield dash
    stop_cleanly(dash)


# -- the browser ----------------------------------------------------------------------------------------------------


def _no_browser(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"{reason} (in CI the test command installs it, so this is a failure)")
    pytest.skip(reason)


@contextlib.contextmanager
def chromium(*extra_args: str) -> Iterator[Any]:
    """Headless Debian Chromium (/usr/bin/chromium) under Playwright, with `CHROMIUM_ARGS` and `extra_args`."""
    if not os.path.exists(CHROMIUM_PATH):
        _no_browser(f"{CHROMIUM_PATH} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("the playwright Python package is not installed (pip install -e '.[test]')")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM_PATH, headless=True, args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's, /usr/bin/chromium) under Playwright, one per test module.

    Module- rather than session-scoped: Playwright's sync API cannot run twice at once in one thread, and a module
    that launches its own Chromium with other flags (`chromium(...)` in test_browser_hostile) would otherwise start
    a second one while this one lives.
    """
    with chromium() as instance:
        yield instance


@pytest.fixture
def namespace() -> Iterator[str]:
    """A throwaway namespace on the real test cluster, for the `k8s` tests (`tests/k8s_cluster.py`)."""
    from tests.k8s_cluster import namespace_on_cluster

    with namespace_on_cluster() as name:
        yield name
