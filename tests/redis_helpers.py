"""Test helpers: start and stop real redis-server processes on free loopback ports, and poll with a deadline.

`start_redis()` starts a throw-away server (`--save "" --appendonly no`, its own temp dir, bound to 127.0.0.1),
optionally as a replica, and returns once it answers PING (and, for a replica, once its link to the leader is
up). `RedisProc.stop()` stops exactly that process, by pid. `wait_until()` polls a predicate until a deadline
instead of sleeping a fixed time. `redis_command()` is a dependency-free blocking RESP client for checks.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any, TypeVar

from tests.polling import wait_until

T = TypeVar("T")

RedisReply = bytes | int | None | list["RedisReply"]


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[Any]) -> int:
    """SIGTERM a process this test started (by its pid), SIGKILL it if it lingers; its exit code. Idempotent."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    return int(proc.returncode)


def redis_command(port: int, *args: str | bytes | int, host: str = "127.0.0.1", timeout: float = 2.0) -> RedisReply:
    """Send one command on a fresh connection and return the decoded reply (errors raise RuntimeError)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"".join(parts))
        reader = sock.makefile("rb")
        return _parse_reply(reader)


def _parse_reply(reader: object) -> RedisReply:
    readline = reader.readline  # type: ignore[attr-defined]
    read = reader.read  # type: ignore[attr-defined]
    line: bytes = readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RuntimeError(rest.decode("utf-8", "replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data: bytes = read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_parse_reply(reader) for _ in range(n)]
    raise RuntimeError(f"unexpected reply {line!r}")


def replication_info(port: int) -> dict[str, str]:
    """`INFO replication` as a dict."""
    raw = redis_command(port, "INFO", "replication")
    assert isinstance(raw, bytes)
    out: dict[str, str] = {}
    for line in raw.decode().splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            out[key] = value
    return out


class RedisProc:
    """One redis-server process started by `start_redis`."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, workdir: str, replicaof: tuple[str, int] | None):
        self.proc = proc
        self.port = port
        self.workdir = workdir
        self.replicaof = replicaof

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def command(self, *args: str | bytes | int) -> RedisReply:
        return redis_command(self.port, *args)

    def stop(self) -> None:
        """Terminate this process (by pid), kill it if it lingers, and remove its temp dir. Idempotent."""
        stop_process(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __repr__(self) -> str:
        role = f" replicaof {self.replicaof[0]}:{self.replicaof[1]}" if self.replicaof else ""
        return f"<RedisProc pid={self.pid} port={self.port}{role}>"


def start_redis(port: int | None = None, replicaof: tuple[str, int] | None = None, timeout: float = 10.0) -> RedisProc:
    """Start redis-server on 127.0.0.1 (a free port unless given); wait until it answers (and, as a replica,
    until its link to the leader is up). Retries with another port if a picked free port was taken meanwhile."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    attempts = 1 if port is not None else 3
    last_error = ""
    for _ in range(attempts):
        use_port = port if port is not None else free_port()
        workdir = tempfile.mkdtemp(prefix=f"redis-{use_port}-")
        cmd = [binary, "--port", str(use_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        # --repl-diskless-sync-delay 0: a replica syncs at once, not after the default 5 s
        cmd += ["--dir", workdir, "--daemonize", "no", "--logfile", "redis.log", "--repl-diskless-sync-delay", "0"]
        if replicaof is not None:
            cmd += ["--replicaof", replicaof[0], str(replicaof[1])]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = RedisProc(proc, use_port, workdir, replicaof)
        deadline = time.monotonic() + timeout
        up = False
        while server.alive() and time.monotonic() < deadline:
            try:
                up = server.command("PING") == b"PONG"
            except (OSError, RuntimeError):
                up = False
            if up:
                break
            time.sleep(0.01)
        if up:
            if replicaof is not None:

                def linked(port: int = use_port) -> bool:
                    return replication_info(port).get("master_link_status") == "up"

                try:
                    wait_until(
                        linked,
                        max(0.1, deadline - time.monotonic()),
                        what=f"replica on {use_port} to link to {replicaof[0]}:{replicaof[1]}",
                    )
                except BaseException:
                    server.stop()  # never left running when it did not link up
                    raise
            return server
        exited = not server.alive()
        try:
            with open(f"{workdir}/redis.log", encoding="utf-8", errors="replace") as fh:
                last_error = fh.read()[-2000:]
        except OSError:
            last_error = ""
        server.stop()
        if not exited:
            raise RuntimeError(f"redis-server on port {use_port} did not answer within {timeout:g} s: {last_error}")
    raise RuntimeError(f"redis-server did not start: {last_error}")
