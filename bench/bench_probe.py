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

3. The write load (`POST /api/load`, --load-rate per second for --load-seconds) with the dashboard IN THIS
   PROCESS (`create_app` on uvicorn, on uvloop like `python -m dashboard`), so that its event loop can be watched:
   a callback scheduled every 10 ms records how late it runs (the event-loop lag) while the load runs. Per HTTP
   client library, side by side on the same lab: the product's (aiohttp, `dashboard.probe.FrontendHttp`) and
   httpx with one shared pool (swapped in through `dashboard.probe.open_http`). Reported: entries acknowledged
   and accounted for on every node, lag p50/p99/max, the process's CPU per 1,000 writes, write latency.
   Targets: every entry accounted for, lag p99 <= 50 ms.

Usage: .venv/bin/python bench/bench_probe.py [--probes 30] [--seconds 20] [--load-rate 500] [--load-seconds 30]
       [--only accuracy|load] [--clients aiohttp,httpx]
Stops exactly the processes it started, by pid; every request goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

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
    parser.add_argument("--load-rate", type=int, default=500)
    parser.add_argument("--load-seconds", type=float, default=30.0)
    parser.add_argument("--clients", default="aiohttp,httpx", help="HTTP client libraries to compare in the load")
    parser.add_argument("--only", choices=["accuracy", "load"])
    parser.add_argument(
        "--baseline",
        help="also run the load on the dashboard of this git revision (exported with git archive; its own client)",
    )
    parser.add_argument("--tree", help=argparse.SUPPRESS)  # internal: run the load on the tree at this path
    args = parser.parse_args()
    if args.tree:
        sys.path.insert(0, args.tree)
        os.environ["PYTHONPATH"] = args.tree  # the lab's frontends too
        raise SystemExit(0 if load(args, ["as-is"]) else 1)
    ok = True
    if args.only != "load":
        accuracy(args)
    if args.only != "accuracy" and args.baseline:
        with tempfile.TemporaryDirectory(prefix="bench-probe-baseline-") as tree:
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", args.baseline], capture_output=True, check=True
            )
            subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--only", "load", "--tree", tree]
            cmd += ["--load-rate", str(args.load_rate), "--load-seconds", str(args.load_seconds)]
            print(f"baseline {args.baseline} (its own HTTP client):", flush=True)
            env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
            subprocess.run(cmd, cwd=tree, env=env, timeout=args.load_seconds * 2 + 300, check=False)
    if args.only != "accuracy":
        ok = load(args, [c for c in args.clients.split(",") if c])
    raise SystemExit(0 if ok else 1)


def accuracy(args: argparse.Namespace) -> None:
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


# ------------------------------------------------------------------------------------------------ 3. the load


class HttpxFrontendHttp:
    """httpx with one shared pool, behind the interface of `dashboard.probe.FrontendHttp` (for the comparison)."""

    def __init__(self, connections: int) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self._client = httpx.AsyncClient(timeout=5.0, limits=limits, trust_env=False)

    async def get(self, url: str, params: dict[str, str]) -> tuple[int, bytes]:
        response = await self._client.get(url, params=params)
        return response.status_code, response.content

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> HttpxFrontendHttp:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class LagMeter:
    """How late a callback scheduled every `interval` seconds runs, while `recording`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float = 0.01) -> None:
        self.loop = loop
        self.interval = interval
        self.recording = False
        self.samples: list[float] = []
        self._due = loop.time() + interval
        loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        now = self.loop.time()
        if self.recording:
            self.samples.append((now - self._due) * 1000)
        self._due = now + self.interval
        self.loop.call_at(self._due, self._tick)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def load(args: argparse.Namespace, clients: list[str]) -> bool:
    import dashboard.probe as probe
    from dashboard.cli import settings_from_args
    from dashboard.web import create_app

    port = free_port()
    run_dir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    settings = settings_from_args(["--port", str(port), "--frontend-port", "0", "--run-dir", str(run_dir / "run")])
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    factories: dict[str, Any] = {"aiohttp": getattr(probe, "FrontendHttp", None), "httpx": HttpxFrontendHttp}
    results: dict[str, dict[str, Any]] = {}

    def drive(meter: LagMeter) -> None:
        """The bench's HTTP side, in a thread: the steps, then one load per client library."""
        try:
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0, trust_env=False)
            wait_for(lambda: client.get("/healthz").status_code == 200, 20, "the dashboard")
            for step in ("leader", "followers", "frontend"):
                body = client.post(f"/api/steps/{step}", headers=HX).json()
                assert body["state"] == "done", body
            time.sleep(1.0)
            for name in clients:
                if name != "as-is":
                    probe.open_http = factories[name]
                meter.samples = []
                cpu0 = time.process_time()
                meter.recording = True
                answer = client.post(
                    "/api/load", json={"rate": args.load_rate, "seconds": args.load_seconds}, headers=HX
                )
                run = answer.json()
                assert answer.status_code == 202, run
                deadline = time.monotonic() + args.load_seconds + 60
                while run["state"] in ("running", "checking") and time.monotonic() < deadline:
                    time.sleep(0.5)
                    run = client.get("/api/load").json()
                meter.recording = False
                cpu = time.process_time() - cpu0
                if run["state"] in ("running", "checking"):
                    run["message"] = f"still {run['state']} {args.load_seconds + 60:g} s after the start"
                    client.delete("/api/load", headers=HX)
                results[name] = {"run": run, "lag": list(meter.samples), "cpu_s": cpu}
                time.sleep(1.0)
        finally:
            server.should_exit = True

    async def serve() -> None:
        meter = LagMeter(asyncio.get_running_loop())
        thread = threading.Thread(target=drive, args=(meter,), daemon=True)
        thread.start()
        await server.serve()
        thread.join(timeout=10)

    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(serve())
        else:
            uvloop.run(serve())
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    ok = bool(results)
    print(f"write load {args.load_rate}/s for {args.load_seconds:g} s, dashboard in-process (uvicorn on uvloop):")
    for name, result in results.items():
        run, lag = result["run"], result["lag"]
        complete = run["state"] == "done" and all(n["missing"] == 0 and n["error"] is None for n in run["nodes"])
        good = complete and run["ok"] == run["planned"] and percentile(lag, 0.99) <= 50
        ok = ok and good
        print(
            f"  {name:8} {run['ok']}/{run['planned']} acknowledged, {run['failed']} failed, "
            f"{'every one on every node' if complete else run['message']}; "
            f"loop lag p50 {percentile(lag, 0.5):.1f} ms, p99 {percentile(lag, 0.99):.1f} ms, max {max(lag):.1f} ms; "
            f"CPU {result['cpu_s'] / max(1, run['ok']) * 1e6:.0f} us/write; "
            f"latency avg {run['latency_ms_avg']} ms, max {run['latency_ms_max']} ms -> {'OK' if good else 'OVER'}"
        )
    print("  targets: every entry accounted for, event-loop lag p99 <= 50 ms")
    return ok


if __name__ == "__main__":
    main()
