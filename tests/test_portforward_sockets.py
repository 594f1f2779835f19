"""A port-forward's websocket over real sockets standing in for the API server's connection.

- Closed, socket and all, when the API server closed it first: websocket-client answers the server's close frame
  with `send_close`, which marks the websocket disconnected with its TCP socket still open, and
  `WebSocket.close()` then does nothing. `portforward.close_websocket` closes the socket too.
- A connection whose dial the pod refused before answering anything moves, with what it sent, to the next pod
  the forward names (a frontend Ready before Apache listens); one that has no other pod, or sent more than a
  replay keeps (REPLAY_LIMIT), keeps the refusal.
- Frames TLS has already decrypted are relayed without waiting: the API server can send a port's first frames in
  the TLS record of its 101 (a kubelet that refused the dial at once: open, error, close), and reading the 101
  leaves them in the TLS buffer, where no selector sees them. Over TLS with a throwaway certificate (openssl).
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from pathlib import Path

import websocket

from dashboard.platforms.kubernetes.portforward import REPLAY_LIMIT, PortForward, Relayed, close_websocket, relay
from tests.polling import wait_until

SERVER_CLOSE = b"\x88\x00"  # a server's close frame: FIN + opcode 8, unmasked, no payload


def relayed_until_the_server_closes() -> tuple[websocket.WebSocket, socket.socket, list[socket.socket]]:
    ours, theirs = socket.socketpair()
    local, peer = socket.socketpair()
    ws = websocket.WebSocket()
    ws.sock, ws.connected = ours, True
    theirs.sendall(b"\x82\x03\x00\x79\x18" + b"\x82\x03\x01\x79\x18" + SERVER_CLOSE)  # the two channels, then close
    assert relay(local, ws, threading.Event()) == Relayed(None, movable=False)
    assert not ws.connected and ours.fileno() != -1  # what websocket-client leaves: disconnected, socket open
    return ws, ours, [theirs, local, peer]


def test_close_websocket_closes_the_socket_the_server_closed_first() -> None:
    ws, ours, others = relayed_until_the_server_closes()
    try:
        close_websocket(ws)
        assert ours.fileno() == -1, "the websocket's socket was left open"
    finally:
        for sock in (ours, *others):
            sock.close()


def test_the_librarys_close_alone_leaves_that_socket_open() -> None:
    ws, ours, others = relayed_until_the_server_closes()
    try:
        ws.close()
        assert ours.fileno() != -1  # why close_websocket also shuts the socket down
    finally:
        for sock in (ours, *others):
            sock.close()


SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
REFUSED = b"dial tcp4 127.0.0.1:80: connect: connection refused"


def tls_pair(tmp_path: Path) -> tuple[ssl.SSLSocket, ssl.SSLSocket]:
    """(client, server) ends of a socket pair speaking TLS with a throwaway self-signed certificate."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key)]
    subject = ["-out", str(cert), "-subj", "/CN=localhost", "-days", "1"]
    subprocess.run(["openssl", "req", "-x509", *new_key, *subject], check=True, capture_output=True)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.load_verify_locations(cert)
    ours, theirs = socket.socketpair()
    accepted: list[ssl.SSLSocket] = []
    handshake = threading.Thread(target=lambda: accepted.append(server_context.wrap_socket(theirs, server_side=True)))
    handshake.start()
    client = client_context.wrap_socket(ours, server_hostname="localhost")
    handshake.join(5)
    return client, accepted[0]


def test_frames_already_decrypted_with_the_101_are_relayed_without_waiting(tmp_path: Path) -> None:
    client, server = tls_pair(tmp_path)
    local, peer = socket.socketpair()
    closed = threading.Event()
    try:
        error_frame = b"\x82" + bytes([1 + len(REFUSED)]) + b"\x01" + REFUSED
        server.sendall(SWITCHING + b"\x82\x03\x00\x50\x00" + b"\x82\x03\x01\x50\x00" + error_frame + SERVER_CLOSE)
        assert client.recv(len(SWITCHING)) == SWITCHING  # as the handshake reads the 101: the frames stay in TLS
        assert client.pending() > 0
        ws = websocket.WebSocket()
        ws.sock, ws.connected = client, True
        outcome: list[str | None] = []
        relaying = threading.Thread(target=lambda: outcome.append(relay(local, ws, closed)))
        relaying.start()
        relaying.join(5)  # the server keeps its TCP connection open: nothing more reaches the socket
        assert outcome == [Relayed(REFUSED.decode(), movable=False)], "it waited with the frames in the TLS buffer"
    finally:
        closed.set()  # a relay still waiting returns within its 1 s select
        for sock in (client, server, local, peer):
            sock.close()


