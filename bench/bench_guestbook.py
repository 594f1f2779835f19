"""Benchmark one guestbook frontend process: wrk throughput/p99 of `cmd=get` with 100 entries, and start time.

Starts a redis-server leader, a replica as follower and one `python -m dashboard.guestbook` on free loopback
ports, fills the key with 100 entries through the frontend's own append, then runs
`wrk -t1 -c10 -d5s --latency` and `-c50` against http://127.0.0.1:PORT/guestbook.php?cmd=get and prints req/s
and p99 for each. Start time is spawn -> `listening on` line, median of 5 starts. Targets only 127.0.0.1 and
stops everything it started, by pid.

    python bench/bench_guestbook.py [--duration 5] [--connections 10,50] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote
from urllib.request import urlopen

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.redis_helpers import RedisProc, free_port, start_redis, wait_until  # noqa: E402

TARGETS = {"rps": 5000.0, "p99_ms_c10": 6.0, "start_s": 0.3}


def spawn_frontend(endpoints: Path, name: str, loop: str = "auto") -> tuple[subprocess.Popen[str], int, float]:
    """Start one frontend; return (process, port, seconds from spawn to its listening line)."""
    port = free_port()
    cmd = [sys.executable, "-m", "dashboard.guestbook", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--endpoints", str(endpoints), "--name", name]
    t0 = time.perf_counter()
    env = {**os.environ, "GUESTBOOK_LOOP": loop}
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - t0
    if not line.startswith("listening on http://127.0.0.1:"):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"frontend did not start: {line!r}")
    return proc, port, elapsed


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def parse_wrk(output: str) -> tuple[float, float]:
    """(requests per second, p99 in ms) from `wrk --latency` output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    if m is None:
        raise RuntimeError(f"no p99 in wrk output:\n{output}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    return rps, float(m.group(1)) * scale


def run_wrk(url: str, connections: int, duration: int) -> tuple[float, float, str]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration + 30).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} error responses:\n{out}")
    rps, p99 = parse_wrk(out)
    return rps, p99, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    parser.add_argument("--connections", default="10,50", help="comma-separated wrk connection counts (10,50)")
    parser.add_argument("--starts", type=int, default=5, help="frontend starts to time (5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--loop", choices=["auto", "asyncio"], default="auto", help="auto = uvloop if installed")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2

    started: list[RedisProc] = []
    procs: list[subprocess.Popen[str]] = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-guestbook-"))
    results: dict[str, Any] = {"loop": args.loop}
    try:
        leader = start_redis()
        started.append(leader)
        follower = start_redis(replicaof=("127.0.0.1", leader.port))
        started.append(follower)
        endpoints = workdir / "endpoints.json"
        endpoints.write_text(
            json.dumps({"redis-leader": [["127.0.0.1", leader.port]], "redis-follower": [["127.0.0.1", follower.port]]})
        )

        start_times = []
        for i in range(args.starts):
            proc, _, elapsed = spawn_frontend(endpoints, f"bench-start-{i}", args.loop)
            stop(proc)
            start_times.append(elapsed)
        results["start_s_median"] = statistics.median(start_times)
        results["start_s_all"] = [round(t, 4) for t in start_times]

        proc, port, _ = spawn_frontend(endpoints, "bench", args.loop)
        procs.append(proc)
        base = f"http://127.0.0.1:{port}/guestbook.php"
        for i in range(100):
            entry = f"Entry {i:03d}: hello from the bench, with a comma and some text to look like a real message"
            with urlopen(f"{base}?cmd=append&value={quote(entry, safe='')}", timeout=5) as resp:
                resp.read()
        value = leader.command("GET", "guestbook")
        wait_until(lambda: follower.command("GET", "guestbook") == value, what="replication of the 100 entries")
        with urlopen(f"{base}?cmd=get", timeout=5) as resp:
            body = json.loads(resp.read())
        assert len(body["entries"]) == 100
        results["get_body_bytes"] = len(json.dumps(body, ensure_ascii=False).encode())

        subprocess.run(["wrk", "-t1", "-c10", "-d1s", f"{base}?cmd=get"], capture_output=True, check=True)  # warm-up
        for c in (int(x) for x in args.connections.split(",")):
            rps, p99, _ = run_wrk(f"{base}?cmd=get", c, args.duration)
            results[f"c{c}"] = {"rps": round(rps), "p99_ms": round(p99, 3)}
    finally:
        for p in procs:
            stop(p)
        for server in reversed(started):
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    if args.json:
        print(json.dumps(results))
        return 0
    print(f"frontend start (spawn -> listening), median of {args.starts}: {results['start_s_median'] * 1000:.0f} ms")
    print(
        f"  all: {', '.join(f'{t * 1000:.0f} ms' for t in start_times)}   target < {TARGETS['start_s'] * 1000:.0f} ms"
    )
    print(f"cmd=get, 100 entries ({results['get_body_bytes']} bytes), wrk -t1 -d{args.duration}s, loop {args.loop}:")
    for key, val in results.items():
        if key.startswith("c") and isinstance(val, dict):
            print(f"  {key:>4}: {val['rps']:>8} req/s   p99 {val['p99_ms']:.2f} ms")
    print(f"  targets: >= {TARGETS['rps']:.0f} req/s at c10 and c50, p99 <= {TARGETS['p99_ms_c10']:.0f} ms at c10")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
