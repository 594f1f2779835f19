"""Pure parts of the replication views: load bounds, the append answer check, the pooled HTTP client, the lag
chart's SVG (markers, link-down spans, scales, gone followers) and the highlighting of Redis log lines."""

from __future__ import annotations

import asyncio

import pytest

from dashboard.errors import BadRequest
from dashboard.logs import classify_log
from dashboard.probe import FrontendHttp, append_ok, check_params
from dashboard.redis_nodes import SyncCounters, resync_words
from dashboard.replication_chart import build_charts, human_bytes, render_chart


def test_load_bounds() -> None:
    assert check_params(50, 10) == (50, 10.0)
    for rate, seconds in ((0, 1), (501, 1), (10, 61), ("x", 1), (None, 1), ("50", 10), (True, 10)):
        with pytest.raises(BadRequest):
            check_params(rate, seconds)


def test_append_answer_is_checked_by_its_start() -> None:
    assert append_ok(200, b'{"message": "Updated", "entries": ["a"]}')
    assert not append_ok(200, b'{"data": "a,b"}')  # upstream PHP: an unknown cmd is a read
    assert not append_ok(503, b'{"message": "Updated"}')


def test_frontend_http_reads_bodies_and_reuses_one_pooled_connection() -> None:
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno",
    ]

    async def main() -> list[tuple[int, bytes]]:
        requests: list[bytes] = []
        connections = 0

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            for answer in answers:
                requests.append(await reader.readuntil(b"\r\n\r\n"))
                writer.write(answer)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with FrontendHttp(connections=4) as http:
            got = [
                await http.get(f"http://127.0.0.1:{port}/guestbook.php", {"cmd": "append", "value": v}) for v in "abc"
            ]
        server.close()
        assert connections == 1  # keep-alive: one pooled connection for the three requests
        assert requests[0].startswith(b"GET /guestbook.php?cmd=append&value=a HTTP/1.1\r\n")
        assert b"Accept: application/json" in requests[0]
        return got

    assert asyncio.run(main()) == [(200, b"hello"), (200, b"abcde"), (404, b"no")]


def sample(t: float, gap: int | None, secs: float | None, link: str = "up") -> dict[str, object]:
    return {"time": t, "gap_bytes": gap, "seconds_behind": secs, "link": link}


def test_chart_draws_gap_seconds_down_spans_and_markers() -> None:
    samples = [sample(100 + i, g, s, "down" if 5 <= i < 8 else "up") for i, (g, s) in enumerate(
        [(0, 0), (0, 0), (300, 1), (900, 2), (1200, 3), (None, None), (None, None), (None, None), (0, 0), (0, 0)]
    )]  # fmt: skip
    events = [
        {"time": 105, "kind": "link_down", "detail": "x"},
        {"time": 108, "kind": "partial_resync", "detail": "<b>"},
        {"time": 20, "kind": "full_resync", "detail": "too old"},
    ]
    svg = render_chart("f<1>", samples, events, now=110, window=30)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "f&lt;1&gt;" in svg and "<b>" not in svg  # names and details are escaped
    assert svg.count('class="gap"') == 2  # the unknown samples break the area in two
    assert 'class="down"' in svg and ">▼<" in svg and ">P<" in svg and ">F<" not in svg
    assert "2.0 KB" in svg or "2 KB" in svg or "5 s" in svg


def test_build_charts_orders_current_first_and_marks_gone() -> None:
    history = {
        "followers": {
            "old": [sample(90, 0, 0.0)],
            "b": [sample(99, 10, 0.5), sample(100, 0, 0.0)],
            "a": [sample(100, 5, 0.2, "down")],
        },
        "events": [{"time": 95, "node": "a", "kind": "link_down", "detail": ""}],
    }
    charts = build_charts(history, ["a", "b"], now=101, drill_marks=[{"time": 99, "kind": "drill", "detail": "d"}])
    assert [c.name for c in charts] == ["a", "b", "old"]
    assert charts[0].link == "down" and charts[0].gap_bytes == 5 and len(charts[0].events) == 2
    assert charts[2].gone and charts[2].link == "gone"
    assert human_bytes(512) == "512 B" and human_bytes(2048) == "2.0 KB"


def test_redis_log_lines_are_classified() -> None:
    cases = {
        "1:S 26 Nov 2026 06:32:48.019 * Connecting to MASTER 127.0.0.1:17001": "link",
        "1:S 26 Nov 2026 06:32:48.024 * MASTER <-> REPLICA sync: Finished with success": "ok",
        "1:S 26 Nov 2026 06:32:50.535 * Master accepted a Partial Resynchronization.": "partial",
        "1:M 26 Nov 2026 06:32:50.535 * Partial resynchronization request from r:1 accepted.": "partial",
        "1:S 26 Nov 2026 06:32:48.020 * Full resync from master: febce7:0": "full",
        "1:S 26 Nov 2026 06:32:50.534 # Connection with master lost.": "bad",
        "1:M 26 Nov 2026 06:32:47.000 * Ready to accept connections": "",
    }
    for line, kind in cases.items():
        clock, message, got, _ = classify_log(line)
        assert clock.count(":") == 2 and not message[0].isdigit()
        if kind:
            assert got == kind, line
    assert classify_log("not a redis line")[:3] == ("", "not a redis line", "")


def test_resync_words_count_from_zero_on_a_new_leader() -> None:
    assert resync_words(SyncCounters("a", 2, 0), SyncCounters("a", 2, 1)) == ("partial", 0, 1)
    assert resync_words(SyncCounters("a", 2, 0), SyncCounters("a", 3, 0)) == ("full", 1, 0)
    assert resync_words(SyncCounters("a", 2, 5), SyncCounters("b", 2, 0)) == ("full", 2, 0)
