"""The shared watches of a workshop room: two cluster-wide watches for the whole room, never one per learner.

`RoomWatch` runs one pods reflector over `/api/v1/pods` narrowed by the room's label (`guestbook-lab/room=<room>`,
which the platform adds to what it applies, pod templates included) and one events reflector over `/api/v1/events`
(events carry no labels of their objects, so they are kept for the room's namespaces only, `<room>-…`). Each
learner's `KubernetesPlatform` subscribes with its namespace and reads its pods and events from these caches;
a change is handed to the subscribers whose namespace it touched, nobody else.

`ROOM_WATCHES` is the process's registry of them, by API server and room, reference-counted: the first learner
lab of a room starts its watches, the last one to close stops them. The watches use an `Api` of their own
(built from the first learner's cluster configuration), so closing any one learner's platform leaves them running.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from dashboard.platforms.kubernetes.api import Api
from dashboard.platforms.kubernetes.config import ClusterConfig
from dashboard.platforms.kubernetes.namespace import ROOM_LABEL_KEY
from dashboard.platforms.kubernetes.reflector import Reflector

JSON = dict[str, Any]
Snapshot = Callable[[dict[str, JSON]], None]


def _by_namespace(snapshot: dict[str, JSON], prefix: str) -> dict[str, dict[str, JSON]]:
    grouped: dict[str, dict[str, JSON]] = {}
    for key, obj in snapshot.items():
        namespace, _, name = key.partition("/")
        if namespace.startswith(prefix):
            grouped.setdefault(namespace, {})[name] = obj
    return grouped


def _versions(objects: dict[str, JSON]) -> dict[str, str]:
    return {name: str(obj["metadata"].get("resourceVersion")) for name, obj in objects.items()}


class RoomWatch:
    """The room's pods and events watches and the learners' namespaces subscribed to them."""

    def __init__(self, api: Api, room: str) -> None:
        self.api = api
        self.room = room
        self.prefix = f"{room}-"
        self._lock = threading.Lock()
        self._subscribers: dict[str, tuple[Snapshot, Snapshot]] = {}  # namespace -> (on_pods, on_events)
        self._pods: dict[str, dict[str, JSON]] = {}
        self._events: dict[str, dict[str, JSON]] = {}
        self._pod_versions: dict[str, dict[str, str]] = {}
        self._event_versions: dict[str, dict[str, str]] = {}
        self.pods = Reflector(api, "/api/v1/pods", "pods", self._on_pods, f"{ROOM_LABEL_KEY}={room}")
        self.events = Reflector(api, "/api/v1/events", "events", self._on_events)

    def start(self) -> None:
        self.pods.start()
        self.events.start()

    def stop(self) -> None:
        self.pods.stop()
        self.events.stop()
        self.api.close()

    def subscribe(self, namespace: str, on_pods: Snapshot, on_events: Snapshot) -> None:
        """Hand this namespace's pods (and events) to the callbacks from now on, starting with what is known."""
        with self._lock:
            self._subscribers[namespace] = (on_pods, on_events)
            pods = dict(self._pods.get(namespace) or {})
        if self.pods.lists:
            on_pods(pods)

    def unsubscribe(self, namespace: str) -> None:
        with self._lock:
            self._subscribers.pop(namespace, None)

    def events_of(self, namespace: str) -> list[JSON]:
        with self._lock:
            return list((self._events.get(namespace) or {}).values())

    def _changed(
        self, snapshot: dict[str, JSON], groups: dict[str, dict[str, JSON]], versions: dict[str, dict[str, str]]
    ) -> list[tuple[tuple[Snapshot, Snapshot], dict[str, JSON]]]:
        """Replace `groups` with the snapshot's; the subscribers whose namespace changed, with their new objects."""
        grouped = _by_namespace(snapshot, self.prefix)
        with self._lock:
            touched = []
            for namespace in set(grouped) | set(groups):
                objects = grouped.get(namespace, {})
                now = _versions(objects)
                if versions.get(namespace) != now:
                    versions[namespace] = now
                    if namespace in self._subscribers:
                        touched.append((self._subscribers[namespace], objects))
            groups.clear()
            groups.update(grouped)
            for namespace in [n for n in versions if n not in grouped]:
                del versions[namespace]
            return touched

    def _on_pods(self, snapshot: dict[str, JSON]) -> None:
        for (on_pods, _), objects in self._changed(snapshot, self._pods, self._pod_versions):
            on_pods(objects)

    def _on_events(self, snapshot: dict[str, JSON]) -> None:
        for (_, on_events), objects in self._changed(snapshot, self._events, self._event_versions):
            on_events(objects)

    def stats(self) -> dict[str, object]:
        """The room's watches (a fixed number, whatever the number of learners) and how they are doing."""
        with self._lock:
            learners = len(self._subscribers)
        error = self.pods.error or self.events.error
        return {
            "room": self.room,
            "learners": learners,
            "watches_open": 2,
            "pods": {"lists": self.pods.lists, "watches": self.pods.watches},
            "events": {"lists": self.events.lists, "watches": self.events.watches},
            "error": error.to_json() if error else None,
        }


class RoomWatches:
    """The process's room watches by (API server, room), reference-counted by the learner labs that use them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rooms: dict[tuple[str, str], tuple[RoomWatch, set[str]]] = {}

    def join(self, cluster: ClusterConfig, room: str, namespace: str) -> RoomWatch:
        """The room's watch, started now if this is the room's first lab."""
        key = (cluster.server, room)
        with self._lock:
            entry = self._rooms.get(key)
            if entry is not None:
                entry[1].add(namespace)
                return entry[0]
            watch = RoomWatch(Api(cluster, ""), room)
            self._rooms[key] = (watch, {namespace})
        watch.start()
        return watch

    def leave(self, watch: RoomWatch, namespace: str) -> None:
        """This lab no longer reads the room's watch; the last to leave stops it."""
        watch.unsubscribe(namespace)
        key = (watch.api.cluster.server, watch.room)
        with self._lock:
            entry = self._rooms.get(key)
            if entry is None or entry[0] is not watch:
                return
            entry[1].discard(namespace)
            if entry[1]:
                return
            del self._rooms[key]
        watch.stop()

    def count(self) -> int:
        with self._lock:
            return len(self._rooms)


ROOM_WATCHES = RoomWatches()
