"""A port-forward's websocket is closed, socket and all, when the API server closed it first.

websocket-client answers the server's close frame with `send_close`, which marks the websocket disconnected with
its TCP socket still open, and `WebSocket.close()` then does nothing. `portforward.close_websocket` closes the
socket too. Driven here over a socket pair standing in for the API server's connection.
"""

from __future__ import annotations

import socket
import threading

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
