"""The local platform's run directory: made ready with one-sentence errors, locked by its owner, watched while in use.

`prepare(run_dir)` creates the directory and proves it is a writable directory, or raises `RunDirError` with the
fix (a file in the way, a path under a file, /proc, no write access). `lock(run_dir, port)` then holds
`<run_dir>.lock` (beside the directory, so the directory itself empties on cleanup) with `fcntl.flock` for as
long as the owner runs, with the owner's pid and port written in it; a second dashboard (or lab) on the same
directory gets `RunDirBusy` naming them. The kernel drops the lock when its owner dies, even by `kill -9`. Locks
are counted per process: the CLI takes the default lab's before it serves, the platform takes it again at start,
and the file goes when the last holder releases it. `RunDir.fault()` says whether the directory was deleted,
renamed or replaced since it was prepared.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from dashboard.errors import PlatformUnavailable

RUN_DIR_HINT = "Choose another directory with --run-dir (env GUESTBOOK_LAB_RUN_DIR)."


class RunDirError(PlatformUnavailable):
    """The run directory cannot be used; `sentence` is the one line the CLI prints."""

    @property
    def sentence(self) -> str:
        return f"{self.message} {self.hint}"


class RunDirBusy(RunDirError):
    """Another dashboard (or lab) holds the run directory's lock."""

    def __init__(self, run_dir: Path, pid: int | None, port: int | None) -> None:
        owner = f"pid {pid}, port {port}" if pid is not None else "pid unknown"
        super().__init__(
            f"Another dashboard ({owner}) is running a lab in {run_dir}.",
            "Stop that dashboard, or give this one another directory with --run-dir (env GUESTBOOK_LAB_RUN_DIR).",
        )
        self.pid = pid
        self.port = port


def lock_path(run_dir: Path) -> Path:
    return run_dir.with_name(f"{run_dir.name}.lock")


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def prepare(run_dir: Path) -> tuple[int, int]:
    """Create `run_dir` (mode 0700) and check that it is a writable directory; its (st_dev, st_ino)."""
    run_dir = Path(run_dir)
    if f"{run_dir.resolve()}/".startswith(("/proc/", "/sys/")):
        raise RunDirError(f"The run directory {run_dir} is inside a kernel file system (/proc, /sys).", RUN_DIR_HINT)
    for parent in reversed(run_dir.parents):
        if parent.exists() and not parent.is_dir():
            raise RunDirError(f"The run directory {run_dir} is under {parent}, which is a file.", RUN_DIR_HINT)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(
            f"The run directory {run_dir} is a file, not a directory.",
            "Remove that file, or choose another directory with --run-dir (env GUESTBOOK_LAB_RUN_DIR).",
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.TemporaryFile(dir=run_dir, prefix=".probe-"):
            pass
        stat = run_dir.stat()
    except OSError as exc:
        raise RunDirError(f"The run directory {run_dir} is not writable ({_why(exc)}).", RUN_DIR_HINT) from None
    return stat.st_dev, stat.st_ino


@dataclass
class _Held:
    fd: int
    count: int


_held: dict[Path, _Held] = {}
_held_lock = threading.Lock()


def _read_owner(fd: int) -> tuple[int | None, int | None]:
    """The pid and port written in the lock file (the owner may be writing them: retry briefly)."""
    deadline = time.monotonic() + 1.0
    while True:
        with contextlib.suppress(OSError, ValueError, TypeError):
            data = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
            pid, port = data.get("pid"), data.get("port")
            return (pid if isinstance(pid, int) else None, port if isinstance(port, int) else None)
        if time.monotonic() >= deadline:
            return None, None
        time.sleep(0.01)


class RunDir:
    """A prepared and locked run directory; `release()` once per `lock()`."""

    def __init__(self, path: Path, identity: tuple[int, int]) -> None:
        self.path = path
        self.identity = identity

    def fault(self) -> str | None:
        """None while the directory is the one prepared; else what happened to it, as a sentence."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return f"The run directory {self.path} was deleted or renamed while the lab ran."
        except OSError as exc:
            return f"The run directory {self.path} cannot be read any more ({_why(exc)})."
        if not self.path.is_dir():
            return f"The run directory {self.path} was replaced by a file while the lab ran."
        if (stat.st_dev, stat.st_ino) != self.identity:
            return f"The run directory {self.path} was replaced by another directory while the lab ran."
        return None

    def release(self) -> None:
        with _held_lock:
            held = _held.get(self.path)
            if held is None:
                return
            held.count -= 1
            if held.count > 0:
                return
            del _held[self.path]
            with contextlib.suppress(OSError):
                if os.fstat(held.fd).st_ino == lock_path(self.path).stat().st_ino:
                    lock_path(self.path).unlink()  # while still locked: the next owner opens a fresh file
            os.close(held.fd)


def lock(run_dir: Path, port: int) -> RunDir:
    """Prepare `run_dir` and hold its lock for this process (counted), or RunDirError / RunDirBusy."""
    run_dir = Path(run_dir).absolute()
    identity = prepare(run_dir)
    path = lock_path(run_dir)
    with _held_lock:
        held = _held.get(run_dir)
        if held is not None:
            held.count += 1
            return RunDir(run_dir, identity)
        for _ in range(10):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise RunDirError(f"The lock file {path} cannot be created ({_why(exc)}).", RUN_DIR_HINT) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise RunDirError(f"The lock file {path} cannot be locked ({_why(exc)}).", RUN_DIR_HINT) from None
                pid, owner_port = _read_owner(fd)
                os.close(fd)
                raise RunDirBusy(run_dir, pid, owner_port) from None
            try:
                same = os.fstat(fd).st_ino == path.stat().st_ino
            except OSError:
                same = False
            if not same:  # the previous owner removed it between our open and our lock: open the new one
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "port": port}).encode(), 0)
            _held[run_dir] = _Held(fd, 1)
            return RunDir(run_dir, identity)
    raise RunDirError(f"The lock file {path} keeps being replaced by another program.", RUN_DIR_HINT)
