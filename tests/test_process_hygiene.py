"""Nothing of the lab outlives the dashboard: SIGTERM, Ctrl-C (SIGINT) and even SIGKILL of the real dashboard.

Each test starts `python -m dashboard` as a subprocess with its own run dir, runs the four steps through the API
(as a script does: `HX-Request: true`), then stops the dashboard one way and checks every lab pid it recorded in
`run_dir/pods.json` (same pid AND same start time, so a reused pid is never mistaken). Signals go only to the
dashboard this test started, and to processes this test started itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import (
    Dashboard,
    StartDashboard,
    assert_clean_exit,
    assert_lab_gone,
    children_of,
    is_alive,
    start_time_of,
    stat_fields,
    stop_cleanly,
    wait_for,
)
from tests.redis_helpers import start_redis

STEPS = ("leader", "followers", "frontend", "expose")
GONE_WITHIN = 3.0  # seconds from the signal until no lab process is left


def run_lab(dash: Dashboard) -> dict[str, tuple[int, int]]:
    """The four steps through the API; the lab's pods (name -> pid, start time), all running and the dashboard's."""
    dash.run_steps(*STEPS)
    pods = dash.lab_pids()
    assert len(pods) == 6, pods
    mine = set(children_of(dash.pid))
    for name, (pid, start) in pods.items():
        assert is_alive(pid, start) and pid in mine, (name, pid)
    return pods


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_stop_leaves_nothing(start_dashboard: StartDashboard, sig: signal.Signals) -> None:
    dash = start_dashboard()
    run_lab(dash)
    sent = time.monotonic()
    code = dash.stop(sig)
    assert_lab_gone(dash, timeout=max(0.0, GONE_WITHIN - (time.monotonic() - sent)))
    took = time.monotonic() - sent
    print(f"\n{sig.name}: dashboard and all 6 lab processes gone in {took:.2f} s")
    assert took <= GONE_WITHIN
    assert_clean_exit(dash, code, sig)
    assert not dash.run_dir.exists() or not any(dash.run_dir.iterdir())


def test_sigkill_children_die_and_next_start_reaps(start_dashboard: StartDashboard, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    dash = start_dashboard(run_dir)
    pods = run_lab(dash)
    sent = time.monotonic()
    dash.stop(signal.SIGKILL)
    # PR_SET_PDEATHSIG: every child dies with the dashboard, although nothing in it ran any cleanup.
    wait_for(lambda: not dash.survivors(), GONE_WITHIN, f"the lab's processes {sorted(dash.seen)} to die with it")
    print(f"\nSIGKILL: all {len(pods)} lab processes gone {time.monotonic() - sent:.2f} s after the dashboard")
    assert (run_dir / "pods.json").exists()  # killed: its files are left for the next start to reap

    second = start_dashboard(run_dir)
    assert not run_dir.exists() or not any(run_dir.iterdir()), sorted(p.name for p in run_dir.iterdir())
    assert second.get("/api/pods") == []
    stop_cleanly(second)


def test_next_start_kills_a_process_left_in_the_pid_table(start_dashboard: StartDashboard, tmp_path: Path) -> None:
    """A lab process that outlived a killed dashboard (say, it died between fork and prctl) is reaped at start."""
    run_dir = tmp_path / "run"
    dash = start_dashboard(run_dir)
    run_lab(dash)
    dash.stop(signal.SIGKILL)
    wait_for(lambda: not dash.survivors(), GONE_WITHIN, "the lab's processes to die with the dashboard")

    leftover = start_redis()  # started by this test: the one process it lets the next dashboard kill
    try:
        table = json.loads((run_dir / "pods.json").read_text(encoding="utf-8"))
        start = start_time_of(leftover.pid)
        assert start is not None
        table["pods"].append({"pod": "redis-follower-left-over", "pid": leftover.pid, "start_time": start, "argv": []})
        (run_dir / "pods.json").write_text(json.dumps(table), encoding="utf-8")

        second = start_dashboard(run_dir)
        wait_for(lambda: not is_alive(leftover.pid, start), GONE_WITHIN, "the leftover redis-server to be killed")
        assert not run_dir.exists() or not any(run_dir.iterdir())
        stop_cleanly(second)
    finally:
        leftover.stop()


WRAPPER = """#!/bin/sh
# A wrapper that does not exec: redis-server runs as the shell's child, and the shell waits for it.
{redis} "$@"
echo "redis-server exited with $?"
"""


def wrapper_script(tmp_path: Path) -> Path:
    wrapper = tmp_path / "redis-wrapper"
    wrapper.write_text(WRAPPER.format(redis=shutil.which("redis-server")))
    wrapper.chmod(0o755)
    return wrapper


def wrapped_servers(dash: Dashboard) -> dict[int, int]:
    """The redis-servers the lab's wrapper shells run (pid -> start time): live members of each pod's process group
    (/proc) other than the shell itself."""
    servers = {}
    for entry in dash.pid_table()["pods"]:
        for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
            fields = stat_fields(pid)  # state, ppid, pgrp, ... start time is the 20th
            if fields and fields[0] not in ("Z", "X") and int(fields[2]) == entry["pgid"] and pid != entry["pid"]:
                servers[pid] = int(fields[19])
    return servers


def kill_survivors(servers: dict[int, int]) -> None:
    """SIGKILL the lab's own processes, by pid and start time, should a check have failed before they stopped."""
    for pid, start in servers.items():
        if is_alive(pid, start):
            os.kill(pid, signal.SIGKILL)


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_sigkill_with_a_wrapper_that_does_not_exec_next_start_reaps_its_groups(
    start_dashboard: StartDashboard, tmp_path: Path
) -> None:
    """--redis-server is a shell script that runs redis-server as its child: PR_SET_PDEATHSIG kills the shells with
    the dashboard, not their redis-servers; the next start kills each pod's whole process group."""
    wrapper = wrapper_script(tmp_path)
    run_dir = tmp_path / "run"
    dash = start_dashboard(run_dir, "--redis-server", str(wrapper))
    dash.run_steps("leader", "followers")
    table = dash.pid_table()["pods"]
    assert len(table) == 3 and all(entry["pgid"] == entry["pid"] for entry in table), table
    servers = wrapped_servers(dash)  # the redis-servers: the shells' children, in the shells' groups
    assert len(servers) == 3, servers
    ports = [int(pod["ip"].rsplit(":", 1)[1]) for pod in dash.get("/api/pods")]
    assert len(ports) == 3 and all(accepts(port) for port in ports)
    try:
        dash.stop(signal.SIGKILL)
        wait_for(lambda: not dash.survivors(), GONE_WITHIN, "the wrapper shells to die with the dashboard")
        outlived = [pid for pid, start in servers.items() if is_alive(pid, start)]
        print(f"\nSIGKILL: {len(outlived)} of 3 redis-servers outlived their wrapper shells")

        started = time.monotonic()
        second = start_dashboard(run_dir, "--redis-server", str(wrapper))
        wait_for(
            lambda: not any(is_alive(pid, start) for pid, start in servers.items()),
            GONE_WITHIN,
            "the next start to reap the redis-servers of the killed dashboard's groups",
        )
        wait_for(lambda: not any(accepts(port) for port in ports), GONE_WITHIN, "their ports to close")
        print(f"next start: all gone {time.monotonic() - started:.2f} s after it began")
        assert not run_dir.exists() or not any(run_dir.iterdir())
        stop_cleanly(second)
    finally:
        kill_survivors(servers)


def test_a_wrapper_pods_children_stop_with_the_pod(start_dashboard: StartDashboard, tmp_path: Path) -> None:
    """Cleanup and a graceful stop take a wrapper's redis-server too (the pod's group is signalled)."""
    dash = start_dashboard(None, "--redis-server", str(wrapper_script(tmp_path)))
    dash.run_steps("leader", "followers")
    servers = wrapped_servers(dash)
    assert len(servers) == 3
    try:
        with dash.client() as client:
            assert client.post("/api/steps/cleanup", headers={"HX-Request": "true"}).json()["state"] == "done"
        assert not any(is_alive(pid, start) for pid, start in servers.items())
        assert_clean_exit(dash, dash.stop(signal.SIGTERM), signal.SIGTERM)
    finally:
        kill_survivors(servers)
