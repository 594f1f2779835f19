"""Fan-out of live changes to every open browser: one `Hub`, topics with version numbers, shared rendering.

One Hub per lab session. Sources (the lab, the platform's pod changes, the Redis sampler, the experiments)
`publish(topic)`. Each browser tab holds one Server-Sent Events stream that waits for any topic's version to
move and then sends that topic's fragment.
Fragments are rendered once per (topic, version) and shared by all tabs, so the number of viewers changes
neither how often Redis or the cluster is asked anything nor how often a template renders.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

# Every live panel of a lab's page; each lab session has its own Hub of these.
TOPICS: tuple[str, ...] = (
    "steps",
    "pods",
    "replication",
    "activity",
    "guestbook",
    "lag",
    "experiments",
    "drills",
    "logs",
    "events",
    "notice",
)


class Hub:
    """Versioned topics and a wake-up for waiters."""

    def __init__(self, topics: tuple[str, ...] = TOPICS) -> None:
        self.versions: dict[str, int] = dict.fromkeys(topics, 0)
        self._event = asyncio.Event()
        self._cache: dict[str, tuple[int, str]] = {}
        self._rendering: dict[str, asyncio.Lock] = {topic: asyncio.Lock() for topic in topics}
        self.viewers = 0  # open live streams (browser tabs) on this lab

    def publish(self, *topics: str) -> None:
        for topic in topics:
            self.versions[topic] += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait_for_change(self, seen: dict[str, int], timeout: float) -> list[str]:
        """The topics whose version differs from `seen` (waiting up to `timeout` for one); [] on timeout."""
        if all(self.versions[t] == seen.get(t) for t in self.versions):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout)
        return [t for t in self.versions if self.versions[t] != seen.get(t)]

    async def rendered(self, topic: str, render: Callable[[], Awaitable[str]]) -> tuple[int, str]:
        """The fragment of `topic` at its current version, rendered at most once per version for all viewers."""
        async with self._rendering[topic]:
            version = self.versions[topic]
            cached = self._cache.get(topic)
            if cached is not None and cached[0] == version:
                return cached
            html = await render()
            self._cache[topic] = (version, html)
            return version, html
