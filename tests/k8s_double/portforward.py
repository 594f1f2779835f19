"""pods/portforward as the kubelet serves it through the API server: v4.channel.k8s.io over a WebSocket.

Per port i, a data channel 2i and an error channel 2i+1, each opened with one frame of [channel, port low byte,
port high byte]; client frames are masked [channel, data...]; a failed dial inside the pod is reported as text on
the error channel, then the websocket closes; the websocket closes when the target closes.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler
from typing import BinaryIO

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PORTFORWARD_PROTOCOL = "v4.channel.k8s.io"
Address = tuple[str, int]


def ws_frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """One unmasked, final WebSocket frame (server to client)."""
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, size])
    elif size < 1 << 16:
        head = bytes([0x80 | opcode, 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 127]) + size.to_bytes(8, "big")
    return head + payload


def read_ws_message(rfile: BinaryIO) -> tuple[int, bytes] | None:
    """One client message (reassembled from fragments; control frames pass through). None at EOF.

    Client frames must be masked (RFC 6455 5.1); an unmasked one is a protocol error (ValueError)."""
    opcode_first = 0
    parts: list[bytes] = []
    while True:
        head = rfile.read(2)
        if len(head) < 2:
            return None
        fin, opcode = head[0] & 0x80, head[0] & 0x0F
        masked, size = head[1] & 0x80, head[1] & 0x7F
        if size == 126:
            size = int.from_bytes(rfile.read(2), "big")
        elif size == 127:
            size = int.from_bytes(rfile.read(8), "big")
        if not masked:
            raise ValueError("unmasked client frame")
        mask = rfile.read(4)
        data = rfile.read(size)
        if len(mask) < 4 or len(data) < size:
            return None
        if size:
            key = int.from_bytes((mask * (size // 4 + 1))[:size], "big")
            data = (int.from_bytes(data, "big") ^ key).to_bytes(size, "big")
        if opcode >= 0x8:  # control frames are never fragmented and may come between fragments
            return opcode, data
        if opcode:
            opcode_first = opcode
        parts.append(data)
        if fin:
            return opcode_first, b"".join(parts)


class PortForwardSession:
    """One upgraded pods/portforward connection: the kubelet's side of the v4.channel.k8s.io protocol."""

    def __init__(
        self, handler: BaseHTTPRequestHandler, pod: str, uid: str, ports: list[int], targets: list[Address | None]
    ) -> None:
        self.handler = handler
        self.pod = pod
        self.uid = uid
        self.ports = ports
        self.targets = targets
        self.sockets: dict[int, socket.socket] = {}  # port index -> connection to the real target
        self._send_lock = threading.Lock()
        self._closed = threading.Event()

    def send(self, payload: bytes, opcode: int = 0x2) -> None:
        with self._send_lock:
            if self._closed.is_set() and opcode != 0x8:
                return
            try:
                self.handler.wfile.write(ws_frame(payload, opcode))
                self.handler.wfile.flush()
            except OSError:
                self._closed.set()

    def _send_close(self, code: int) -> bool:
        """Send the close frame, once: False when it was sent already."""
        with self._send_lock:
            if self._closed.is_set():
                return False
            self._closed.set()
            with contextlib.suppress(OSError):
                self.handler.wfile.write(ws_frame(code.to_bytes(2, "big"), 0x8))
                self.handler.wfile.flush()
        return True

    def close(self, code: int = 1000) -> None:
        """Send a close frame once and stop reading the client."""
        if self._send_close(code):
            with contextlib.suppress(OSError):
                self.handler.connection.shutdown(socket.SHUT_RDWR)

    def close_gracefully(self, timeout: float = 2.0) -> None:
        """Send the close frame, then read (and drop) what the client still sends until its close frame.

        Shutting the socket at once while the client's data is unread makes the kernel answer with a reset,
        which can discard the error frame the client has not read yet.
        """
        if not self._send_close(1000):
            return
        rfile: BinaryIO = self.handler.rfile  # type: ignore[assignment]
        with contextlib.suppress(OSError, ValueError):
            self.handler.connection.settimeout(timeout)
            while True:
                frame = read_ws_message(rfile)
                if frame is None or frame[0] == 0x8:
                    break
        with contextlib.suppress(OSError):
            self.handler.connection.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """The pod's container died: its connections reset, the websocket goes away."""
        for sock in list(self.sockets.values()):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.close()

    def run(self) -> None:
        for index, port in enumerate(self.ports):
            prefix = port.to_bytes(2, "little")
            self.send(bytes([2 * index]) + prefix)
            self.send(bytes([2 * index + 1]) + prefix)
        pumps = []
        for index, (port, target) in enumerate(zip(self.ports, self.targets, strict=True)):
            try:
                if target is None:
                    raise ConnectionRefusedError(f"dial tcp4 127.0.0.1:{port}: connect: connection refused")
                sock = socket.create_connection(target, timeout=5)
                sock.settimeout(None)
            except OSError as exc:
                message = (
                    f"error forwarding port {port} to pod {self.pod}, uid {self.uid}: failed to connect to "
                    f"localhost:{port} inside namespace of the pod: {exc}"
                )
                self.send(bytes([2 * index + 1]) + message.encode())
                continue
            self.sockets[index] = sock
            pump = threading.Thread(target=self._from_target, args=(index, sock), daemon=True)
            pump.start()
            pumps.append(pump)
        if not self.sockets:  # every dial failed: the kubelet ends the stream after reporting it
            self.close_gracefully()
            return
        rfile: BinaryIO = self.handler.rfile  # type: ignore[assignment]
        try:
            while not self._closed.is_set():
                try:
                    frame = read_ws_message(rfile)
                except ValueError:
                    self.close(1002)
                    break
                except OSError:
                    break
                if frame is None:
                    break
                opcode, data = frame
                if opcode == 0x8:
                    self.close()
                    break
                if opcode == 0x9:
                    self.send(data, 0xA)
                    continue
                if opcode not in (0x1, 0x2) or not data:
                    continue
                channel, payload = data[0], data[1:]
                outbound = self.sockets.get(channel // 2) if channel % 2 == 0 else None
                if outbound is not None and payload:
                    try:
                        outbound.sendall(payload)
                    except OSError:
                        break
        finally:
            for sock in self.sockets.values():
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            for pump in pumps:
                pump.join(timeout=5)
            for sock in self.sockets.values():
                sock.close()
            self.close()

    def _from_target(self, index: int, sock: socket.socket) -> None:
        """Target -> client on the port's data channel; when the target closes, the forward ends."""
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            self.send(bytes([2 * index]) + data)
        self.close()
