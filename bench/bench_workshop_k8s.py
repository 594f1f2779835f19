"""Workshop mode on Kubernetes: a room of --learners (default 100) on one dashboard, against the Kubernetes API double.

The API server is `RoomDouble` (tests/k8s_double/room.py) in this process on 127.0.0.1, with a `LoopbackKubelet`
behind its pods: each redis pod is a real `redis-server` on loopback, each frontend pod the project's real Python
guestbook frontend, reached through the double's pods/portforward WebSocket. Every learner namespace has Services
of its own (its followers replicate from its own leader, its frontend uses its own Redis). The dashboard is a
subprocess, `python -m dashboard --workshop --workshop-profile --platform kubernetes --kubeconfig <the double's
kubeconfig> --redis-access port-forward`, so its CPU and RSS are its own pid's. The bench opens rooms as the
instructor and measures, printing each figure next to its target:

1. watches: a room of 1 learner, then the big room of --learners; the watch requests the double received since each
   room opened (by path), 1 s after its labs are provisioned. Target: the same for both (the room's two
   cluster-wide watches, pods and events), never a watch per learner namespace, and by the end only those paths
   again (each watch is renewed when the server ends it after timeoutSeconds, ~290 s).
2. joins: --learners API clients join the big room at once (`POST /join`); the time until every one has an answer
   and until every learner's lab is provisioned (namespace, isolation, the lab's platform started), provisioning at
   most 10–20 at once (the dashboard's own peak, from `/api/rooms/<id>`, and the most learners' namespaces the double
   saw between their first and last Namespace/isolation request), never a 5xx. Target: all within 60 s.
   Dashboard CPU (utime+stime of its pid) over the burst: ≤ 1 core.
3. the lab: the whole lab for every learner, 10 learners at a time, each through its own session cookie: leader,
   followers (both `master_link_status:up` to that learner's leader), frontend (the workshop profile: applied, then
   scaled to 1 replica), expose (a port-forward). Reported: the time until every lab is done (the bench's own bound,
   ≤ 300 s: the issue sets none), click → green per step (p50/p95/max), every learner's grid row showing all steps
   done (in the SSE stream and in `/api/rooms/<id>`), and each learner's guestbook on its own Redis (an entry
   appended through every exposed frontend; each frontend then shows exactly its own). Instructor grid change →
   SSE frame: the bench keeps the room's `/rooms/<id>/events` open as the instructor's page does and stamps the
   arrival of each `grid` event; the lag of a step is the first frame whose row shows it done minus that step's
   `finished_at` from its JSON (the same machine's clock). Target: p95 ≤ 2 s. This is to the SSE frame, not to
   pixels: pixels are measured by bench/bench_workshop.py on the local platform.
4. steady state (--steady seconds, default 20, the grid's stream open, every lab running, its sampler reading its
   three Redis nodes, no learner page open): dashboard CPU ≤ 0.25 core; the requests the double received in the
   window, by verb, per learner per minute. Target: no LIST and ≈ 0 (≤ 0.1) per learner per minute
   (watch-driven). RSS of the dashboard, and apart of this process (the double and its kubelet) and of the
   redis-servers and frontends behind the pods.
5. unless --no-cleanup: the cleanup step of every lab, 10 at a time; nothing left running behind the pods.

A run on this 2-core machine: see bench/README.md.

Usage: .venv/bin/python bench/bench_workshop_k8s.py [--learners 100] [--steady 20] [--sample-interval S] [--no-cleanup]
Loopback only; bounded in count and time; stops only what it started. Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_workshop import cpu_seconds, descendants, free_port, report, rss_mb, stop, wait_healthy
from tests.k8s_double import LoopbackKubelet, RoomDouble

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-instructor-token"
INSTRUCTOR = {"Authorization": f"Bearer {TOKEN}", "HX-Request": "true"}
STEPS = ("leader", "followers", "frontend", "expose")  # the lab, as the grid's columns (cleanup is not one)
LAB_LIMIT_S = 300.0  # the bench's own bound for 100 labs, 10 at a time (the issue sets no target for it)
ROW = re.compile(r'<tr id="learner-([^"]+)">(.*?)</tr>', re.S)


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class GridStream:
    """The instructor's `/rooms/<id>/events` in a thread: when each learner's row first showed each step done,
    and its whole row done (every step ✓ and "✓ done" in its On step column)."""

    def __init__(self, base: str, room: str) -> None:
        self.seen: dict[tuple[str, int], float] = {}  # (learner, step index) -> arrival (time.time()) of the first
        self.all_done: dict[str, float] = {}  # frame with that step done; learner -> first frame with the row done
        self.frames = 0
        self._client = httpx.Client(base_url=base, timeout=httpx.Timeout(60.0), trust_env=False)
        self._url = f"/rooms/{room}/events"
        self._open = threading.Event()
        self._thread = threading.Thread(target=self._read, name="grid-sse", daemon=True)
        self._thread.start()
        if not self._open.wait(10):
            raise SystemExit("the room's SSE stream did not open in 10 s")

    def _read(self) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/event-stream"}
        try:
            with self._client.stream("GET", self._url, headers=headers) as response:
                self._open.set()
                event, data = "", []
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
                    elif not line:
                        if event == "grid":
                            self._frame(time.time(), "\n".join(data))
                        event, data = "", []
        except httpx.HTTPError:
            pass  # closed by close(), or the dashboard went away

    def _frame(self, when: float, html: str) -> None:
        self.frames += 1
        for learner, row in ROW.findall(html):
            cells = re.findall(r'<td class="cell state-(\w+)"', row)  # the steps' cells, in the order of STEPS
            for k, state in enumerate(cells[: len(STEPS)]):
                if state == "done":
                    self.seen.setdefault((learner, k), when)
            if len(cells) >= len(STEPS) and all(c == "done" for c in cells[: len(STEPS)]) and "✓ done" in row:
                self.all_done.setdefault(learner, when)

    def close(self) -> None:
        self._client.close()
        self._thread.join(timeout=5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", type=int, default=100)
    parser.add_argument("--steady", type=float, default=20.0)
    parser.add_argument("--sample-interval", type=float, default=None, help="the dashboard's (default: its own)")
    parser.add_argument("--no-cleanup", action="store_true", help="leave the labs running at the end")
    args = parser.parse_args()
    learners = max(1, min(args.learners, 100))
    steady_s = max(1.0, min(args.steady, 60.0))
    tmp = Path(tempfile.mkdtemp(prefix="bench-workshop-k8s-"))
    (tmp / "pods").mkdir()
    kubelet = LoopbackKubelet(tmp / "pods")  # real redis-servers and guestbook frontends behind the pods
    double = RoomDouble(pod_grace=0.1, kubelet=kubelet)
    double.start()
    kubeconfig = double.write_kubeconfig(tmp / "kubeconfig")
    port = free_port()
    cmd = [sys.executable, "-m", "dashboard", "--workshop", "--workshop-profile", "--port", str(port)]
    cmd += ["--platform", "kubernetes", "--kubeconfig", str(kubeconfig), "--namespace", "guestbook"]
    cmd += ["--redis-access", "port-forward", "--frontend-port", "0", "--step-timeout", "60"]
    if args.sample_interval is not None:
        cmd += ["--sample-interval", str(args.sample_interval)]
    cmd += ["--run-dir", str(tmp / "run"), "--data-dir", str(tmp / "data"), "--max-learners", str(learners)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUESTBOOK_LAB_") and k != "KUBECONFIG"}
    env["GUESTBOOK_LAB_TOKEN"] = TOKEN
    log = open(tmp / "dashboard.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    ok = True
    stream: GridStream | None = None

    def watch_paths(since: int) -> list[str]:
        with double.lock:
            return sorted(path for _, verb, path in double.requests[since:] if verb == "watch")

    def mark() -> int:
        with double.lock:
            return len(double.requests)

    try:
        client = wait_healthy(base, proc, tmp / "dashboard.log")

        def open_room(title: str) -> dict[str, Any]:
            body: dict[str, Any] = client.post("/api/rooms", headers=INSTRUCTOR, json={"title": title}).json()
            return body

        def grid(room: dict[str, Any]) -> dict[str, Any]:
            body: dict[str, Any] = client.get(f"/api/rooms/{room['id']}", headers=INSTRUCTOR).json()
            return body

        def join(room: dict[str, Any], i: int) -> tuple[int, dict[str, Any], str]:
            with httpx.Client(base_url=base, timeout=60.0, trust_env=False) as c:
                r = c.post(
                    "/join",
                    headers={"HX-Request": "true"},
                    json={"room": room["id"], "code": room["join_code"], "name": f"Learner {i:03d}"},
                )
                body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
                return r.status_code, body, r.headers.get("set-cookie", "").split(";", 1)[0]

        def provisioned(room: dict[str, Any], count: int, limit: float) -> float:
            start = time.monotonic()
            while time.monotonic() - start < limit:
                rows = grid(room)["learners"]
                if len(rows) == count and all(r["provisioning"] != "queued" for r in rows):
                    break
                time.sleep(0.2)
            return time.monotonic() - start

        # 1a. a room of one learner: the watches it opens
        before_solo = mark()
        solo = open_room("bench, 1 learner")
        solo_join = join(solo, 0)
        provisioned(solo, 1, 30)
        time.sleep(1.0)  # room for any further watch a learner would (wrongly) open
        solo_watches = watch_paths(before_solo)

        # 2. the join burst into the big room, its grid's SSE stream open
        room = open_room("bench")
        stream = GridStream(base, room["id"])
        before_room = mark()
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        with ThreadPoolExecutor(max_workers=learners) as pool:
            joined = list(pool.map(lambda i: join(room, i), range(learners)))
        joined_s = time.monotonic() - t0
        statuses = sorted({status for status, _, _ in joined})
        provisioned(room, learners, 120)
        provisioned_s = time.monotonic() - t0
        burst_cpu = (cpu_seconds(proc.pid) - cpu0) / provisioned_s
        state = grid(room)
        failed = [r for r in state["learners"] if r["provisioning"] != "ready"]
        peak = state.get("provisioning", {}).get("peak")
        time.sleep(1.0)  # as for the solo room
        room_watches = watch_paths(before_room)
        ok &= report("joins answered", f"{joined_s:.1f} s, statuses {statuses}", statuses == [200], "all 200")
        ok &= report(
            f"{learners} labs provisioned",
            f"{provisioned_s:.1f} s, {len(failed)} failed",
            provisioned_s <= 60 and not failed and len(state["learners"]) == learners,
            "≤ 60 s",
        )
        ok &= report("dashboard CPU during the join burst", f"{burst_cpu:.2f} core", burst_cpu <= 1.0, "≤ 1 core")
        with double.lock:
            spans: dict[str, list[float]] = {}
            for when, namespace in double.provisioned:
                if namespace.startswith(f"{room['id']}-"):
                    spans.setdefault(namespace, []).append(when)
        edges = sorted(e for times in spans.values() for e in ((min(times), 1), (max(times), -1)))
        overlap = max(itertools.accumulate(step for _, step in edges), default=0)
        ok &= report(
            "provisioning at once (peak)",
            f"{peak} in the workshop's queue; {overlap} as the API server saw it (learners' namespaces between their "
            f"first and last Namespace/isolation request)",
            peak is not None and peak <= 20 and overlap <= 20,
            "10–20, queued beyond",
        )
        if overlap <= 1 < learners:
            print(
                "NOTE  the API server saw the labs provisioned one after another: something serialises "
                "LabRegistry.open (dashboard/session.py) beyond the workshop's own queue",
                flush=True,
            )
        if failed:
            print(f"INFO  first failure: {failed[0]['id']}: {failed[0]['provisioning']}", flush=True)

        # 3. the whole lab for every learner, 10 at a time, each through its own session cookie
        def run_lab(entry: tuple[int, dict[str, Any], str]) -> list[tuple[str, int, str, float | None, float, str]]:
            """(lab, step index, state, finished_at, click → answer in s, message) of each step, in order."""
            _, body, cookie = entry
            if "lab" not in body:
                return [("", 0, "no lab", None, 0.0, "the join failed")]
            out: list[tuple[str, int, str, float | None, float, str]] = []
            with httpx.Client(base_url=base, timeout=120.0, trust_env=False) as c:
                for k, step in enumerate(STEPS):
                    began = time.monotonic()
                    try:
                        r = c.post(
                            f"/labs/{body['lab']}/api/steps/{step}", headers={"Cookie": cookie, "HX-Request": "true"}
                        )
                        result = r.json()
                    except (httpx.HTTPError, ValueError) as exc:
                        result = {"state": "error", "message": repr(exc)}
                    at = result.get("finished_at")
                    state = str(result.get("state"))
                    if step == "expose" and state == "done":
                        urls[body["lab"]] = str(result["result"]["url"]).rstrip("/")
                    wall = time.monotonic() - began
                    out.append((body["lab"], k, state, float(at) if at else None, wall, str(result.get("message", ""))))
                    if state != "done":
                        break  # the next step requires this one
            return out

        urls: dict[str, str] = {}  # lab -> its exposed guestbook
        cpu_lab, t1 = cpu_seconds(proc.pid), time.monotonic()
        with ThreadPoolExecutor(max_workers=10) as pool:
            results = [step for lab in pool.map(run_lab, joined) for step in lab]
        lab_s = time.monotonic() - t1
        lab_cpu = (cpu_seconds(proc.pid) - cpu_lab) / lab_s
        done = [(lab, k, at) for lab, k, st, at, _, _ in results if st == "done" and at is not None]
        labs_done = {lab for lab, k, _ in done if k == len(STEPS) - 1}
        ok &= report(
            f"every learner's lab to done ({' → '.join(STEPS)})",
            f"{len(labs_done)}/{learners} labs, {len(done)}/{learners * len(STEPS)} steps done in {lab_s:.1f} s "
            f"(10 learners at a time); dashboard CPU {lab_cpu:.2f} core meanwhile",
            len(labs_done) == learners and lab_s <= LAB_LIMIT_S,
            f"all done, ≤ {LAB_LIMIT_S:.0f} s",
        )
        for k, step in enumerate(STEPS):
            walls = sorted(w for _, i, st, _, w, _ in results if i == k and st == "done")
            if walls:
                print(
                    f"INFO  click → green, {step}: p50 {statistics.median(walls):.2f} s, "
                    f"p95 {walls[int(0.95 * (len(walls) - 1))]:.2f} s, max {walls[-1]:.2f} s",
                    flush=True,
                )
        not_done = [(lab, STEPS[k], st, msg) for lab, k, st, _, _, msg in results if st != "done"]
        if not_done:
            print(f"INFO  {len(not_done)} steps not done; the first: {not_done[0]}", flush=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            any((lab, k) not in stream.seen for lab, k, _ in done)
            or any(lab not in stream.all_done for lab in labs_done)
        ):
            time.sleep(0.1)
        lags = sorted(max(0.0, stream.seen[(lab, k)] - at) for lab, k, at in done if (lab, k) in stream.seen)
        if lags:
            p95 = lags[int(0.95 * (len(lags) - 1))]
            ok &= report(
                "instructor grid change → SSE frame",
                f"p50 {statistics.median(lags):.3f} s, p95 {p95:.3f} s, max {lags[-1]:.3f} s over {len(lags)} "
                f"changes ({stream.frames} grid frames)",
                p95 <= 2.0 and len(lags) == len(done),
                "p95 ≤ 2 s, every change seen",
            )
        else:
            ok &= report("instructor grid change → SSE frame", "no change seen", False, "p95 ≤ 2 s")
        rows = grid(room)["learners"]
        rows_done = [r for r in rows if all(r["cells"][s]["state"] == "done" for s in STEPS) and r["finished"]]
        ok &= report(
            "every learner's grid row shows all steps done",
            f"{len(stream.all_done)}/{learners} rows in the SSE stream, {len(rows_done)}/{learners} in /api/rooms/<id>",
            len(stream.all_done) == learners and len(rows_done) == learners,
            f"all {learners}",
        )
        # Each learner's exposed guestbook writes to and reads from that learner's own Redis: one entry appended
        # through every frontend, then every frontend shows exactly its own (read from its followers).
        with httpx.Client(timeout=5.0, trust_env=False) as web:
            for lab, url in urls.items():
                with contextlib.suppress(httpx.HTTPError):
                    web.get(f"{url}/guestbook.php", params={"cmd": "append", "value": f"from {lab}"})
            own: set[str] = set()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and len(own) < len(urls):
                for lab, url in urls.items():
                    if lab not in own:
                        with contextlib.suppress(httpx.HTTPError, ValueError):
                            if web.get(f"{url}/guestbook.php?cmd=get").json().get("entries") == [f"from {lab}"]:
                                own.add(lab)
                time.sleep(0.2)
        ok &= report(
            "each learner's guestbook on its own Redis",
            f"{len(own)}/{learners} exposed frontends show exactly the entry appended through them",
            len(own) == learners,
            f"all {learners}, none sees another's",
        )

        # 4. steady state: the grid's stream open, every lab's sampler reading its three Redis nodes, nothing else
        time.sleep(2.0)
        start, cpu1, t2 = mark(), cpu_seconds(proc.pid), time.monotonic()
        time.sleep(steady_s)
        steady_cpu = (cpu_seconds(proc.pid) - cpu1) / (time.monotonic() - t2)
        window = time.monotonic() - t2
        with double.lock:
            steady = double.requests[start:]
        by_verb = Counter(verb for _, verb, _ in steady)
        per_learner_minute = len(steady) / learners / (window / 60)
        verbs = ", ".join(f"{verb} {n}" for verb, n in sorted(by_verb.items())) or "none"
        ok &= report("dashboard CPU in steady state", f"{steady_cpu:.3f} core", steady_cpu <= 0.25, "≤ 0.25 core")
        ok &= report(
            f"API requests in steady state ({window:.0f} s)",
            f"{verbs}; {per_learner_minute:.3f} per learner per minute",
            by_verb["list"] == 0 and per_learner_minute <= 0.1,
            "no LIST, ≈ 0 (≤ 0.1) per learner per minute",
        )
        if steady:
            print("INFO  steady requests: " + ", ".join(f"{m} {p}" for m, _, p in steady[:5]), flush=True)

        # 1b. the big room's watches: as many as the solo room's once provisioned; later only the same paths again
        # (each watch is renewed when the server ends it after timeoutSeconds, ~290 s) and never a learner's own
        later = [p for p in watch_paths(before_room) if not p.startswith("/api/v1/namespaces/guestbook/")]
        renewed = len(later) - len(room_watches)
        prefixes = tuple(f"/namespaces/{r['id']}-" for r in (solo, room))
        namespaced = [p for p in watch_paths(0) if any(prefix in p for prefix in prefixes)]
        ok &= report(
            f"watch requests, room of 1 vs room of {learners}",
            f"{len(solo_watches)} {solo_watches} vs {len(room_watches)} {room_watches}; by the end "
            f"{sorted(set(later))} ({renewed} renewals after timeoutSeconds); per-learner namespace watches "
            f"{len(namespaced)}",
            solo_watches == room_watches and set(later) == set(room_watches) and not namespaced and solo_join[0] == 200,
            "the same, none per learner namespace",
        )

        behind = [p for p in descendants(os.getpid()) if p != proc.pid and p not in descendants(proc.pid)]
        redis_pids = [p for p in behind if "redis" in comm(p)]
        frontend_pids = [p for p in behind if "dashboard.guestbook" in cmdline(p)]
        redis_rss = sum(rss_mb(p) for p in redis_pids if Path(f"/proc/{p}").exists())
        frontend_rss = sum(rss_mb(p) for p in frontend_pids if Path(f"/proc/{p}").exists())
        print(
            f"INFO  RSS: dashboard {rss_mb(proc.pid):.0f} MB ({rss_mb(proc.pid) / learners:.1f} MB per learner); "
            f"this process (the API double and its kubelet) {rss_mb(os.getpid()):.0f} MB; behind the pods "
            f"{len(redis_pids)} redis-servers {redis_rss:.0f} MB and {len(frontend_pids)} guestbook frontends "
            f"{frontend_rss:.0f} MB ({(redis_rss + frontend_rss) / learners:.0f} MB per learner)",
            flush=True,
        )

        # 5. optionally, the cleanup step of every lab (10 at a time): nothing is left behind the pods
        if not args.no_cleanup:

            def cleanup(entry: tuple[int, dict[str, Any], str]) -> str:
                _, body, cookie = entry
                if "lab" not in body:
                    return "no lab"
                with httpx.Client(base_url=base, timeout=120.0, trust_env=False) as c:
                    headers = {"Cookie": cookie, "HX-Request": "true"}
                    r = c.post(f"/labs/{body['lab']}/api/steps/cleanup", headers=headers)
                    return str(r.json().get("state"))

            t3 = time.monotonic()
            with ThreadPoolExecutor(max_workers=10) as pool:
                cleaned = Counter(pool.map(cleanup, joined))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and kubelet.running():
                time.sleep(0.2)
            ok &= report(
                "cleanup of every lab",
                f"{cleaned['done']}/{learners} done in {time.monotonic() - t3:.1f} s (10 at a time); "
                f"{len(kubelet.running())} processes left behind the pods",
                cleaned["done"] == learners and not kubelet.running(),
                "all done, none left",
            )
        client.close()
    finally:
        if stream is not None:
            stream.close()
        stop(proc)
        log.close()
        kubelet.close()
        double.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