class Kubelet:
    """Plays the API server's end of each port-forward websocket on a socket pair: a pod in `refusing` reports a
    refused dial on the error channel once `refuse_after` of the client's bytes came, any other answers `echo:` +
    the client's first frame."""

    def __init__(self, refusing: set[str], refuse_after: int = 1) -> None:
        self.refusing = refusing
        self.refuse_after = refuse_after
        self.asked: list[str] = []
        self.threads: list[threading.Thread] = []

    def portforward(self, pod: str, port: int) -> websocket.WebSocket:
        self.asked.append(pod)
        ours, theirs = socket.socketpair()
        client, server = websocket.WebSocket(), websocket.WebSocket()
        client.sock, client.connected = ours, True
        server.sock, server.connected = theirs, True
        thread = threading.Thread(target=self.serve, args=(server, pod, port), daemon=True)
        thread.start()
        self.threads.append(thread)
        return client

    def serve(self, server: websocket.WebSocket, pod: str, port: int) -> None:
        opening = port.to_bytes(2, "little")
        try:
            server.send_binary(b"\x00" + opening)
            server.send_binary(b"\x01" + opening)
            _, frame = server.recv_data_frame(True)
            if pod in self.refusing:
                received = len(frame.data) - 1
                while received < self.refuse_after:
                    received += len(server.recv_data_frame(True)[1].data) - 1
                server.send_binary(b"\x01" + REFUSED)
            else:
                server.send_binary(b"\x00echo:" + frame.data[1:])
            server.send_close()
            server.recv_data_frame(True)  # the client's answer to the close
        except (OSError, websocket.WebSocketException):
            pass
        finally:
            server.sock.close()


def ask(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer


def test_a_refused_dial_moves_the_connection_to_the_next_pod_with_what_it_sent() -> None:
    kubelet = Kubelet(refusing={"frontend-a"})
    pods = iter(["frontend-a", "frontend-b", "frontend-a"])
    forward = PortForward(kubelet, lambda: next(pods), 80)  # type: ignore[arg-type]
    try:
        assert ask(forward.port, b"GET / HTTP/1.0\r\n\r\n") == b"echo:GET / HTTP/1.0\r\n\r\n"
        assert kubelet.asked == ["frontend-a", "frontend-b"]
        wait_until(lambda: forward.error is None and all(not t.is_alive() for t in kubelet.threads), 5)
    finally:
        forward.close()


def test_a_refused_dial_with_no_other_pod_keeps_the_refusal() -> None:
    kubelet = Kubelet(refusing={"redis-leader-0"})
    forward = PortForward(kubelet, lambda: "redis-leader-0", 6379)  # type: ignore[arg-type]
    try:
        assert ask(forward.port, b"*1\r\n$4\r\nPING\r\n") == b""
        assert kubelet.asked == ["redis-leader-0"]
        error = wait_until(lambda: forward.error, 5)
        assert error.message == (f"The port-forward to pod redis-leader-0 port 6379 failed: {REFUSED.decode()}."), (
            error.message
        )
    finally:
        forward.close()


def test_a_connection_that_sent_more_than_it_keeps_is_not_replayed() -> None:
    upload = b"x" * (REPLAY_LIMIT + 1000)  # more than a replay keeps: replaying the rest would garble it
    kubelet = Kubelet(refusing={"frontend-a"}, refuse_after=len(upload))
    pods = iter(["frontend-a", "frontend-b"])
    forward = PortForward(kubelet, lambda: next(pods), 80)  # type: ignore[arg-type]
    try:
        assert ask(forward.port, upload) == b""
        assert kubelet.asked == ["frontend-a"]
        assert wait_until(lambda: forward.error, 5).message.startswith("The port-forward to pod frontend-a port 80")
    finally:
        forward.close()
