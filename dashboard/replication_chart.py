"""The lag chart: one small inline SVG per follower, drawn on the server from `LagHistory.to_json()`.

Pure functions, no I/O. For each follower the last `window` seconds: the offset gap in bytes (filled area, left
scale), the estimated seconds behind (dashed line, right scale), spans where its link was down (hatched, so they
read without colour), and markers for events — ▼ link down, ▲ link up, F full resync, P partial resync, L leader
restarted, D a drill — each a letter or shape as well as a colour (colour-blind safe); an event inferred rather
than seen (a follower restarted between two samples) says so in its tooltip, and one the leader counted for a
follower it could not tell goes on every chart. Rendering one chart costs
a few hundred string operations; the web layer renders it once per second for all viewers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from itertools import groupby
from typing import Any

WIDTH = 480
HEIGHT = 120
PAD_LEFT = 52
PAD_RIGHT = 44
PAD_TOP = 14
PAD_BOTTOM = 18

MARKS: dict[str, tuple[str, str]] = {
    "link_down": ("▼", "link down"),
    "link_up": ("▲", "link up"),
    "full_resync": ("F", "full resync"),
    "partial_resync": ("P", "partial resync"),
    "leader_restarted": ("L", "leader restarted"),
    "drill": ("D", "drill"),
}


@dataclass(frozen=True)
class FollowerChart:
    """One follower's chart: its name, the SVG markup and the latest values (for the caption)."""

    name: str
    svg: str
    gap_bytes: int | None
    seconds_behind: float | None
    link: str
    gone: bool
    events: tuple[dict[str, Any], ...]


def human_bytes(value: float) -> str:
    if value < 1024:
        return f"{value:.0f} B"
    if value < 1024 * 1024:
        return f"{value / 1024:.1f} KB"
    return f"{value / 1024 / 1024:.1f} MB"


def _nice_max(value: float, floor: float) -> float:
    """A round upper bound ≥ value (1, 2, 5 × 10^n), at least `floor`."""
    value = max(value, floor)
    scale = 1.0
    while scale * 10 <= value:
        scale *= 10
    return next((step * scale for step in (1, 2, 5) if step * scale >= value), 10 * scale)


def render_chart(
    name: str,
    samples: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    now: float,
    window: float,
) -> str:
    """The SVG of one follower: samples [{time, gap_bytes, seconds_behind, link}], events [{time, kind, detail}]."""
    x0, x1 = PAD_LEFT, WIDTH - PAD_RIGHT
    y0, y1 = PAD_TOP, HEIGHT - PAD_BOTTOM
    start = now - window

    def x(t: float) -> float:
        return round(x0 + (x1 - x0) * (t - start) / window, 1)

    shown = [s for s in samples if s["time"] >= start - 2]
    gaps = [s["gap_bytes"] for s in shown if isinstance(s.get("gap_bytes"), int)]
    secs = [s["seconds_behind"] for s in shown if isinstance(s.get("seconds_behind"), int | float)]
    gap_max = _nice_max(max(gaps, default=0), 100)
    sec_max = _nice_max(max(secs, default=0.0), 1)

    def y(v: float, top: float) -> float:
        return round(y1 - (y1 - y0) * max(0.0, min(v, top)) / top, 1)

    parts: list[str] = [
        f'<svg class="lag-svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" preserveAspectRatio="xMidYMid meet" '
        f'aria-label="Replication lag of {escape(name)} over the last {window:.0f} seconds">',
        f'<rect class="plot" x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}"/>',
    ]
    # link-down spans, hatched
    down_from: float | None = None
    spans: list[tuple[float, float]] = []
    for s in shown:
        if s["link"] == "down" and down_from is None:
            down_from = s["time"]
        elif s["link"] != "down" and down_from is not None:
            spans.append((down_from, s["time"]))
            down_from = None
    if down_from is not None:
        spans.append((down_from, now))
    for a, b in spans:
        xa, xb = max(x0, x(a)), min(x1, x(b))
        parts.append(
            f'<rect class="down" x="{xa}" y="{y0}" width="{max(2.0, round(xb - xa, 1))}" height="{y1 - y0}">'
            "<title>link down</title></rect>"
        )
    # gap area (broken where unknown)
    for run in _runs(shown, "gap_bytes"):
        pts = " ".join(f"{x(s['time'])},{y(s['gap_bytes'], gap_max)}" for s in run)
        first, last = x(run[0]["time"]), x(run[-1]["time"])
        parts.append(f'<polygon class="gap" points="{first},{y1} {pts} {last},{y1}"/>')
        parts.append(f'<polyline class="gap-line" points="{pts}"/>')
    for run in _runs(shown, "seconds_behind"):
        pts = " ".join(f"{x(s['time'])},{y(s['seconds_behind'], sec_max)}" for s in run)
        parts.append(f'<polyline class="secs" points="{pts}"/>')
    # event markers
    for e in events:
        if e["time"] < start:
            continue
        mark, label = MARKS.get(str(e["kind"]), ("?", str(e["kind"])))
        ex = x(min(e["time"], now))
        detail = f"{label}: {e.get('detail', '')}".strip(": ")
        parts.append(
            f'<g class="ev ev-{escape(str(e["kind"]))}"><title>{escape(detail)}</title>'
            f'<line x1="{ex}" x2="{ex}" y1="{y0}" y2="{y1}"/>'
            f'<text x="{ex}" y="{y0 - 3}" text-anchor="middle">{mark}</text></g>'
        )
    # axes
    parts.append(f'<text class="axis" x="{x0 - 4}" y="{y0 + 8}" text-anchor="end">{human_bytes(gap_max)}</text>')
    parts.append(f'<text class="axis" x="{x0 - 4}" y="{y1}" text-anchor="end">0</text>')
    parts.append(f'<text class="axis secs-axis" x="{x1 + 4}" y="{y0 + 8}">{sec_max:g} s</text>')
    parts.append(f'<text class="axis" x="{x0}" y="{HEIGHT - 4}">−{window:.0f} s</text>')
    parts.append(f'<text class="axis" x="{x1}" y="{HEIGHT - 4}" text-anchor="end">now</text>')
    parts.append("</svg>")
    return "".join(parts)


