"""What runs behind the double's pods: the `Kubelet` protocol and `LoopbackKubelet` (real processes on loopback),
with `ServiceProxy` standing in for kube-proxy."""

from __future__ import annotations

import contextlib
import json
import re
import selectors
import socket
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from dashboard.platforms.local.process import atomic_write_json, frontend_argv
from dashboard.settings import PROJECT_ROOT, Settings
from tests.k8s_double.fixtures import JSON
from tests.k8s_double.portforward import Address
from tests.redis_helpers import RedisProc, free_port, start_redis, stop_process, wait_until


class Kubelet(Protocol):
    """What runs behind the double's pods (see the module docstring)."""

    def run_pod(self, pod: JSON) -> dict[int, Address]:
        """Start the pod's process(es); return {containerPort: loopback address}. Raise to leave it not ready."""
        ...

    def stop_pod(self, pod: JSON) -> None:
        """Stop what `run_pod` started for this pod (by pid)."""
        ...

    def logs(self, pod: JSON) -> list[tuple[datetime, str]]:
        """What the pod's process(es) wrote so far: (when, line), oldest first."""
        ...


class ServiceProxy:
    """A Service's virtual IP as kube-proxy makes it, on 127.0.0.1: each new connection goes to the endpoint
    `pick()` names at that moment (none: closed at once); an open connection stays with the endpoint it reached
    and ends when that endpoint goes away. So a client of the Service reaches a replacement pod when it reconnects.
    """

    def __init__(self, name: str, pick: Callable[[], Address | None]) -> None:
        self.name = name
        self.pick = pick
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address: Address = ("127.0.0.1", int(self._listener.getsockname()[1]))
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name=f"service {name}", daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        target = self.pick()
        upstream = None
        try:
            if target is None:
                return
            try:
                upstream = socket.create_connection(target, timeout=2)
            except OSError:
                return
            with self._lock:
                if self._closed.is_set():
                    return
                self._open.update((conn, upstream))
            pair = {conn: upstream, upstream: conn}
            # A selector (epoll), not select(): a room's double holds more than 1024 descriptors.
            with selectors.DefaultSelector() as selector:
                for sock in pair:
                    selector.register(sock, selectors.EVENT_READ)
                while True:
                    for key, _ in selector.select():
                        sock = key.fileobj  # type: ignore[assignment]
                        try:
                            data = sock.recv(65536)
                            if data:
                                pair[sock].sendall(data)
                        except OSError:
                            data = b""
                        if not data:
                            return
        finally:
            with self._lock:
                self._open.discard(conn)
                if upstream is not None:
                    self._open.discard(upstream)
            for end in (conn, upstream):
                if end is not None:
                    with contextlib.suppress(OSError):
                        end.shutdown(socket.SHUT_RDWR)
                    end.close()


_REDIS_STAMP = re.compile(r"^\d+:[XCSM] (\d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d\.\d+) ")


