"""Benchmark the guestbook frontend process: wrk throughput/p99 of `cmd=get` with 100 entries, RSS, start time.

Starts a redis-server leader, a replica as follower and `python -m dashboard.guestbook` on free loopback ports,
fills the key with 100 entries through the frontend's own append, then runs `wrk -t1 -cN -dD --latency`
against http://127.0.0.1:PORT/guestbook.php?cmd=get for each connection count, `--rounds` times, and reports the
median req/s and p99 of the rounds. With `--baseline REV` (for example `main`), the frontend of that git revision
(exported with `git archive` into a temporary directory; the checkout is not touched) runs beside this one on the
same Redis, and the rounds alternate between the two, so old and new are measured side by side under the same
machine load. After the wrk rounds:
- RSS of each frontend (VmRSS; VmHWM is the peak) from /proc/<pid>/status;
- a client that pipelines 100 `cmd=get`s on a 1 MiB guestbook and reads nothing for 3 s: the frontend's RSS then
  (a server without flow control buffers every answer);
- start time, spawn -> `listening on` line, median of --starts.
Targets (for this checkout): >= 10,000 req/s at 10 and at 50 connections, p99 <= 6 ms at 10, RSS <= 60 MB after
the run. Prints PASS/FAIL and exits 1 when a target is missed. Targets only 127.0.0.1 and stops everything it
started, by pid.

    python bench/bench_guestbook.py [--duration 5] [--connections 10,50] [--rounds 3] [--baseline main] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote
from urllib.request import urlopen

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.redis_helpers import RedisProc, free_port, start_redis, wait_until  # noqa: E402

TARGETS = {"rps_c10": 10_000.0, "rps_c50": 10_000.0, "p99_ms_c10": 6.0, "rss_mb": 60.0}
PIPELINED = 100


def spawn_frontend(
    endpoints: Path, name: str, loop: str = "auto", root: Path = REPO
) -> tuple[subprocess.Popen[str], int, float]:
    """Start one frontend from the tree at `root`; return (process, port, seconds from spawn to its listening line)."""
    port = free_port()
    cmd = [sys.executable, "-m", "dashboard.guestbook", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--endpoints", str(endpoints), "--name", name]
    t0 = time.perf_counter()
    env = {**os.environ, "GUESTBOOK_LOOP": loop, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - t0
    if not line.startswith("listening on http://127.0.0.1:"):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"frontend did not start: {line!r}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain its log: never block on a full pipe
    return proc, port, elapsed


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of `pid` in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def parse_wrk(output: str) -> tuple[float, float]:
    """(requests per second, p99 in ms) from `wrk --latency` output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    if m is None:
        raise RuntimeError(f"no p99 in wrk output:\n{output}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    return rps, float(m.group(1)) * scale


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, connections: int, duration: int, pid: int) -> tuple[float, float, float]:
    """(req/s, p99 ms, the frontend's CPU microseconds per request: steadier than req/s on a busy machine)."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url]
    before = cpu_seconds(pid)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration + 30).stdout
    cpu = cpu_seconds(pid) - before
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} error responses:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps, p99 = parse_wrk(out)
    return rps, p99, cpu / max(1, requests) * 1e6


def pipelined_unread_rss(port: int, pid: int, seconds: float = 3.0) -> float:
    """Send PIPELINED requests at once, read nothing for `seconds`, return the frontend's highest RSS meanwhile."""
    request = b"GET /guestbook.php?cmd=get HTTP/1.1\r\nHost: bench\r\n\r\n"
    peak = 0.0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(request * PIPELINED)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            peak = max(peak, rss_mb(pid)[0])
            time.sleep(0.1)
    return peak


