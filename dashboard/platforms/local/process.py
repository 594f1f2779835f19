"""Operating-system helpers of the local platform: the redis-server binary, free ports, the pid table and orphans.

Nothing here knows about pods. The pid table (`pods.json` in the run dir) records each child's pid, its start
time (field 22 of /proc/<pid>/stat), its process group (each child leads a session and group of its own) and argv,
so a dashboard that was killed with -9 can be cleaned up by the next one without ever killing a reused pid: the
child and every process of its group started after it (a wrapper script's redis-server that outlived the script).
Children are also tied to the dashboard with PR_SET_PDEATHSIG (which does not reach their own children: the
group does).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dashboard.errors import PlatformUnavailable

PID_TABLE = "pods.json"
ENDPOINTS_FILE = "endpoints.json"
REDIS_DIR_PREFIX = "redis-data-"
PR_SET_PDEATHSIG = 1
PRIVATE_ENV_PREFIX = "GUESTBOOK_LAB_"  # the dashboard's own settings (its token among them): never for children


def find_redis_server(binary: str) -> str:
    """The path of the redis-server binary (a name on PATH or a path), or PlatformUnavailable."""
    found = shutil.which(binary)
    if found is None:
        raise PlatformUnavailable(
            "redis-server was not found on PATH.",
            "Install Redis (apt-get install redis-server) "
            "or set GUESTBOOK_LAB_REDIS_SERVER / --redis-server to its path.",
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (bind to port 0). Another program may take it before we do: callers retry."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state, ppid, pgrp, session, ...), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after the last ")".
    return stat[stat.rindex(")") + 2 :].split()


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks after boot), or None if no such process."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def group_members(pgid: int, since: int | None) -> list[int]:
    """Live processes of process group `pgid` in session `pgid` (a group our child leads), started at or after
    `since` (the leader's start time: older processes cannot be of that group, whatever their ids)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None or fields[0] in ("Z", "X") or int(fields[2]) != pgid or int(fields[3]) != pgid:
            continue
        if since is None or int(fields[19]) >= since:
            members.append(int(entry))
    return sorted(members)


def kill_group(pgid: int, since: int | None) -> None:
    """SIGKILL the process group `pgid` if it still has members (see `group_members`)."""
    if pgid > 1 and group_members(pgid, since):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def is_running(pid: int, start_time: int | None) -> bool:
    """True if `pid` is a live (non-zombie) process that started at `start_time` (so not a reused pid)."""
    fields = _stat_fields(pid)
    if fields is None or (start_time is not None and int(fields[19]) != start_time):
        return False
    return fields[0] not in ("Z", "X")


@functools.cache
def _libc() -> Any:
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def child_setup() -> Callable[[], None]:
    """A preexec_fn that makes the child get SIGKILL when the dashboard's spawning thread dies (even by kill -9).

    Call it from the event loop thread: PR_SET_PDEATHSIG fires when the thread that forked exits.
    If the dashboard died between fork and prctl, the child exits at once instead of living on.
    """
    libc = _libc()
    parent = os.getpid()

    def setup() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return setup


def child_environment(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a pod's process: the dashboard's minus its own `GUESTBOOK_LAB_*` settings, plus `extra`.

    The token (`GUESTBOOK_LAB_TOKEN`) and every other setting of the dashboard stay in the dashboard: redis-server and
    the frontends get what they need through their command line.
    """
    env = {name: value for name, value in os.environ.items() if not name.startswith(PRIVATE_ENV_PREFIX)}
    env.update({name: value for name, value in extra.items() if not name.startswith(PRIVATE_ENV_PREFIX)})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def atomic_write_json(path: Path, data: object) -> None:
    """Write JSON to `path` so readers see the old or the new file, never half of one (temp file + os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=1)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def read_pid_table(run_dir: Path) -> dict[str, Any]:
    """The pid table left in `run_dir`, or {} (missing or unreadable)."""
    try:
        data = json.loads((run_dir / PID_TABLE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _entries(table: dict[str, Any]) -> list[tuple[int, int, int]]:
    """(pid, start time, pgid) of each pod entry of a pid table (no pgid, or a bad one: the pid leads its group)."""
    found = []
    for entry in table.get("pods") or []:
        try:
            pid, start = int(entry["pid"]), int(entry["start_time"])
        except (KeyError, TypeError, ValueError):
            continue
        pgid = entry.get("pgid") or pid
        found.append((pid, start, pgid if isinstance(pgid, int) else 0))
    return found


def live_groups(table: dict[str, Any]) -> dict[int, tuple[int, list[int]]]:
    """The pid table's process groups that still have members: pgid -> (leader start time, member pids)."""
    groups: dict[int, tuple[int, list[int]]] = {}
    for _, start, pgid in _entries(table):
        if pgid > 1 and (members := group_members(pgid, start)):
            groups[pgid] = (start, members)
    return groups


def live_pids(table: dict[str, Any]) -> list[tuple[int, int]]:
    """(pid, start time) of the pid table's pod processes that still run with the recorded start time."""
    return [(pid, start) for pid, start, _ in _entries(table) if pid > 1 and is_running(pid, start)]


def kill_and_wait(
    pids_with_start: Sequence[tuple[int, int]], groups: Sequence[tuple[int, int]] = (), timeout: float = 2.0
) -> list[int]:
    """SIGKILL each (pid, start_time) that still matches and each (pgid, leader start) group that still has
    members, then wait until they are gone; returns the pids still alive."""
    for pgid, since in groups:
        kill_group(pgid, since)
    for pid, start in pids_with_start:
        if is_running(pid, start):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def alive() -> list[int]:
        left = {pid for pid, start in pids_with_start if is_running(pid, start)}
        left.update(pid for pgid, since in groups for pid in group_members(pgid, since))
        return sorted(left)

    deadline = time.monotonic() + timeout
    still = alive()
    while still and time.monotonic() < deadline:
        time.sleep(0.005)
        still = alive()
    return still


def remove_lab_files(run_dir: Path) -> None:
    """Remove the local platform's files in `run_dir` (pid table, endpoints, redis dirs), then `run_dir` if empty."""
    for name in (PID_TABLE, ENDPOINTS_FILE):
        with contextlib.suppress(OSError):  # gone, or the run dir is no directory any more
            (run_dir / name).unlink()
    if run_dir.is_dir():
        for child in run_dir.iterdir():
            if child.is_dir() and child.name.startswith(REDIS_DIR_PREFIX):
                shutil.rmtree(child, ignore_errors=True)
            elif child.name.startswith((f".{PID_TABLE}.", f".{ENDPOINTS_FILE}.")):
                with contextlib.suppress(OSError):
                    child.unlink()
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only if empty


async def accepts_connections(host: str, port: int, timeout: float = 0.2) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def frontend_argv(pod_name: str, port: int, endpoints: Path, max_entry_length: int) -> list[str]:
    """The frontend pod's program: the Python guestbook on 127.0.0.1:`port`, finding Redis via the endpoints file."""
    return [
        sys.executable, "-m", "dashboard.guestbook", "--host", "127.0.0.1", "--port", str(port),
        "--endpoints", str(endpoints), "--max-entry-length", str(max_entry_length), "--name", pod_name,
    ]  # fmt: skip


def url_host(bind_host: str) -> str:
    """The host to put in a URL for a server bound to `bind_host` (a wildcard becomes this machine's address)."""
    host = bind_host
    if host in ("0.0.0.0", "", "::"):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent, it only picks the outgoing address
                host = str(probe.getsockname()[0])
        except OSError:
            host = "127.0.0.1"
    return f"[{host}]" if ":" in host else host
