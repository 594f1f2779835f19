"""The local pre-flight: can the lab run on this machine? No cluster, kubeconfig or access rights are needed.

The redis-server binary and its version (5 or later for replicaof), whether the run directory is writable and
whether the expose step's port is free. Each check says what a failure blocks and how to fix it. In workshop mode,
`room_fit` says whether --max-learners labs fit this machine: memory (MemAvailable against what a learner's
processes take, measured) and loopback ports (each pod and each forward holds one).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

VERSION_TIMEOUT = 5.0
# Measured (bench/bench_workshop.py, 30 learners with --workshop-profile): 73 MB of RSS per learner for 3
# redis-servers and 1 Python frontend; a frontend is about 38 MB of it (bench_guestbook), a redis-server about 12.
REDIS_MB = 12
FRONTEND_MB = 38


def room_fit(learners: int, frontends: int, available_mb: int, free_ports: int) -> dict[str, Any]:
    """N learners' labs against this machine's available memory and loopback ports (pure)."""
    per_learner_mb = 3 * REDIS_MB + frontends * FRONTEND_MB
    ports = 3 + frontends + 1  # every pod listens on a port of its own, and the expose step's forward on one more
    need_mb, need_ports = learners * per_learner_mb, learners * ports
    most = min(available_mb // per_learner_mb, free_ports // ports)
    fits = need_mb <= available_mb and need_ports <= free_ports
    if fits:
        message = f"{learners} learners fit: about {need_mb} MB of the {available_mb} MB available, {need_ports} ports."
    else:
        short = [f"memory ({need_mb} MB needed, {available_mb} MB available)"] if need_mb > available_mb else []
        short += [f"ports ({need_ports} needed, {free_ports} free)"] if need_ports > free_ports else []
        hint = " (--workshop-profile runs 1 frontend instead of 3)" if frontends > 1 else ""
        message = (
            f"{learners} learners do not fit this machine: too little {', '.join(short)}; at most {most} fit{hint}."
        )
    return {
        "learners": learners,
        "per_learner": {"memory_mb": per_learner_mb, "ports": ports, "processes": 3 + frontends},
        "needed": {"memory_mb": need_mb, "ports": need_ports},
        "available": {"memory_mb": available_mb, "ports": free_ports},
        "fits": fits,
        "most_learners": most,
        "message": message,
        "ok": fits,
    }


def machine_room(learners: int, frontends: int) -> dict[str, Any]:
    """`room_fit` with this machine's MemAvailable and the size of its ephemeral port range."""
    available_kb = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available_kb = int(line.split()[1])
    low, high = 32768, 60999
    with contextlib.suppress(OSError, ValueError):
        low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return room_fit(learners, frontends, available_kb // 1024, high - low + 1)


async def preflight(redis_server: str, run_dir: Path, frontend_port: int, frontend_url: str | None) -> dict[str, Any]:
    """The report of `LocalPlatform.preflight` (JSON of GET /api/preflight)."""
    checks = [
        await _redis_server_check(redis_server),
        await asyncio.to_thread(_run_dir_check, run_dir),
        await asyncio.to_thread(_frontend_port_check, frontend_port, frontend_url),
    ]
    return {
        "platform": "local",
        "ok": all(c["ok"] for c in checks),
        "message": "The local platform needs no cluster, kubeconfig or access rights: it runs redis-server "
        "processes and the Python guestbook frontend on this machine.",
        "checks": checks,
        "blocked": sorted({step for c in checks for step in c["blocks"]}),
    }


async def _redis_server_check(binary: str) -> dict[str, Any]:
    check: dict[str, Any] = {"name": "redis-server", "needed_for": ["leader", "followers"], "blocks": [], "ok": False}
    check.update(path=None, version=None)

    def failed(detail: str, hint: str) -> dict[str, Any]:
        return check | {"detail": detail, "hint": hint, "blocks": check["needed_for"]}

    path = shutil.which(binary)
    if path is None:
        return failed(
            f"{binary} was not found (on PATH or as a path).",
            "Install Redis (apt-get install redis-server, brew install redis) or pass --redis-server.",
        )
    check["path"] = path
    try:
        proc = await asyncio.create_subprocess_exec(
            path,
            "--version",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), VERSION_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
    except (OSError, TimeoutError) as exc:
        return failed(
            f"{path} does not run ({type(exc).__name__}: {exc}).",
            "Reinstall Redis or point --redis-server at a working binary.",
        )
    text = out.decode("utf-8", "replace")
    match = re.search(r"\bv=(\d+\.\d+\.\d+)", text)
    if proc.returncode != 0 or match is None:
        detail = f"{path} --version did not print a Redis version: {text.strip()[:120]!r}."
        return failed(detail, "Point --redis-server at a redis-server binary.")
    version = match.group(1)
    check.update(ok=True, version=version, detail=f"{path}, Redis {version}")
    if int(version.split(".")[0]) < 5:
        check.update(ok=False, blocks=["followers"], hint="The lab needs Redis 5 or later (replicaof).")
        check["detail"] += " (older than 5: no replicaof)"
    return check


def _run_dir_check(run_dir: Path) -> dict[str, Any]:
    check: dict[str, Any] = {"name": "run directory", "path": str(run_dir), "needed_for": ["leader"], "blocks": []}
    target = run_dir
    while not target.exists() and target != target.parent:
        target = target.parent  # the platform creates the missing part
    try:
        if not target.is_dir():
            raise NotADirectoryError(f"{target} is not a directory")
        with tempfile.NamedTemporaryFile(dir=target, prefix=".preflight-"):
            pass
    except OSError as exc:
        detail, hint = (
            f"{target} is not writable ({exc.strerror or exc}).",
            "Choose a writable directory with --run-dir.",
        )
        return check | {"ok": False, "blocks": check["needed_for"], "detail": detail, "hint": hint}
    made = "" if target == run_dir else f" (will be created under {target})"
    return check | {"ok": True, "detail": f"{run_dir} is writable{made}."}


def _frontend_port_check(port: int, frontend_url: str | None) -> dict[str, Any]:
    check: dict[str, Any] = {"name": "frontend port", "port": port, "needed_for": ["expose"], "blocks": []}
    if port == 0:
        return check | {"ok": True, "detail": "--frontend-port 0: the expose step picks a free port."}
    if frontend_url and frontend_url.rstrip("/").endswith(f":{port}"):
        return check | {"ok": True, "detail": f"127.0.0.1:{port} is the lab's exposed guestbook ({frontend_url})."}
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            detail = f"127.0.0.1:{port} is in use by another program."
            hint = "Free the port or pass --frontend-port (0 picks a free one)."
            return check | {"ok": False, "blocks": check["needed_for"], "detail": detail, "hint": hint}
    return check | {"ok": True, "detail": f"127.0.0.1:{port} is free."}