def _runs(samples: Iterable[Mapping[str, Any]], key: str) -> list[list[Mapping[str, Any]]]:
    """Consecutive samples whose `key` is a number (a None breaks the line)."""
    return [list(run) for number, run in groupby(samples, lambda s: isinstance(s.get(key), int | float)) if number]


def _on_chart(event: Mapping[str, Any], name: str) -> bool:
    """An event goes on the chart of its follower; a leader restart, a resync the leader counted for a follower it
    could not tell (`attributed` false) and a mark without a node go on every chart."""
    return (
        event.get("node") in (name, None) or event.get("kind") == "leader_restarted" or event.get("attributed") is False
    )


def build_charts(
    history: Mapping[str, Any],
    current: Iterable[str],
    now: float,
    window: float = 150.0,
    drill_marks: Sequence[Mapping[str, Any]] = (),
    limit: int = 4,
) -> list[FollowerChart]:
    """Charts for the followers with samples in the window: the current ones first, then recently gone ones.

    `history` is `LagHistory.to_json()`; `current` the names of the followers that run now; `drill_marks`
    extra markers [{time, kind: "drill", detail, node?}] (a mark without a node goes on every chart).
    """
    running = set(current)
    followers: Mapping[str, list[Mapping[str, Any]]] = history.get("followers", {})
    earliest = min((samples[0]["time"] for samples in followers.values() if samples), default=now)
    window = max(30.0, min(window, now - earliest + 5))  # a young lab fills the chart instead of its right edge
    start = now - window
    events: list[Mapping[str, Any]] = list(history.get("events", []))
    names = [n for n, samples in followers.items() if samples and samples[-1]["time"] >= start]
    names.sort(key=lambda n: (n not in running, n))
    charts: list[FollowerChart] = []
    for name in names[:limit]:
        samples = followers[name]
        mine = sorted((e for e in [*events, *drill_marks] if _on_chart(e, name)), key=lambda e: e["time"])
        last = samples[-1]
        gone = name not in running
        charts.append(
            FollowerChart(
                name=name,
                svg=render_chart(name, samples, mine, now, window),
                gap_bytes=last.get("gap_bytes"),
                seconds_behind=last.get("seconds_behind"),
                link="gone" if gone else str(last.get("link")),
                gone=gone,
                events=tuple(dict(e) for e in mine if e["time"] >= start)[-6:],
            )
        )
    return charts
