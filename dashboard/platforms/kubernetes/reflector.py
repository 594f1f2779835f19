"""The pod and event reflector: list, then watch from that resourceVersion, in one thread, with a shared cache.

One per namespace and resource, shared by every viewer: the platform's `get_pods()` and `events()` read its cache,
never the API server. The watch thread hands each change to `on_change(snapshot)`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
from collections.abc import Callable
from typing import Any

import urllib3

from dashboard.errors import DashboardError, PlatformError
from dashboard.platforms.kubernetes.api import Api
from dashboard.platforms.kubernetes.errors import translate_status

log = logging.getLogger(__name__)
JSON = dict[str, Any]
WATCH_TIMEOUT_SECONDS = 290  # the server ends a watch after this; we then re-watch from the last resourceVersion


class Reflector:
    """List, then watch from that resourceVersion, in one thread; keeps `cache` (`<namespace>/<name>` -> object)
    current, so one cache serves a namespace's watch and a cluster-wide one alike.

    A watch the server ends normally (timeoutSeconds) is resumed from the last resourceVersion (bookmarks keep
    it fresh); a 410 Gone ERROR event, or a watch that fails, leads to a relist. `on_change(snapshot)` is
    called from the thread after the initial list and after every event.
    """

    def __init__(
        self,
        api: Api,
        path: str,
        resource: str,
        on_change: Callable[[dict[str, JSON]], None],
        label_selector: str | None = None,
    ) -> None:
        self.api = api
        self.path = path
        self.resource = resource
        self.label_selector = label_selector
        self.on_change = on_change
        self.cache: dict[str, JSON] = {}
        self.resource_version = ""
        self.error: DashboardError | None = None
        self.lists = 0
        self.watches = 0
        self.first_attempt = threading.Event()  # set after the first list, successful or not
        self._stop = threading.Event()
        self._response: Any = None
        self._thread = threading.Thread(target=self._run, name=f"watch {resource} -n {api.namespace}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()
            with contextlib.suppress(Exception):
                response.release_conn()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._list()
                self.error = None
                backoff = 0.5
                while not self._stop.is_set() and self._watch():
                    pass
            except DashboardError as exc:
                self.error = exc
                log.warning("watch %s: %s", self.resource, exc.message)
            except Exception as exc:
                self.error = PlatformError(f"The {self.resource} watch failed ({exc}).", "It retries on its own.")
                log.exception("watch %s failed", self.resource)
            finally:
                self.first_attempt.set()
            if self._stop.wait(backoff + random.uniform(0, backoff / 2)):
                return
            backoff = min(backoff * 2, 30.0)

    def _list(self) -> None:
        query = {"labelSelector": self.label_selector}
        _, body = self.api.request("GET", self.path, verb="list", resource=self.resource, query=query)
        self.lists += 1
        self.cache = {namespaced_name(item): item for item in body.get("items") or []}
        self.resource_version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        self.on_change(dict(self.cache))
        self.first_attempt.set()

    def _watch(self) -> bool:
        """One watch request. True: resume watching from the last resourceVersion; False: relist."""
        query = {
            "watch": "true",
            "labelSelector": self.label_selector,
            "resourceVersion": self.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": WATCH_TIMEOUT_SECONDS + random.randint(0, WATCH_TIMEOUT_SECONDS // 10),
        }
        response = self.api.open_watch(self.path, query, self.resource)
        self._response = response
        self.watches += 1
        try:
            if self._stop.is_set():  # stop() ran while the watch was being opened
                return False
            for line in response:  # NDJSON, a line as it arrives (urllib3 splits the chunked stream)
                if self._stop.is_set():
                    return False
                if not line.strip():
                    continue
                event = json.loads(line)
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    code = int(obj.get("code") or 0)
                    if code == 410:
                        log.info("watch %s: %s; relisting", self.resource, obj.get("message"))
                        return False
                    raise translate_status(code or 500, obj, verb="watch", resource=self.resource)
                rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
                if rv:
                    self.resource_version = rv
                if kind == "BOOKMARK":
                    continue
                name = namespaced_name(obj)
                if kind == "DELETED":
                    self.cache.pop(name, None)
                else:
                    self.cache[name] = obj
                self.on_change(dict(self.cache))
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if self._stop.is_set():
                return False
            log.info("watch %s broke (%s); relisting", self.resource, exc)
            return False
        finally:
            self._response = None
            with contextlib.suppress(Exception):
                response.close()
        return not self._stop.is_set()  # the server ended the watch: resume from resource_version


def namespaced_name(obj: JSON) -> str:
    """The cache key of an object: `<namespace>/<name>`."""
    return f"{obj['metadata'].get('namespace') or ''}/{obj['metadata']['name']}"
