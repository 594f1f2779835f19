"""What runs behind the double's pods: the `Kubelet` protocol and `LoopbackKubelet` (real processes on loopback)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

from tests.k8s_double.fixtures import JSON
from tests.k8s_double.portforward import Address
from tests.redis_helpers import RedisProc, start_redis


class Kubelet(Protocol):
    """What runs behind the double's pods (see the module docstring)."""

    def run_pod(self, pod: JSON) -> dict[int, Address]:
        """Start the pod's process(es); return {containerPort: loopback address}. Raise to leave it not ready."""
        ...

    def stop_pod(self, pod: JSON) -> None:
        """Stop what `run_pod` started for this pod (by pid)."""
        ...


class LoopbackKubelet:
    """A `Kubelet` that runs the lab's pods on 127.0.0.1, reached only through the double's port-forward.

    redis-leader pods: `redis-server`; redis-follower pods: `redis-server --replicaof` the newest running leader
    (as the follower image does through the redis-leader Service); frontend pods: a tiny in-thread HTTP server
    answering `GET /guestbook.php?cmd=get` with `{"data": "<pod name>"}` (so a test tells which pod answered).
    Everything it starts it stops, by pid, in `stop_pod()` or `close()`. The real guestbook, its PHP frontend and
    the pods' logs are on the real cluster (`tests/test_k8s_cluster*.py`, the behaviour suite).
    """

    def __init__(self, workdir: Path, frontend: str = "stub") -> None:
        if frontend != "stub":
            raise ValueError(f"frontend={frontend!r}: only the stub frontend runs here (the real ones on the cluster)")
        self.workdir = workdir
        self.lock = threading.Lock()
        self.redis: dict[str, RedisProc] = {}  # pod name -> process
        self.roles: dict[str, str] = {}
        self.frontends: dict[str, ThreadingHTTPServer] = {}

    def run_pod(self, pod: JSON) -> dict[int, Address]:
        name = pod["metadata"]["name"]
        labels = pod["metadata"].get("labels") or {}
        if labels.get("app") == "redis":
            leader = None
            if labels.get("role") == "follower":
                with self.lock:
                    leaders = [p for n, p in self.redis.items() if self.roles[n] == "leader" and p.alive()]
                if not leaders:
                    raise RuntimeError("redis-leader:6379 does not answer (no leader pod runs)")
                leader = ("127.0.0.1", leaders[-1].port)
            proc = start_redis(replicaof=leader)
            with self.lock:
                self.redis[name] = proc
                self.roles[name] = str(labels.get("role"))
            return {6379: ("127.0.0.1", proc.port)}
        server = ThreadingHTTPServer(("127.0.0.1", 0), _stub_frontend(name))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        with self.lock:
            self.frontends[name] = server
        return {80: ("127.0.0.1", int(server.server_address[1]))}

    def stop_pod(self, pod: JSON) -> None:
        name = pod["metadata"]["name"]
        with self.lock:
            proc = self.redis.pop(name, None)
            frontend = self.frontends.pop(name, None)
        if proc is not None:
            proc.stop()
        if frontend is not None:
            frontend.shutdown()
            frontend.server_close()

    def close(self) -> None:
        with self.lock:
            procs, self.redis = list(self.redis.values()), {}
            frontends, self.frontends = list(self.frontends.values()), {}
        for proc in procs:
            proc.stop()
        for frontend in frontends:
            frontend.shutdown()
            frontend.server_close()


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
