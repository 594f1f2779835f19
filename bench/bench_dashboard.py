"""End-to-end benchmark of the real dashboard (a subprocess on 127.0.0.1) on the local platform.

Measures, and prints with the issue's targets and PASS/FAIL:

1. click → check green, per step: wall time of `POST /api/steps/{id}` (the step's action AND its check), median of
   --rounds fresh labs (cleanup between rounds, itself timed): leader ≤ 0.3 s, followers (both links up) ≤ 0.5 s,
   frontend ≤ 1 s, the whole lab leader through expose ≤ 1.5 s, cleanup ≤ 0.5 s;
2. change → browser: Debian's Chromium (Playwright, never a downloaded browser) has the page open; an entry is
   appended through the exposed frontend and the time until the replication panel's DOM shows it (a
   MutationObserver stamps Date.now(); same clock as time.time()) is taken, median of --rounds: ≤ 1 s;
3. 1 vs 50 live views: N Server-Sent Events streams on /events, each read continuously, for --seconds while an
   entry is appended every second. Redis commands issued *by the dashboard* per second: every command each Redis
   node executes is seen with MONITOR and attributed to its client connection, and a connection counts only if
   its socket belongs to the dashboard's pid (/proc/net/tcp inode ∈ /proc/<pid>/fd) — so the frontends'
   commands, replication traffic and this script's own connections are excluded exactly. Target: 50 views
   within 10 % of 1 view. Dashboard CPU (utime+stime from /proc/<pid>/stat over wall time): < 1 core. Dashboard
   RSS (VmRSS, and the peak VmHWM, from /proc/<pid>/status): ≤ 150 MB.

Usage: .venv/bin/python bench/bench_dashboard.py [--rounds 5] [--seconds 15] [--views 50] [--no-browser]
Writes nothing into the repository (its run dir is a temp dir, removed at the end); stops only what it started.
Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
HX = {"HX-Request": "true"}
STEPS = ("leader", "followers", "frontend", "expose")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the dashboard subprocess -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            value = predicate()
            if value:
                return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


@dataclass
class Dashboard:
    proc: subprocess.Popen[bytes]
    url: str
    run_dir: Path
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=30, trust_env=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def step(self, step_id: str) -> float:
        started = time.perf_counter()
        r = self.client.post(f"/api/steps/{step_id}", headers=HX)
        took = time.perf_counter() - started
        if r.status_code != 200 or r.json().get("state") != "done":
            raise RuntimeError(f"step {step_id} did not go green: {r.status_code} {r.text[:300]}")
        return took

    def json(self, path: str) -> Any:
        r = self.client.get(path)
        r.raise_for_status()
        return r.json()

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_dashboard(run_dir: Path, sample_interval: float | None) -> Dashboard:
    port = free_port()
    cmd = [sys.executable, "-m", "dashboard", "--port", str(port), "--frontend-port", "0", "--run-dir", str(run_dir)]
    if sample_interval:
        cmd += ["--sample-interval", str(sample_interval)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUESTBOOK_LAB_")}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    dash = Dashboard(proc, f"http://127.0.0.1:{port}", run_dir)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise SystemExit(f"the dashboard exited with {proc.returncode} at start")
        return httpx.get(dash.url + "/healthz", timeout=1, trust_env=False).status_code == 200

    poll(healthy, 20, "the dashboard's /healthz")
    return dash


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime (fields 14, 15)


def memory_mb(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


# -- 1. click → check green -----------------------------------------------------------------------------------------


def bench_steps(dash: Dashboard, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {s: [] for s in (*STEPS, "whole lab", "cleanup")}
    for _ in range(rounds):
        total = 0.0
        for step_id in STEPS:
            took = dash.step(step_id)
            times[step_id].append(took)
            total += took
        times["whole lab"].append(total)
        times["cleanup"].append(dash.step("cleanup"))
        if dash.json("/api/pods"):
            raise RuntimeError("pods left after cleanup")
    return times


# -- 2. change → browser ----------------------------------------------------------------------------------------------

OBSERVE_JS = """([entry, names]) => {
  window.__first = null; window.__all = null;
  const shown = (name) => {
    const node = document.querySelector(`#replication .node[data-node="${CSS.escape(name)}"]`);
    return node !== null && [...node.querySelectorAll('li')].some(li => li.textContent === entry);
  };
  const check = () => {
    const now = Date.now();
    if (window.__first === null && names.some(shown)) window.__first = now;
    if (window.__all === null && names.every(shown)) { window.__all = now; observer.disconnect(); }
  };
  const observer = new MutationObserver(check);
  observer.observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def bench_browser(dash: Dashboard, rounds: int) -> tuple[list[float], list[float]]:
    from playwright.sync_api import sync_playwright

    for step_id in STEPS:
        dash.step(step_id)
    frontend = dash.json("/api/lab")["frontend_url"].rstrip("/")
    rep = dash.json("/api/replication")
    names = [rep["leader"]["name"], *(f["name"] for f in rep["followers"])]
    first: list[float] = []
    everywhere: list[float] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(dash.url + "/")
        page.wait_for_selector("#live.open", timeout=10_000)
        page.wait_for_selector("#replication .sync.yes", timeout=10_000)
        with httpx.Client(timeout=5, trust_env=False) as client:
            for i in range(rounds):
                entry = f"bench entry {i}, with & # + 😀"
                page.evaluate(OBSERVE_JS, [entry, names])
                written = time.time()
                r = client.get(f"{frontend}/guestbook.php", params={"cmd": "append", "value": entry})
                r.raise_for_status()
                page.wait_for_function("() => window.__all !== null", timeout=10_000)
                first.append(page.evaluate("window.__first") / 1000 - written)
                everywhere.append(page.evaluate("window.__all") / 1000 - written)
        browser.close()
    dash.step("cleanup")
    return first, everywhere


# -- 3. 1 vs N live views -------------------------------------------------------------------------------------------

MONITOR_LINE = re.compile(rb'^\+\d+\.\d+ \[\d+ ([^\]]+)\] "([^"]+)"')


class Monitor(threading.Thread):
    """Counts, per client address and command, every command a Redis node executes (MONITOR)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(b"MONITOR\r\n")
        self.reader = self.sock.makefile("rb")
        if not self.reader.readline().startswith(b"+OK"):
            raise RuntimeError(f"MONITOR refused on {port}")
        self.counts: Counter[tuple[str, str]] = Counter()
        self.counting = False
        self.sock.settimeout(None)

    def run(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in self.reader:
                match = MONITOR_LINE.match(line)
                if match and self.counting:
                    self.counts[(match.group(1).decode(), match.group(2).decode().lower())] += 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def local_port_inodes() -> dict[int, str]:
    """Local TCP port -> socket inode, for every loopback IPv4 socket."""
    out = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        address, port = parts[1].split(":")
        if address == "0100007F":
            out[int(port, 16)] = parts[9]
    return out


def dashboard_addresses(pid: int) -> set[str]:
    """'127.0.0.1:<port>' of every TCP connection the dashboard process holds (as Redis names its clients)."""
    mine = socket_inodes(pid)
    return {f"127.0.0.1:{port}" for port, inode in local_port_inodes().items() if inode in mine}


async def open_views(url: str, n: int, stop: asyncio.Event, received: list[int]) -> list[asyncio.Task[None]]:
    started = [asyncio.Event() for _ in range(n)]

    async def view(i: int) -> None:
        async with (
            httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(5, read=None), trust_env=False) as client,
            client.stream("GET", "/events", headers={"Accept": "text/event-stream"}) as response,
        ):
            async for chunk in response.aiter_bytes():
                received[i] += chunk.count(b"event: ")
                started[i].set()
                if stop.is_set():
                    return

    tasks = [asyncio.create_task(view(i)) for i in range(n)]
    deadline = time.monotonic() + 20
    for event in started:
        await asyncio.wait_for(event.wait(), max(0.1, deadline - time.monotonic()))
    return tasks


async def measure_views(dash: Dashboard, n: int, seconds: float) -> dict[str, Any]:
    rep = dash.json("/api/replication")
    nodes = {rep["leader"]["name"]: None, **{f["name"]: None for f in rep["followers"]}}
    ports = {p["name"]: int(p["ip"].rsplit(":", 1)[1]) for p in dash.json("/api/pods") if p["name"] in nodes}
    frontend = dash.json("/api/lab")["frontend_url"].rstrip("/")
    stop = asyncio.Event()
    received = [0] * n
    tasks = await open_views(dash.url, n, stop, received)
    monitors = [Monitor(port) for port in ports.values()]
    for monitor in monitors:
        monitor.start()
    owners = dashboard_addresses(dash.pid)
    for monitor in monitors:
        monitor.counting = True
    cpu0, wall0 = cpu_seconds(dash.pid), time.monotonic()
    received_before = list(received)
    rss_max = 0.0
    async with httpx.AsyncClient(timeout=5, trust_env=False) as writer:
        for i in range(int(seconds)):
            tick = wall0 + i + 1
            r = await writer.get(f"{frontend}/guestbook.php", params={"cmd": "append", "value": f"live {n} #{i}"})
            r.raise_for_status()
            rss_max = max(rss_max, memory_mb(dash.pid)["VmRSS"])
            await asyncio.sleep(max(0.0, tick - time.monotonic()))  # the measurement window, 1 s per write
    for monitor in monitors:
        monitor.counting = False
    wall = time.monotonic() - wall0
    cpu = cpu_seconds(dash.pid) - cpu0
    memory = memory_mb(dash.pid)
    owners |= dashboard_addresses(dash.pid)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for monitor in monitors:
        monitor.close()
    by_command: Counter[str] = Counter()
    others = 0
    for monitor in monitors:
        for (addr, command), count in monitor.counts.items():
            if addr in owners:
                by_command[command] += count
            else:
                others += count
    events = [after - before for after, before in zip(received, received_before, strict=True)]
    return {
        "views": n,
        "commands_per_s": sum(by_command.values()) / wall,
        "by_command": dict(by_command),
        "other_clients_per_s": others / wall,
        "cpu_cores": cpu / wall,
        "rss_mb": max(rss_max, memory["VmRSS"]),
        "hwm_mb": memory["VmHWM"],
        "events_per_view_min": min(events),
        "wall": wall,
    }


def bench_views(dash: Dashboard, views: int, seconds: float) -> list[dict[str, Any]]:
    for step_id in STEPS:
        dash.step(step_id)
    results = [asyncio.run(measure_views(dash, n, seconds)) for n in (1, views)]
    dash.step("cleanup")
    return results


# -- the report ---------------------------------------------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, bool]] = []

    def add(self, what: str, value: str, target: str, ok: bool) -> None:
        self.rows.append((what, value, target, ok))

    def print(self) -> bool:
        width = max(len(r[0]) for r in self.rows)
        vwidth = max(len(r[1]) for r in self.rows)
        twidth = max(len(r[2]) for r in self.rows)
        print(f"\n{'measure':<{width}}  {'measured':>{vwidth}}  {'target':<{twidth}}  result")
        print("-" * (width + vwidth + twidth + 12))
        for what, value, target, ok in self.rows:
            print(f"{what:<{width}}  {value:>{vwidth}}  {target:<{twidth}}  {'PASS' if ok else 'FAIL'}")
        return all(r[3] for r in self.rows)


def seconds_row(report: Report, name: str, samples: list[float], limit: float) -> None:
    median = statistics.median(samples)
    spread = f"(min {min(samples):.3f}, max {max(samples):.3f})"
    report.add(f"{name}, median of {len(samples)} {spread}", f"{median:.3f} s", f"≤ {limit:g} s", median <= limit)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="fresh labs / writes to take the median of")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each live-views window")
    parser.add_argument("--views", type=int, default=50, help="live views to compare with one")
    parser.add_argument("--sample-interval", type=float, default=None, help="dashboard's (default: its own, 0.5)")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium measurement")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        print("redis-server is not installed (apt-get install redis-server)", file=sys.stderr)
        return 2
    use_browser = not args.no_browser and os.path.exists(CHROMIUM)
    if not args.no_browser and not use_browser:
        print(f"{CHROMIUM} is missing: skipping change → browser (apt-get install chromium)", file=sys.stderr)
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

    run_root = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    dash = start_dashboard(run_root / "run", args.sample_interval)
    report = Report()
    try:
        print(f"dashboard pid {dash.pid} at {dash.url}, {os.cpu_count()} CPU(s)", flush=True)
        times = bench_steps(dash, args.rounds)
        limits = {"leader": 0.3, "followers": 0.5, "frontend": 1.0, "expose": None, "whole lab": 1.5, "cleanup": 0.5}
        for name, samples in times.items():
            limit = limits[name]
            if limit is None:
                median = statistics.median(samples)
                report.add(f"{name}, median of {len(samples)}", f"{median:.3f} s", "(in the whole lab)", True)
            else:
                label = "whole lab (leader → expose)" if name == "whole lab" else f"click → green: {name}"
                seconds_row(report, label, samples, limit)
        print("steps measured", flush=True)
        if use_browser:
            first, everywhere = bench_browser(dash, args.rounds)
            seconds_row(report, "change → browser: entry on the leader", first, 1.0)
            seconds_row(report, "change → browser: entry on all 3 nodes", everywhere, 1.0)
            print("browser measured", flush=True)
        one, many = bench_views(dash, args.views, args.seconds)
        for result in (one, many):
            n = result["views"]
            commands = ", ".join(f"{k} {v / result['wall']:.1f}/s" for k, v in sorted(result["by_command"].items()))
            print(
                f"{n:>3} view(s): dashboard → Redis {result['commands_per_s']:.1f} cmd/s ({commands}); other clients "
                f"{result['other_clients_per_s']:.1f} cmd/s; ≥ {result['events_per_view_min']} events per view"
            )
            report.add(
                f"dashboard CPU, {n} view(s)", f"{result['cpu_cores']:.3f} cores", "< 1 core", result["cpu_cores"] < 1
            )
            rss_ok = result["rss_mb"] <= 150 and result["hwm_mb"] <= 150
            report.add(
                f"dashboard RSS (peak VmHWM {result['hwm_mb']:.0f} MB), {n} view(s)",
                f"{result['rss_mb']:.0f} MB",
                "≤ 150 MB",
                rss_ok,
            )
            live_ok = result["events_per_view_min"] >= args.seconds / 2
            report.add(
                f"events received per view, {n} view(s) (min)", str(result["events_per_view_min"]), "live", live_ok
            )
        for result in (one, many):
            report.add(
                f"Redis cmd/s by the dashboard, {result['views']} view(s)", f"{result['commands_per_s']:.1f}", "", True
            )
        change = (many["commands_per_s"] - one["commands_per_s"]) / max(one["commands_per_s"], 1e-9)
        report.add(f"Redis cmd/s, {args.views} views vs 1", f"{change * 100:+.1f} %", "within 10 %", abs(change) <= 0.1)
    finally:
        dash.stop()
        shutil.rmtree(run_root, ignore_errors=True)
    ok = report.print()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
