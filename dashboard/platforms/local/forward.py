"""The local `kubectl port-forward svc/frontend 8080:80`, done right: a TCP forwarder that follows the ready pods.

Each accepted connection is piped to a ready frontend pod chosen round-robin; a pod that does not answer is
skipped, and a pod that dies only ends the connections it carried: the next connection goes to another pod.
With no ready pod the client gets a plain `503 Service Unavailable` instead of a silent reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

NO_POD_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
    b"Content-Length: 51\r\n\r\nNo frontend pod is ready; the forward keeps trying.\n"
)


class Forwarder:
    """Listens on host:port and pipes each connection to one of `targets()` (host, port) pairs."""

    def __init__(self, targets: Callable[[], list[tuple[str, int]]], connect_timeout: float = 1.0) -> None:
        self._targets = targets
        self._connect_timeout = connect_timeout
        self._server: asyncio.Server | None = None
        self._next = 0
        self._connections: set[asyncio.Task[None]] = set()
        self.host = ""
        self.port = 0
        self.note: str | None = None

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port; if that port is busy, on a free port instead (and say so in `note`)."""
        try:
            server = await asyncio.start_server(self._accept, host, port, reuse_address=True)
        except OSError as exc:
            if port == 0 or exc.errno != errno.EADDRINUSE:
                raise
            server = await asyncio.start_server(self._accept, host, 0, reuse_address=True)
            self.note = f"port {port} is in use on {host}, so the frontend is forwarded from a free port instead"
        self._server = server
        sockname = server.sockets[0].getsockname()
        self.host, self.port = str(sockname[0]), int(sockname[1])

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            targets = self._targets()
            if targets:
                start = self._next % len(targets)
                self._next += 1
                targets = targets[start:] + targets[:start]
            for host, port in targets:
                try:
                    pod_reader, pod_writer = await asyncio.wait_for(
                        asyncio.open_connection(host, port), self._connect_timeout
                    )
                except (OSError, TimeoutError):
                    continue
                upstream = pod_writer
                await asyncio.gather(_pipe(client_reader, pod_writer), _pipe(pod_reader, client_writer))
                return
            client_writer.write(NO_POD_RESPONSE)
            with contextlib.suppress(OSError):
                await client_writer.drain()
        finally:
            for writer in (upstream, client_writer):
                if writer is not None:
                    writer.close()
                    with contextlib.suppress(OSError, asyncio.CancelledError):
                        await writer.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the other side (HTTP clients may wait for the reply after sending)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()
