"""The endpoints file: where the Redis Services' pods are, as written (atomically) by the local platform.

The file is JSON, `{"redis-leader": [["127.0.0.1", 6379]], "redis-follower": [["127.0.0.1", 7001], ...]}`.
It plays the part of the Service's Endpoints object: the frontend re-reads it when it changes (checked at most
every `interval` seconds, or at once after a connection failure) and keeps the last good content if a read
fails half-way. A missing file or an empty list is not an exception here: `lookup()` says what is wrong in one
sentence, and the HTTP layer turns that into a 503.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

Address = tuple[str, int]
LogFn = Callable[[str], None]


class ServiceUnavailable(Exception):
    """No endpoint of a service can be used, or none answers. `str(exc)` is one sentence; `hint` is the next step."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def parse_endpoints(text: str) -> dict[str, list[Address]]:
    """The services and their endpoints; raise ValueError when the content has the wrong shape."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the top level is not a JSON object")
    out: dict[str, list[Address]] = {}
    for service, items in data.items():
        if not isinstance(items, list):
            raise ValueError(f"{service!r} is not a list")
        addrs: list[Address] = []
        for item in items:
            if (
                not isinstance(item, list)
                or len(item) != 2
                or not isinstance(item[0], str)
                or not isinstance(item[1], int)
                or not 0 < item[1] < 65536
            ):
                raise ValueError(f"{service!r} has an entry that is not [host, port]: {item!r}")
            addrs.append((item[0], item[1]))
        out[str(service)] = addrs
    return out


class EndpointsFile:
    """The current content of the endpoints file, re-read when its inode, mtime or size changes."""

    def __init__(self, path: str, log: LogFn, interval: float = 0.5) -> None:
        self.path = path
        self.interval = interval
        self.version = 0  # bumped whenever the content changes
        self._services: dict[str, list[Address]] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._checked = -1e9
        self._problem: str | None = "not read yet"
        self._log = log

    def refresh(self, force: bool = False) -> None:
        """Re-read the file if it changed; at most every `interval` seconds unless `force`."""
        now = time.monotonic()
        if not force and now - self._checked < self.interval:
            return
        self._checked = now
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._stamp is not None or self._problem != "missing":
                self._set({}, None, "missing")
            return
        except OSError as exc:
            self._set({}, None, f"unreadable ({exc.strerror})")
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            services = parse_endpoints(Path(self.path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            if self._stamp is None:
                self._set({}, stamp, f"invalid ({exc})")
            self._log(f"endpoints file {self.path} could not be read: {exc}")
            return
        self._set(services, stamp, None)

    def _set(self, services: dict[str, list[Address]], stamp: tuple[int, int, int] | None, problem: str | None) -> None:
        if services != self._services or problem != self._problem:
            self.version += 1
            self._log(f"endpoints: {problem or services}")
        self._services = services
        self._stamp = stamp
        self._problem = problem

    def lookup(self, service: str) -> list[Address]:
        """The endpoints of `service` (after a time-gated refresh); raise ServiceUnavailable when there are none."""
        self.refresh()
        if self._problem == "missing":
            raise ServiceUnavailable(
                f"The endpoints file {self.path} does not exist, so no Redis endpoint is known.",
                "Run the Redis steps of the lab first; the platform writes this file when the Services have endpoints.",
            )
        if self._problem is not None:
            raise ServiceUnavailable(
                f"The endpoints file {self.path} is {self._problem}.",
                "The local platform writes this file; restart the lab step that manages the Redis Services.",
            )
        addrs = self._services.get(service)
        if not addrs:
            raise ServiceUnavailable(
                f"The {service} Service has no ready endpoints.",
                f"Check that the {service} pods are Running and ready (kubectl get endpoints {service}).",
            )
        return addrs
