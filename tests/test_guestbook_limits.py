"""The frontend's limits as a server facing a network: head deadline (slowloris), connection cap, bounded memory for a
client that pipelines and never reads, and log lines that request data cannot forge.

Real frontend subprocesses (`tests.test_guestbook.start_frontend`) on loopback, real redis-server processes. Every
attack is bounded in connections, bytes and seconds.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_helpers import RedisProc, start_redis, wait_until
from tests.test_guestbook import raw_exchange, start_frontend, write_endpoints

LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d ")


@pytest.fixture(scope="module")
def leader() -> Iterator[RedisProc]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory, leader: RedisProc) -> Path:
    return write_endpoints(tmp_path_factory.mktemp("limits") / "endpoints.json", [leader.port], [leader.port])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def closed_or_answered(sock: socket.socket) -> bytes | None:
    """What the server sent before closing, or None while the connection is still open and silent."""
    try:
        data = sock.recv(65536)
    except BlockingIOError:
        return None
    except ConnectionResetError:
        return b""
    return data


def test_slowloris_connections_are_closed_at_the_head_deadline(endpoints: Path) -> None:
    fe = start_frontend(endpoints, "--header-timeout", "4", name="slowloris")
    socks: list[socket.socket] = []
    try:
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", fe.port), timeout=5)
            sock.sendall(b"G")
            sock.setblocking(False)
            socks.append(sock)
        started = time.monotonic()
        next_byte = started + 3
        answers: dict[int, bytes] = {}
        while len(answers) < len(socks) and time.monotonic() - started < 10:
            for i, sock in enumerate(socks):
                if i not in answers and (got := closed_or_answered(sock)) is not None:
                    answers[i] = got
            if time.monotonic() >= next_byte:  # a byte every 3 s from each open connection, as slowloris does
                next_byte += 3
                for i, sock in enumerate(socks):
                    if i not in answers:
                        try:
                            sock.send(b"E")
                        except OSError:
                            answers[i] = b""
            assert fe.json("GET", "/healthz")[0] == 200  # meanwhile the frontend keeps serving everyone else
            time.sleep(0.2)
        took = time.monotonic() - started
        assert len(answers) == 200, f"{200 - len(answers)} slow connections still open after {took:.1f} s"
        assert took < 4 + 1 + 3  # the deadline, the once-a-second check, slack for a busy machine
        timed_out = [a for a in answers.values() if a.startswith(b"HTTP/1.1 408 ")]
        assert timed_out, "a partial head is answered 408"
        body = json.loads(timed_out[0].split(b"\r\n\r\n", 1)[1])
        assert body["error"] == "The request head did not arrive within 4 seconds." and body["hint"]
    finally:
        for sock in socks:
            sock.close()
        assert fe.stop() == 0


def test_a_silent_connection_is_closed_after_the_deadline(endpoints: Path) -> None:
    with start_frontend(endpoints, "--header-timeout", "1", name="silent") as fe:
        with socket.create_connection(("127.0.0.1", fe.port), timeout=5) as sock:
            started = time.monotonic()
            assert sock.recv(100) == b""  # closed without an answer: it never asked anything
            assert time.monotonic() - started < 1 + 1 + 2
        # a keep-alive client that sends its requests promptly is not affected
        with socket.create_connection(("127.0.0.1", fe.port), timeout=5) as sock:
            for _ in range(3):
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert b'"ok": true' in sock.recv(65536)
                time.sleep(0.7)


def test_connections_over_the_cap_get_a_json_503(endpoints: Path) -> None:
    fe = start_frontend(endpoints, "--max-connections", "5", name="capped")
    idle = [socket.create_connection(("127.0.0.1", fe.port), timeout=5) for _ in range(5)]
    try:
        time.sleep(0.2)
        data = raw_exchange(fe.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 503 "), data[:100]
        body = json.loads(data.split(b"\r\n\r\n", 1)[1])
        assert body["error"] == "The frontend has 5 open connections, its limit." and body["hint"]
        idle.pop().close()
        wait_until(lambda: fe.request("GET", "/healthz")[0] == 200, 5, what="a free slot")
    finally:
        for sock in idle:
            sock.close()
        assert fe.stop() == 0


def test_a_client_that_pipelines_and_never_reads_costs_bounded_memory(endpoints: Path, leader: RedisProc) -> None:
    fe = start_frontend(endpoints, name="unread")
    value = b",".join(b"%04d " % i + b"x" * 1019 for i in range(1024))[: 1024 * 1024]  # 1 MiB of entries
    leader.command("SET", "guestbook", value)
    try:
        assert len(fe.entries()) == 1024
        before = rss_mb(fe.pid)
        request = b"GET /guestbook.php?cmd=get HTTP/1.1\r\nHost: x\r\n\r\n"
        with socket.create_connection(("127.0.0.1", fe.port), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.sendall(request * 100)  # 100 answers of 1 MiB each: a server that buffers them needs 100+ MB
            peak = before
            for _ in range(20):
                time.sleep(0.1)
                peak = max(peak, rss_mb(fe.pid))
            assert peak - before < 40, f"RSS grew from {before:.0f} to {peak:.0f} MB"
            # everything is still answered, in order, once the client reads
            received = 0
            want = 100 * len(value)
            while received < want:
                chunk = sock.recv(1 << 20)
                assert chunk
                received += chunk.count(b"x" * 1019) * 1019
        assert fe.json("GET", "/healthz")[0] == 200
    finally:
        leader.command("DEL", "guestbook")
        assert fe.stop() == 0


def test_request_data_cannot_forge_log_lines(endpoints: Path) -> None:
    with start_frontend(endpoints, name="forger") as fe:
        attempts = [
            b"GET /x\naddress already in use HTTP/1.1\r\nHost: x\r\n\r\n",  # a bare LF in the target
            b"GET /x HTTP/1.1\r\nX-A: b\nlistening on http://127.0.0.1:1\r\n\r\n",  # a bare LF in a header value
            b"GET /x\rlistening on http://127.0.0.1:1 HTTP/1.1\r\n\r\n",  # a bare CR
            b"GET /address%20already%20in%20use%0Aagain HTTP/1.1\r\nHost: x\r\n\r\n",  # percent-encoded, 404
            b"GET /%E2%80%A8x%C2%85y HTTP/1.1\r\nHost: x\r\n\r\n",  # U+2028 and NEL, line breaks to some readers
        ]
        for payload in attempts:
            data = raw_exchange(fe.port, payload)
            status = int(data.split(b" ", 2)[1])
            assert status in (400, 404), data[:200]
            assert set(json.loads(data.split(b"\r\n\r\n", 1)[1])) == {"error", "hint"}
        wait_until(lambda: len(fe.lines) >= 1 + len(attempts), 5, what="one log record per rejected request")
        assert fe.lines[0].startswith("listening on http://")
        for line in fe.lines[1:]:
            assert LOG_LINE.match(line), line  # every line is a record of its own
            assert "address already in use" not in line.lower() and "listening on" not in line, line
            assert "\u2028" not in line and "\x85" not in line
        assert any("404 GET /address%20already%20in%20use%0Aagain" in line for line in fe.lines), fe.lines
