"""Benchmark of the "watch it replicate" probe against an independent observer, and of the dashboard at rest.

Starts the real dashboard (`python -m dashboard`, local platform, --sample-interval 1) as a subprocess, runs the
leader, followers and frontend steps, then:

1. Probe accuracy: an observer in ANOTHER process subscribes to keyspace notifications (`notify-keyspace-events
   KA`) on the leader and on each follower and stamps each `guestbook` event with `time.perf_counter_ns()` —
   CLOCK_MONOTONIC, the same clock the probe uses, shared by all processes of the machine. The notification is
   published by each Redis node at the moment it applies the write, so it is an independent measurement of
   "when the entry appeared there". `POST /api/probe` is called --probes times; for each node the probe's
   `seen_ns` is compared with the observer's stamp. Target: |difference| <= 5 ms.
2. CPU of the dashboard process (sampling 3 Redis nodes at 1 Hz, the pods tick, the lag chart ticker; no
   viewer), from /proc/<pid>/stat over --seconds, as % of one core. Target for the sampling: <= 2 %.

Usage: .venv/bin/python bench/bench_probe.py [--probes 30] [--seconds 20]
Stops exactly the processes it started, by pid.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
HX = {"HX-Request": "true"}

OBSERVER = r"""
import json, sys, threading, time, redis
nodes = json.loads(sys.argv[1])
lock = threading.Lock()
def watch(name, port):
    conn = redis.Redis(port=port)
    conn.config_set("notify-keyspace-events", "KA")
    sub = conn.pubsub()
    sub.subscribe("__keyspace@0__:guestbook")
    sub.get_message(timeout=1.0)
    with lock:
        print(json.dumps({"ready": name}), flush=True)
    for message in sub.listen():
        stamp = time.perf_counter_ns()
        if message["type"] == "message":
            with lock:
                print(json.dumps({"node": name, "ns": stamp}), flush=True)
for name, port in nodes.items():
    threading.Thread(target=watch, args=(name, port), daemon=True).start()
sys.stdin.read()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    port = free_port()
    run_dir = Path(tempfile.mkdtemp(prefix="bench-probe-"))
    cmd = [sys.executable, "-m", "dashboard", "--port", str(port), "--frontend-port", "0"]
    cmd += ["--run-dir", str(run_dir / "run"), "--sample-interval", "1"]
    dash = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    observer: subprocess.Popen[str] | None = None
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0, trust_env=False)
        wait_for(lambda: client.get("/healthz").status_code == 200, 20, "the dashboard")
        for step in ("leader", "followers", "frontend"):
            body = client.post(f"/api/steps/{step}", headers=HX).json()
            assert body["state"] == "done", body
        pods = client.get("/api/pods").json()
        nodes = {p["name"]: int(p["ip"].rsplit(":", 1)[1]) for p in pods if p["component"] != "frontend"}

        # 2. CPU at rest first (the observer's CONFIG SET and subscriptions are not part of the lab)
        time.sleep(2.0)  # let the steps' own work settle before measuring
        before, started = cpu_seconds(dash.pid), time.monotonic()
        time.sleep(args.seconds)
        cpu = (cpu_seconds(dash.pid) - before) / (time.monotonic() - started) * 100

        # 1. probe vs the observer
        observer = subprocess.Popen(
            [sys.executable, "-c", OBSERVER, json.dumps(nodes)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert observer.stdout is not None
        for _ in nodes:
            json.loads(observer.stdout.readline())  # {"ready": name}
        results = []
        for _ in range(args.probes):
            results.append(client.post("/api/probe", headers=HX).json())
        client.post("/api/probe", headers=HX)  # one more write, so the last probe's events are surely flushed
        stamps: dict[str, list[int]] = {name: [] for name in nodes}
        wanted = len(nodes) * (args.probes + 1)
        seen = 0
        while seen < wanted:
            line = observer.stdout.readline()
            if not line:
                break
            event = json.loads(line)
            stamps[event["node"]].append(event["ns"])
            seen += 1
        diffs: dict[str, list[float]] = {"leader": [], "follower": []}
        propagation: list[float] = []
        for result in results:
            for node in result["nodes"]:
                after = [ns for ns in stamps[node["name"]] if ns >= result["sent_ns"]]
                if node["seen_ns"] is None or not after:
                    continue
                diffs[node["role"]].append((node["seen_ns"] - after[0]) / 1e6)
                if node["ms_after_leader"] is not None:
                    propagation.append(node["ms_after_leader"])
        print(f"dashboard pid {dash.pid}, {len(nodes)} Redis nodes, {args.probes} probes")
        for role, values in diffs.items():
            if not values:
                continue
            absolute = sorted(abs(v) for v in values)
            p95 = absolute[max(0, int(len(absolute) * 0.95) - 1)]
            print(
                f"probe - observer, {role}s: median {statistics.median(values):+.3f} ms, "
                f"p95 |d| {p95:.3f} ms, max |d| {absolute[-1]:.3f} ms (n={len(values)}) "
                f"-> {'OK' if absolute[-1] <= 5 else 'OVER'} (target <= 5 ms)"
            )
        if propagation:
            print(
                f"follower arrival after the leader (probe): median {statistics.median(propagation):.3f} ms, "
                f"max {max(propagation):.3f} ms"
            )
        acked = [r["acknowledged"] for r in results]
        print(f"WAIT acknowledged: {acked.count(len(nodes) - 1)} of {len(acked)} probes had every follower")
        print(
            f"dashboard CPU at rest, sampling {len(nodes)} nodes at 1 Hz (plus pods tick and lag ticker, no viewer): "
            f"{cpu:.2f} % of one core -> {'OK' if cpu <= 2 else 'OVER'} (target <= 2 %)"
        )
    finally:
        if observer is not None:
            observer.kill()
            observer.wait(timeout=5)
        dash.send_signal(signal.SIGTERM)
        try:
            dash.wait(timeout=15)
        except subprocess.TimeoutExpired:
            dash.kill()
            dash.wait(timeout=5)


if __name__ == "__main__":
    main()
