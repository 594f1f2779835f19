"""`kubectl port-forward` in-process: a listener on 127.0.0.1 whose connections go through the API server's pod
port-forward, either to one pod or to whichever matching pod is ready when a connection arrives.

Each connection is relayed by one thread straight between its socket and the port-forward's websocket
(`v4.channel.k8s.io`), waiting on both with a selector (epoll). Not with the client library's
`ws_client.PortForward`: its proxy thread waits in `select()`, which fails ("filedescriptor out of range") once
the process holds 1024 descriptors, as a workshop room's dashboard does (100 labs × 3 Redis forwards, each a
listener, a connection, a websocket and the library's socket pair), and it took a second thread and two more
descriptors per connection."""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from websocket import ABNF, WebSocketConnectionClosedException, WebSocketException

from dashboard.errors import DashboardError, PlatformError
from dashboard.platforms.kubernetes.api import Api

log = logging.getLogger(__name__)
MOVES = 3  # pods a connection is tried on when the dial is refused before any answer
REPLAY_LIMIT = 64 * 1024  # bytes of a connection kept to replay it on another pod: a request, not an upload


class Relayed(NamedTuple):
    error: str | None  # what the port's error channel said, if anything
    movable: bool  # nothing came back and `unanswered` holds all that was sent: it can be replayed elsewhere


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
        try:
            self._forward(conn)
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

    def _forward(self, conn: socket.socket) -> None:
        """Relay `conn` to the pod `target()` names. A dial the pod refused before it answered anything (a frontend
        Ready before its server listens: the tutorial has no readiness probe) moves the connection, with what it sent
        so far, to the next pod `target()` names, as a Service would send the next connection elsewhere."""
        unanswered = bytearray()
        tried: list[str] = []
        failure: PlatformError | None = None
        while True:
            pod = self.target()
            if pod is None:
                raise PlatformError("No ready pod to forward to.", "Wait until the pods are Ready.")
            if failure is not None and pod in tried:  # no other pod to try: the last refusal stands
                raise failure
            tried.append(pod)
            forward = self.api.portforward(pod, self.remote_port)
            self.connections += 1
            try:
                # The kubelet reports a failed dial inside the pod on the port's error channel, then closes.
                outcome = relay(conn, forward, self._closed, unanswered)
            finally:
                close_websocket(forward)
            if outcome.error is None:
                return
            failure = PlatformError(
                f"The port-forward to pod {pod} port {self.remote_port} failed: {outcome.error.strip()}.",
                "Check that the container listens on that port (kubectl logs, kubectl describe pod).",
            )
            if not outcome.movable or len(tried) == MOVES:
                raise failure
            log.info("port-forward :%s: %s Trying another pod.", self.port, failure.message)


def close_websocket(websocket: Any) -> None:
    """Close the websocket and its TCP socket. After the API server's close frame, websocket-client has answered it
    (`send_close`) and marked the websocket disconnected, so its `close()` does nothing and the socket would be left
    for the garbage collector (a ResourceWarning at a random later point); `shutdown()` closes the socket itself."""
    with contextlib.suppress(Exception):
        websocket.close()
    with contextlib.suppress(Exception):
        websocket.shutdown()


def relay(
    local: socket.socket, websocket: Any, closed: threading.Event, unanswered: bytearray | None = None
) -> Relayed:
    """Copy bytes both ways between `local` and a one-port port-forward `websocket` until either side closes (or
    `closed` is set). `unanswered`, when given, is sent first, and keeps what `local` sends until the pod answers
    (up to REPLAY_LIMIT bytes), for a caller that replays a refused connection on another pod.

    `v4.channel.k8s.io` for one port: channel 0 carries the data, channel 1 the errors; the server opens each with
    one frame of the port number (2 bytes, little-endian), and every client frame is [0, data...].
    """
    errors: list[str] = []
    opened = [False, False]
    keep = unanswered is not None  # still keeping every byte sent, and nothing came back
    if unanswered:
        websocket.send_binary(b"\x00" + bytes(unanswered))
    with selectors.DefaultSelector() as selector:
        selector.register(local, selectors.EVENT_READ, "local")
        remote = selector.register(websocket.sock, selectors.EVENT_READ, "remote")
        while not closed.is_set():
            # Frames TLS has already decrypted wake no selector: the handshake's read can take the server's first
            # frames with it (the API server sends them with its 101 when the kubelet answered at once), and one
            # TLS record can hold several frames. Those are read before waiting on the sockets.
            ready = [(remote, 0)] if tls_buffered(websocket.sock) else selector.select(1.0)
            for key, _ in ready:
                try:
                    if key.data == "local":
                        data = local.recv(65536)
                        if not data:
                            return Relayed("".join(errors) or None, keep)
                        if keep and unanswered is not None:
                            keep = len(unanswered) + len(data) <= REPLAY_LIMIT
                            if keep:
                                unanswered += data
                        websocket.send_binary(b"\x00" + data)
                        continue
                    opcode, frame = websocket.recv_data_frame(True)
                    if opcode == ABNF.OPCODE_CLOSE:
                        return Relayed("".join(errors) or None, keep)
                    if opcode == ABNF.OPCODE_BINARY and frame.data and frame.data[0] in (0, 1):
                        channel, payload = frame.data[0], frame.data[1:]
                        if not opened[channel]:
                            opened[channel] = True
                            payload = payload[2:]  # the port number that opens the channel
                        if payload and channel == 0:
                            keep = False
                            local.sendall(payload)
                        elif payload:
                            errors.append(payload.decode("utf-8", "replace"))
                except (OSError, WebSocketConnectionClosedException, WebSocketException):
                    # a reset or a closed side ends the copy like an EOF
                    return Relayed("".join(errors) or None, keep)
    return Relayed("".join(errors) or None, keep)


def tls_buffered(sock: socket.socket) -> bool:
    """Whether TLS holds decrypted bytes of `sock` that reading the socket would return without waiting."""
    return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
