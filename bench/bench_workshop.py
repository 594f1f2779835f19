"""Workshop mode on the local platform: a room of --learners (default 30) on one dashboard on this machine.

Starts `python -m dashboard --workshop --workshop-profile` as a subprocess on 127.0.0.1 (its own temporary run and
data dirs), opens a room as the instructor, and measures, printing each figure next to its target:

1. joins: --learners API clients join at once (each `POST /join` with the code and a name); the time until every
   one has an answer, and until every learner's lab is provisioned (the grid says `ready`); provisioning at most
   10–20 at once (the dashboard's own peak, from `/api/rooms/<id>`); no answer is a 5xx. Target: all joined and
   provisioned within 60 s, never a 500.
2. the lab for each learner: leader, followers, frontend, expose, through each learner's own session (10 learners
   at a time). Meanwhile Debian's Chromium (Playwright) shows the instructor's grid; a MutationObserver stamps
   `Date.now()` when a learner's row shows one more done step, and the bench compares it with that step's
   `finished_at` (the same clock): instructor grid change → pixels, p95 ≤ 2 s.
3. dashboard CPU (utime+stime of its own pid, /proc/<pid>/stat) during the join burst (≤ 1 core) and in steady state
   with the grid open and nothing happening (≤ 0.25 core), over --steady seconds; RSS of the dashboard and, apart,
   of every process of the labs.

Usage: .venv/bin/python bench/bench_workshop.py [--learners 30] [--steady 20] [--no-browser]
Loopback only; bounded in count and time; stops only what it started. Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-instructor-token"
INSTRUCTOR = {"Authorization": f"Bearer {TOKEN}", "HX-Request": "true"}
STEPS = ("leader", "followers", "frontend", "expose")
CLK_TCK = os.sysconf("SC_CLK_TCK")
CHROMIUM = "/usr/bin/chromium"
OBSERVER_JS = """() => {
  window.__seen = [];
  const count = () => {
    for (const row of document.querySelectorAll('#grid tr[id^="learner-"]')) {
      const n = row.querySelectorAll('td.cell.state-done').length;
      const id = row.id.slice(8);
      const last = window.__last = window.__last || {};
      if ((last[id] || 0) < n) { last[id] = n; window.__seen.push([id, n, Date.now() / 1000]); }
    }
  };
  new MutationObserver(count).observe(document.getElementById('grid'), {childList: true, subtree: true});
  count();
}"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def wait_healthy(base: str, proc: subprocess.Popen[bytes], log: Path, within: float = 30.0) -> httpx.Client:
    """A client of the dashboard at `base` once its /healthz answers 200; exit with its log if it does not."""
    client = httpx.Client(base_url=base, timeout=60.0, trust_env=False)
    deadline = time.monotonic() + within
    while True:
        try:
            if client.get("/healthz").status_code == 200:
                return client
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            client.close()
            raise SystemExit(f"the dashboard did not start:\n{log.read_text()}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the dashboard this bench started (by its pid), SIGKILL it if it lingers past 60 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def report(name: str, value: str, ok: bool, target: str) -> bool:
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {value}  (target {target})", flush=True)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", type=int, default=30)
    parser.add_argument("--steady", type=float, default=20.0)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    learners = max(1, min(args.learners, 100))
    tmp = Path(tempfile.mkdtemp(prefix="bench-workshop-"))
    port = free_port()
    cmd = [sys.executable, "-m", "dashboard", "--workshop", "--workshop-profile", "--port", str(port)]
    cmd += ["--frontend-port", "0", "--run-dir", str(tmp / "run"), "--data-dir", str(tmp / "data")]
    cmd += ["--max-learners", str(learners), "--sample-interval", "0.5"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUESTBOOK_LAB_")}
    env["GUESTBOOK_LAB_TOKEN"] = TOKEN
    log = open(tmp / "dashboard.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    ok = True
    try:
        client = wait_healthy(base, proc, tmp / "dashboard.log")
        room = client.post("/api/rooms", headers=INSTRUCTOR, json={"title": "bench"}).json()

        # 1. the join burst
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()

        def join(i: int) -> tuple[int, dict[str, Any], str]:
            with httpx.Client(base_url=base, timeout=60.0, trust_env=False) as c:
                r = c.post(
                    "/join",
                    headers={"HX-Request": "true"},
                    json={"room": room["id"], "code": room["join_code"], "name": f"Learner {i:03d}"},
                )
                return r.status_code, r.json(), r.headers.get("set-cookie", "").split(";", 1)[0]

        with ThreadPoolExecutor(max_workers=learners) as pool:
            joined = list(pool.map(join, range(learners)))
        joined_s = time.monotonic() - t0
        statuses = sorted({status for status, _, _ in joined})

        def grid() -> dict[str, Any]:
            body: dict[str, Any] = client.get(f"/api/rooms/{room['id']}", headers=INSTRUCTOR).json()
            return body

        while time.monotonic() - t0 < 120:
            rows = grid()["learners"]
            if len(rows) == learners and all(r["provisioning"] != "queued" for r in rows):
                break
            time.sleep(0.2)
        provisioned_s = time.monotonic() - t0
        burst_cpu = (cpu_seconds(proc.pid) - cpu0) / provisioned_s
        state = grid()
        failed = [r for r in state["learners"] if r["provisioning"] != "ready"]
        peak = state.get("provisioning", {}).get("peak")
        ok &= report("joins answered", f"{joined_s:.1f} s, statuses {statuses}", statuses == [200], "all 200")
        ok &= report(
            f"{learners} labs provisioned",
            f"{provisioned_s:.1f} s, {len(failed)} failed",
            provisioned_s <= 60 and not failed,
            "≤ 60 s",
        )
        ok &= report("provisioning at once (peak)", str(peak), peak is not None and peak <= 20, "10–20, queued beyond")
        ok &= report("dashboard CPU during the join burst", f"{burst_cpu:.2f} core", burst_cpu <= 1.0, "≤ 1 core")

        # 2. the lab for every learner, with the instructor's grid in a real browser
        browser_ctx = None
        seen: list[list[Any]] = []
        if not args.no_browser and os.path.exists(CHROMIUM):
            from playwright.sync_api import sync_playwright

            browser_ctx = sync_playwright().start()
            browser = browser_ctx.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(f"{base}/rooms/{room['id']}?token={TOKEN}")
            page.wait_for_selector("#live.open")
            page.evaluate(OBSERVER_JS)
        finished: list[tuple[str, int, float]] = []

        def run_lab(entry: tuple[int, dict[str, Any], str]) -> list[tuple[str, int, float]]:
            _, body, cookie = entry
            done = []
            with httpx.Client(base_url=base, timeout=120.0, trust_env=False) as c:
                for k, step in enumerate(STEPS, start=1):
                    r = c.post(
                        f"/labs/{body['lab']}/api/steps/{step}", headers={"Cookie": cookie, "HX-Request": "true"}
                    )
                    result = r.json()
                    if result.get("state") == "done":
                        done.append((body["lab"], k, float(result["finished_at"])))
            return done

        t1 = time.monotonic()
        with ThreadPoolExecutor(max_workers=10) as pool:
            for done in pool.map(run_lab, joined):
                finished.extend(done)
        lab_s = time.monotonic() - t1
        ok &= report(
            "every learner's lab to done",
            f"{len(finished)}/{learners * len(STEPS)} steps in {lab_s:.1f} s",
            len(finished) == learners * len(STEPS),
            "all steps done",
        )
        if browser_ctx is not None:
            time.sleep(3)
            seen = page.evaluate("window.__seen")
            first_seen = {}
            for lab_id, n, when in seen:
                first_seen.setdefault((lab_id, n), when)
            lags = [max(0.0, first_seen[(lab, k)] - at) for lab, k, at in finished if (lab, k) in first_seen]
            if lags:
                lags.sort()
                p95 = lags[int(0.95 * (len(lags) - 1))]
                ok &= report(
                    "instructor grid change → pixels",
                    f"p50 {statistics.median(lags):.3f} s, p95 {p95:.3f} s over {len(lags)} changes",
                    p95 <= 2.0 and len(lags) == len(finished),
                    "p95 ≤ 2 s, every change seen",
                )
            else:
                ok &= report("instructor grid change → pixels", "no change seen", False, "p95 ≤ 2 s")

        # 3. steady state: grid open, nothing happening
        cpu1, t2 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(max(1.0, min(args.steady, 120.0)))
        steady_cpu = (cpu_seconds(proc.pid) - cpu1) / (time.monotonic() - t2)
        ok &= report("dashboard CPU in steady state", f"{steady_cpu:.3f} core", steady_cpu <= 0.25, "≤ 0.25 core")
        labs_rss = sum(rss_mb(p) for p in descendants(proc.pid) if Path(f"/proc/{p}").exists())
        print(
            f"INFO  RSS: dashboard {rss_mb(proc.pid):.0f} MB; the labs' {len(descendants(proc.pid))} processes "
            f"{labs_rss:.0f} MB ({labs_rss / learners:.0f} MB per learner)",
            flush=True,
        )
        if browser_ctx is not None:
            browser.close()
            browser_ctx.stop()
        client.close()
    finally:
        stop(proc)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
