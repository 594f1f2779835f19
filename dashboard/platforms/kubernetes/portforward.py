"""`kubectl port-forward` in-process: a listener on 127.0.0.1 whose connections go through the API server's pod
port-forward, either to one pod or to whichever matching pod is ready when a connection arrives."""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

from dashboard.errors import DashboardError, PlatformError
from dashboard.platforms.kubernetes.api import Api

log = logging.getLogger(__name__)


class PortForward:
    """A listener on 127.0.0.1:`port`; each connection is piped through the API server's pod port-forward to
    `remote_port` of the pod `target()` names at that moment (so a forward follows replacements of its pod)."""

    def __init__(self, api: Api, target: Callable[[], str | None], remote_port: int, port: int = 0) -> None:
        self.api = api
        self.target = target
        self.remote_port = remote_port
        self.error: DashboardError | None = None
        self.connections = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind(("127.0.0.1", port))
        except OSError as exc:
            self._listener.close()
            raise PlatformError(
                f"Local port {port} is already in use, so the port-forward cannot listen on it.",
                "Free the port or choose another with --frontend-port (0 picks a free one).",
            ) from exc
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._closed = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name=f"port-forward :{self.port}", daemon=True).start()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for conn in list(self._open):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(conn,), daemon=True).start()

    def _pipe(self, conn: socket.socket) -> None:
        with self._lock:
            self._open.add(conn)
        forward: Any = None
        try:
            pod = self.target()
            if pod is None:
                self.error = PlatformError("No ready pod to forward to.", "Wait until the pods are Ready.")
                return
            forward = self.api.portforward(pod, self.remote_port)
            remote = forward.socket(self.remote_port)
            self.connections += 1
            _pump(conn, remote, self._closed)
            # The kubelet reports a failed dial inside the pod on the port's error channel, then closes.
            failure = forward.error(self.remote_port)
            if failure:
                raise PlatformError(
                    f"The port-forward to pod {pod} port {self.remote_port} failed: {failure.strip()}.",
                    "Check that the container listens on that port (kubectl logs, kubectl describe pod).",
                )
            self.error = None
        except DashboardError as exc:
            self.error = exc
            log.warning("port-forward :%s: %s", self.port, exc.message)
        except Exception as exc:
            log.warning("port-forward :%s: %s", self.port, exc)
        finally:
            with self._lock:
                self._open.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()
            if forward is not None:
                with contextlib.suppress(Exception):
                    forward.close()


def _pump(local: socket.socket, remote: Any, closed: threading.Event) -> None:
    """Copy bytes both ways until either side closes."""
    sockets = [local, remote]
    while not closed.is_set():
        readable, _, _ = select.select(sockets, [], [], 1.0)
        for sock in readable:
            try:
                data = sock.recv(65536)
                if not data:
                    return
                (remote if sock is local else local).sendall(data)
            except OSError:  # a reset or a pipe the other side closed ends the copy like an EOF
                return