def redis_log_lines(path: Path) -> list[tuple[datetime, str]]:
    """A redis-server log file as (when, line): each line's own local timestamp, carried over to lines without."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    out: list[tuple[datetime, str]] = []
    when = datetime.fromtimestamp(path.stat().st_mtime, UTC) if text else datetime.now(UTC)
    for line in text.splitlines():
        match = _REDIS_STAMP.match(line)
        if match:
            with contextlib.suppress(ValueError):
                when = datetime.strptime(match.group(1), "%d %b %Y %H:%M:%S.%f").astimezone(UTC)
        if line.strip():
            out.append((when, line))
    return out


class LoopbackKubelet:
    """A `Kubelet` that runs the lab's pods as real processes on 127.0.0.1, as the local platform would.

    redis-leader pods: `redis-server`; redis-follower pods: `redis-server --replicaof` the redis-leader Service
    (as the follower image does), here a `ServiceProxy` to the newest running leader of the pod's namespace, so
    that followers find a replacement leader; frontend pods: the project's Python guestbook frontend (`python -m
    dashboard.guestbook --endpoints FILE`), or with `frontend="stub"` a tiny in-thread HTTP server answering
    `GET /guestbook.php?cmd=get` with `{"data": "<pod name>"}`. The endpoints file (one per namespace) plays the
    Services for the frontend (ready leader and followers). Every namespace has Services of its own, as on a
    cluster: a room's learners' followers replicate from their own leader and their frontends use their own Redis.
    `logs(pod)` is what the pod's process wrote: redis-server's log file, the frontend's stdout and stderr (each
    line stamped when it was read, as a container runtime does).
    Everything it starts it stops, by pid, in `stop_pod()` or `close()`.
    """

    def __init__(self, workdir: Path, frontend: str = "guestbook") -> None:
        self.workdir = workdir
        self.frontend = frontend
        self.lock = threading.Lock()
        # (namespace, pod name) -> what runs behind that pod
        self.redis: dict[tuple[str, str], RedisProc] = {}
        self.roles: dict[tuple[str, str], str] = {}
        self.frontends: dict[tuple[str, str], subprocess.Popen[bytes] | ThreadingHTTPServer] = {}
        self.output: dict[tuple[str, str], deque[tuple[datetime, str]]] = {}  # a frontend's stdout/stderr lines
        self.leader_services: dict[str, ServiceProxy] = {}  # namespace -> its redis-leader Service
        self._write_endpoints("guestbook")

    def endpoints_file_of(self, namespace: str) -> Path:
        """The endpoints file of a namespace's Services (the default namespace's is `endpoints.json`)."""
        return self.workdir / ("endpoints.json" if namespace == "guestbook" else f"endpoints-{namespace}.json")

    def _leader_service(self, namespace: str) -> ServiceProxy:
        with self.lock:
            service = self.leader_services.get(namespace)
            if service is None:
                service = ServiceProxy(f"{namespace}/redis-leader", lambda: self._leader_address(namespace))
                self.leader_services[namespace] = service
            return service

    def _leaders(self, namespace: str) -> list[RedisProc]:
        """The namespace's leader processes that run, oldest first (call with the lock held)."""
        return [p for k, p in self.redis.items() if k[0] == namespace and self.roles[k] == "leader" and p.alive()]

    def _leader_address(self, namespace: str) -> Address | None:
        """The namespace's redis-leader Service's endpoint: its newest leader process that runs (a replacement,
        not the old)."""
        with self.lock:
            leaders = self._leaders(namespace)
        return ("127.0.0.1", leaders[-1].port) if leaders else None

    def run_pod(self, pod: JSON) -> dict[int, Address]:
        name = pod["metadata"]["name"]
        namespace = pod["metadata"].get("namespace") or "guestbook"
        key = (namespace, name)
        labels = pod["metadata"].get("labels") or {}
        if labels.get("app") == "redis":
            leader = None
            if labels.get("role") == "follower":
                with self.lock:
                    leaders = self._leaders(namespace)
                if not leaders:
                    raise RuntimeError("redis-leader:6379 does not answer (no leader pod runs)")
                leader = self._leader_service(namespace).address
            proc = start_redis(replicaof=leader)
            with self.lock:
                self.redis[key] = proc
                self.roles[key] = str(labels.get("role"))
                self._write_endpoints(namespace)
            return {6379: ("127.0.0.1", proc.port)}
        if self.frontend == "stub":
            server = ThreadingHTTPServer(("127.0.0.1", 0), _stub_frontend(name))
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            with self.lock:
                self.frontends[key] = server
            return {80: ("127.0.0.1", int(server.server_address[1]))}
        port = free_port()
        with self.lock:
            if not self.endpoints_file_of(namespace).exists():
                self._write_endpoints(namespace)
        argv = frontend_argv(name, port, self.endpoints_file_of(namespace), Settings().max_entry_length)
        proc_ = subprocess.Popen(
            argv, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        output: deque[tuple[datetime, str]] = deque(maxlen=5000)
        assert proc_.stdout is not None
        threading.Thread(target=_read_output, args=(proc_.stdout, output), daemon=True).start()
        with self.lock:
            self.frontends[key] = proc_
            self.output[key] = output

        def listening() -> bool:
            if proc_.poll() is not None:
                raise RuntimeError(f"the guestbook frontend exited with {proc_.returncode}")
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        try:  # 60 s: a room's frontends start 30 at a time on a 2-core machine
            wait_until(listening, 60, what=f"frontend {name} listening on {port}")
        except Exception:
            with self.lock:
                if self.frontends.get(key) is proc_:
                    del self.frontends[key]
                    self.output.pop(key, None)
            stop_process(proc_)  # never left running behind a pod that did not start
            raise
        return {80: ("127.0.0.1", port)}

    def stop_pod(self, pod: JSON) -> None:
        name = pod["metadata"]["name"]
        namespace = pod["metadata"].get("namespace") or "guestbook"
        key = (namespace, name)
        with self.lock:
            proc = self.redis.pop(key, None)
            self.roles.pop(key, None)
            frontend = self.frontends.pop(key, None)
            self.output.pop(key, None)
            self._write_endpoints(namespace)
        if proc is not None:
            proc.stop()
        if frontend is not None:
            _stop_frontend(frontend)

    def logs(self, pod: JSON) -> list[tuple[datetime, str]]:
        key = (pod["metadata"].get("namespace") or "guestbook", pod["metadata"]["name"])
        with self.lock:
            proc = self.redis.get(key)
            output = list(self.output.get(key) or ())
        if proc is not None:
            return redis_log_lines(Path(proc.workdir) / "redis.log")
        return output

    def running(self) -> list[str]:
        with self.lock:
            return sorted(name for _, name in [*self.redis, *self.frontends])

    def close(self) -> None:
        with self.lock:
            services, self.leader_services = list(self.leader_services.values()), {}
        for service in services:
            service.close()
        with self.lock:
            procs, self.redis = list(self.redis.values()), {}
            frontends, self.frontends = list(self.frontends.values()), {}
        for proc in procs:
            proc.stop()
        for frontend in frontends:
            _stop_frontend(frontend)

    def _write_endpoints(self, namespace: str) -> None:
        """The namespace's endpoints file: its own leader and followers (call with the lock held)."""
        services: dict[str, list[list[object]]] = {"redis-leader": [], "redis-follower": []}
        for key, proc in self.redis.items():
            if key[0] == namespace:
                services[f"redis-{self.roles[key]}"].append(["127.0.0.1", proc.port])
        atomic_write_json(self.endpoints_file_of(namespace), services)


def _stop_frontend(frontend: subprocess.Popen[bytes] | ThreadingHTTPServer) -> None:
    if isinstance(frontend, ThreadingHTTPServer):
        frontend.shutdown()
        frontend.server_close()
    else:
        stop_process(frontend)


def _read_output(stream: BinaryIO, into: deque[tuple[datetime, str]]) -> None:
    """A process's stdout, line by line, each stamped when read (until the process closes it)."""
    with contextlib.suppress(OSError, ValueError):
        for raw in iter(stream.readline, b""):
            into.append((datetime.now(UTC), raw.decode("utf-8", "replace").rstrip("\r\n")))
    with contextlib.suppress(OSError):
        stream.close()


def _stub_frontend(pod: str) -> type[BaseHTTPRequestHandler]:
    class Stub(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            body = json.dumps({"data": pod}).encode()
            self.send_response(200 if self.path.startswith("/guestbook.php") else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Stub
