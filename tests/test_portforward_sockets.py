"""A port-forward's websocket over real sockets standing in for the API server's connection.

- Closed, socket and all, when the API server closed it first: websocket-client answers the server's close frame
  with `send_close`, which marks the websocket disconnected with its TCP socket still open, and
  `WebSocket.close()` then does nothing. `portforward.close_websocket` closes the socket too.
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

from dashboard.platforms.kubernetes.portforward import close_websocket, relay

SERVER_CLOSE = b"\x88\x00"  # a server's close frame: FIN + opcode 8, unmasked, no payload


def relayed_until_the_server_closes() -> tuple[websocket.WebSocket, socket.socket, list[socket.socket]]:
    ours, theirs = socket.socketpair()
    local, peer = socket.socketpair()
    ws = websocket.WebSocket()
    ws.sock, ws.connected = ours, True
    theirs.sendall(b"\x82\x03\x00\x79\x18" + b"\x82\x03\x01\x79\x18" + SERVER_CLOSE)  # the two channels, then close
    assert relay(local, ws, threading.Event()) is None
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
        assert outcome == [REFUSED.decode()], "the relay waited on the socket with the frames in the TLS buffer"
    finally:
        closed.set()  # a relay still waiting returns within its 1 s select
        for sock in (client, server, local, peer):
            sock.close()
