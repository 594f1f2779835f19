"""Pre-flight and the events timeline: what the platform offers beyond the lab's steps, wired into the web app.

Served by `dashboard.web.routes.preflight`:

- `GET /api/preflight` and the `/preflight` page. On Kubernetes: context, API server and its version, the
  namespace, and for each verb the lab needs the SelfSubjectAccessReview answer and what a "no" would block
  (`KubernetesPlatform.preflight`). On the local platform: the redis-server binary and its version, whether the
  run directory is writable and whether the expose step's port is free — and that no cluster is needed.
- `GET /api/events` and the live topic `events` (fragment `_events.html`): the lab's core/v1 Events from the
  platform's shared events watch, newest first; published when the watch sees a change, never polled. The
  local platform has no events: [] and no panel.

Nothing here asks the cluster on a viewer's behalf except the pre-flight itself, which a user asks for.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from dashboard.platforms.base import Platform
from dashboard.settings import Settings

EVENTS_LIMIT = 200
VERSION_TIMEOUT = 5.0


async def event_rows(platform: Platform, limit: int = EVENTS_LIMIT) -> list[dict[str, object]]:
    """The lab's events, newest first ([] on a platform without events)."""
    events = getattr(platform, "events", None)
    if platform.name != "kubernetes" or events is None:
        return []
    rows = await events(limit)
    return [row.to_json() for row in reversed(rows)]


async def preflight_report(platform: Platform, settings: Settings) -> dict[str, Any]:
    """The pre-flight of the running platform (see the module docstring)."""
    if platform.name == "kubernetes":
        return await kubernetes_preflight(platform)
    return await local_preflight(platform, settings)


async def kubernetes_preflight(platform: Platform) -> dict[str, Any]:
    preflight = getattr(platform, "preflight", None)
    if preflight is None:
        return {"platform": "kubernetes", "ok": False, "checks": [], "blocked": []}
    report: dict[str, Any] = dict(await preflight())
    checks = []
    for check in report.get("checks") or []:
        allowed = check.get("allowed")
        blocks = list(check.get("needed_for") or []) if allowed is False else []
        checks.append({**check, "blocks": blocks})
    report["checks"] = checks
    report.setdefault("blocked", sorted({step for check in checks for step in check["blocks"]}))
    report["platform"] = "kubernetes"
    return report


async def local_preflight(platform: Platform, settings: Settings) -> dict[str, Any]:
    checks = [
        await _redis_server_check(settings.redis_server),
        await asyncio.to_thread(_run_dir_check, settings.run_dir),
        await asyncio.to_thread(_frontend_port_check, settings.frontend_port, platform.frontend_url()),
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
    check: dict[str, Any] = {
        "name": "redis-server",
        "needed_for": ["leader", "followers"],
        "blocks": [],
        "ok": False,
        "path": None,
        "version": None,
    }
    path = shutil.which(binary)
    if path is None:
        check["detail"] = f"{binary} was not found (on PATH or as a path)."
        check["hint"] = "Install Redis (apt-get install redis-server, brew install redis) or pass --redis-server."
        check["blocks"] = check["needed_for"]
        return check
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
        check["detail"] = f"{path} does not run ({type(exc).__name__}: {exc})."
        check["hint"] = "Reinstall Redis or point --redis-server at a working binary."
        check["blocks"] = check["needed_for"]
        return check
    text = out.decode("utf-8", "replace")
    match = re.search(r"\bv=(\d+\.\d+\.\d+)", text)
    if proc.returncode != 0 or match is None:
        check["detail"] = f"{path} --version did not print a Redis version: {text.strip()[:120]!r}."
        check["hint"] = "Point --redis-server at a redis-server binary."
        check["blocks"] = check["needed_for"]
        return check
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
        check.update(ok=False, blocks=check["needed_for"], detail=f"{target} is not writable ({exc.strerror or exc}).")
        check["hint"] = "Choose a writable directory with --run-dir."
        return check
    made = "" if target == run_dir else f" (will be created under {target})"
    check.update(ok=True, detail=f"{run_dir} is writable{made}.")
    return check


def _frontend_port_check(port: int, frontend_url: str | None) -> dict[str, Any]:
    check: dict[str, Any] = {"name": "frontend port", "port": port, "needed_for": ["expose"], "blocks": []}
    if port == 0:
        check.update(ok=True, detail="--frontend-port 0: the expose step picks a free port.")
        return check
    if frontend_url and frontend_url.rstrip("/").endswith(f":{port}"):
        check.update(ok=True, detail=f"127.0.0.1:{port} is the lab's exposed guestbook ({frontend_url}).")
        return check
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            check.update(ok=False, blocks=check["needed_for"], detail=f"127.0.0.1:{port} is in use by another program.")
            check["hint"] = "Free the port or pass --frontend-port (0 picks a free one)."
            return check
    check.update(ok=True, detail=f"127.0.0.1:{port} is free.")
    return check
