"""The port-forward's proxy thread closes the websocket's socket however it ends.

websocket-client answers the API server's close frame with `send_close`, which marks the websocket disconnected
with its socket still open; the kubernetes client's `PortForward._proxy` then ends with `websocket.close()`, which
does nothing on a disconnected websocket. `api._PortForward` closes the socket when the thread ends.
"""

from __future__ import annotations

import socket
import threading

import websocket

from dashboard.platforms.kubernetes.api import _PortForward


def proxy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("Kubernetes port forward proxy")]


def test_the_socket_of_a_websocket_the_peer_closed_is_closed_when_the_proxy_ends() -> None:
    ours, theirs = socket.socketpair()
    before = set(proxy_threads())
    ws = websocket.WebSocket()
    ws.sock = ours
    ws.connected = False  # what `send_close` leaves after the peer's close frame: disconnected, socket open
    try:
        forward = _PortForward(ws, [6379])
        (proxy,) = set(proxy_threads()) - before
        proxy.join(timeout=5)
        assert not proxy.is_alive()
        assert ours.fileno() == -1, "the websocket's socket was left open"
        assert forward.local_ports[6379].python.fileno() == -1
        forward.close()
    finally:
        ours.close()
        theirs.close()