def export_revision(rev: str, into: Path) -> Path:
    """The `dashboard` package of git revision `rev`, exported into `into` (the checkout is not touched)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "dashboard"], capture_output=True, check=True, timeout=60
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True, timeout=60)
    return into


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    parser.add_argument("--connections", default="10,50", help="comma-separated wrk connection counts (10,50)")
    parser.add_argument("--rounds", type=int, default=3, help="wrk rounds per variant and connection count (3)")
    parser.add_argument("--starts", type=int, default=5, help="frontend starts to time (5)")
    parser.add_argument("--baseline", help="also measure the frontend of this git revision, side by side")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--loop", choices=["auto", "asyncio"], default="auto", help="auto = uvloop if installed")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    counts = [int(x) for x in args.connections.split(",")]

    started: list[RedisProc] = []
    procs: list[subprocess.Popen[str]] = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-guestbook-"))
    roots = {"new": REPO}
    if args.baseline:
        roots = {"old": export_revision(args.baseline, Path(tempfile.mkdtemp(dir=workdir))), **roots}
    results: dict[str, Any] = {"loop": args.loop, "baseline": args.baseline, "variants": {}}
    try:
        leader = start_redis()
        started.append(leader)
        follower = start_redis(replicaof=("127.0.0.1", leader.port))
        started.append(follower)
        endpoints = workdir / "endpoints.json"
        endpoints.write_text(
            json.dumps({"redis-leader": [["127.0.0.1", leader.port]], "redis-follower": [["127.0.0.1", follower.port]]})
        )
        fronts: dict[str, tuple[subprocess.Popen[str], int]] = {}
        for variant, root in roots.items():
            times = []
            for i in range(args.starts):
                proc, _, elapsed = spawn_frontend(endpoints, f"bench-start-{i}", args.loop, root)
                stop(proc)
                times.append(elapsed)
            results["variants"][variant] = {"start_s_median": round(statistics.median(times), 4)}
            proc, port, _ = spawn_frontend(endpoints, f"bench-{variant}", args.loop, root)
            procs.append(proc)
            fronts[variant] = (proc, port)

        base = f"http://127.0.0.1:{fronts['new'][1]}/guestbook.php"
        for i in range(100):
            entry = f"Entry {i:03d}: hello from the bench, with a comma and some text to look like a real message"
            with urlopen(f"{base}?cmd=append&value={quote(entry, safe='')}", timeout=5) as resp:
                resp.read()
        value = leader.command("GET", "guestbook")
        wait_until(lambda: follower.command("GET", "guestbook") == value, what="replication of the 100 entries")
        for variant, (_, port) in fronts.items():
            with urlopen(f"http://127.0.0.1:{port}/guestbook.php?cmd=get", timeout=5) as resp:
                body = json.loads(resp.read())
            assert len(body["entries"]) == 100, variant
            results["get_body_bytes"] = len(json.dumps(body, ensure_ascii=False).encode())
            url = f"http://127.0.0.1:{port}/guestbook.php?cmd=get"
            subprocess.run(["wrk", "-t1", "-c10", "-d1s", url], capture_output=True, check=True, timeout=30)  # warm

        samples: dict[str, dict[int, list[tuple[float, float, float]]]] = {v: {c: [] for c in counts} for v in fronts}
        for _ in range(args.rounds):
            for c in counts:
                for variant, (proc, port) in fronts.items():
                    url = f"http://127.0.0.1:{port}/guestbook.php?cmd=get"
                    samples[variant][c].append(run_wrk(url, c, args.duration, proc.pid))
        for variant, (proc, _) in fronts.items():
            out = results["variants"][variant]
            for c in counts:
                rounds = samples[variant][c]
                out[f"c{c}"] = {
                    "rps": round(statistics.median(r for r, _, _ in rounds)),
                    "p99_ms": round(statistics.median(p for _, p, _ in rounds), 3),
                    "cpu_us_per_request": round(statistics.median(u for _, _, u in rounds), 1),
                    "rounds": [[round(r), round(p, 3), round(u, 1)] for r, p, u in rounds],
                }
            rss, hwm = rss_mb(proc.pid)
            out["rss_mb_after"] = round(rss, 1)
            out["hwm_mb"] = round(hwm, 1)

        big = b",".join(b"%04d " % i + b"x" * 1019 for i in range(1024))[: 1024 * 1024]  # 1 MiB of entries
        leader.command("SET", "guestbook", big)
        wait_until(lambda: follower.command("STRLEN", "guestbook") == len(big), what="replication of 1 MiB")
        for variant, (proc, port) in fronts.items():
            before = rss_mb(proc.pid)[0]
            peak = pipelined_unread_rss(port, proc.pid)
            results["variants"][variant]["pipelined_unread"] = {
                "rss_mb_before": round(before, 1),
                "rss_mb_peak": round(peak, 1),
            }
    finally:
        for p in procs:
            stop(p)
        for server in reversed(started):
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    new = results["variants"]["new"]
    checks = []
    if 10 in counts:
        checks.append(("c10 req/s", new["c10"]["rps"], new["c10"]["rps"] >= TARGETS["rps_c10"], ">= 10,000"))
        checks.append(("c10 p99 ms", new["c10"]["p99_ms"], new["c10"]["p99_ms"] <= TARGETS["p99_ms_c10"], "<= 6"))
    if 50 in counts:
        checks.append(("c50 req/s", new["c50"]["rps"], new["c50"]["rps"] >= TARGETS["rps_c50"], ">= 10,000"))
    checks.append(("RSS MB after", new["rss_mb_after"], new["rss_mb_after"] <= TARGETS["rss_mb"], "<= 60"))
    results["pass"] = all(ok for _, _, ok, _ in checks)
    if args.json:
        print(json.dumps(results))
        return 0 if results["pass"] else 1
    names = list(results["variants"])
    print(
        f"cmd=get, 100 entries ({results['get_body_bytes']} bytes), wrk -t1 -d{args.duration}s, median of "
        f"{args.rounds} alternating rounds, loop {args.loop}" + (f"; old = {args.baseline}" if args.baseline else "")
    )
    v = results["variants"]
    rows: list[tuple[str, list[str]]] = []
    for c in counts:
        rows.append((f"c{c} req/s", [str(v[n][f"c{c}"]["rps"]) for n in names]))
        rows.append((f"c{c} p99 ms", [f"{v[n][f'c{c}']['p99_ms']:.2f}" for n in names]))
        rows.append((f"c{c} CPU us/request", [f"{v[n][f'c{c}']['cpu_us_per_request']:.0f}" for n in names]))
        rows.append((f"c{c} req/s per round", [",".join(str(r[0]) for r in v[n][f"c{c}"]["rounds"]) for n in names]))
    rows.append(("RSS after (peak) MB", [f"{v[n]['rss_mb_after']:.1f} ({v[n]['hwm_mb']:.1f})" for n in names]))
    rows.append(
        (
            f"{PIPELINED} pipelined unread, MB",
            [
                f"{v[n]['pipelined_unread']['rss_mb_before']:.1f} -> {v[n]['pipelined_unread']['rss_mb_peak']:.1f}"
                for n in names
            ],
        )
    )
    rows.append(("start (median) ms", [f"{v[n]['start_s_median'] * 1000:.0f}" for n in names]))
    print(f"{'':24}" + "".join(f"{n:>32}" for n in names))
    for label, cells in rows:
        print(f"{label:24}" + "".join(f"{cell:>32}" for cell in cells))
    for name, value, ok, target in checks:
        print(f"  new {name:<14} {value:>10}  target {target:<10} {'PASS' if ok else 'FAIL'}")
    return 0 if results["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
