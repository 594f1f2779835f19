"""Classifying Redis log lines for the side-by-side logs panel: which lines are about replication, and how.

Pure: `classify_log(text)` takes one line of `redis-server` output and returns its time, message and kind.
"""

from __future__ import annotations

import re

_REDIS_LOG = re.compile(r"^\d+:[XCSM] \d{1,2} \w{3} \d{4} (\d\d:\d\d:\d\d)\.\d+ [.\-*#] (.*)$")
LOG_KINDS: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    ("bad", "✗", re.compile(r"lost|Error condition|Connection refused|Timeout connecting|I/O error", re.I)),
    (
        "partial",
        "↻",
        re.compile(
            r"partial resynchronization (accepted|request.*accepted)|accepted a Partial|Successful partial", re.I
        ),
    ),
    ("full", "⇄", re.compile(r"Full resync|Starting BGSAVE for SYNC|asks for synchronization|Streamed RDB", re.I)),
    ("ok", "✓", re.compile(r"sync: Finished with success|Synchronization with replica .* succeeded", re.I)),
    ("link", "→", re.compile(r"Connecting to MASTER|Reconnecting to MASTER|MASTER <-> REPLICA sync started", re.I)),
)


def classify_log(text: str) -> tuple[str, str, str, str]:
    """(time, message, kind, icon) of one Redis log line; kind "" for lines that are not about replication."""
    match = _REDIS_LOG.match(text)
    clock, message = (match.group(1), match.group(2)) if match else ("", text)
    for kind, icon, pattern in LOG_KINDS:
        if pattern.search(message):
            return clock, message, kind, icon
    return clock, message, "", ""
