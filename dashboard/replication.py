"""Replication, derived from plain data: what the Redis nodes say about each other and whether their data agrees.

Pure functions and frozen dataclasses, no I/O. The sampler (`dashboard.sampler`) reads each node once per tick
(`INFO replication`, `GET guestbook`, `DBSIZE`, key digests) and hands the raw values here:

- `parse_info` / `parse_replication` turn `INFO` text into a `NodeReplication` (role, link, offsets, followers);
- `compare_entries` / `compare_keys` say what a follower lacks or has in addition to the leader;
- `build_snapshot` assembles a `ReplicationSnapshot` whose `to_json()` is the contract the web layer renders;
- `LagHistory` keeps the last samples per follower (gap in bytes, seconds behind, link) and the events
  (link down/up, full or partial resynchronisation) for a live chart.

Words: Redis says "master"/"slave" (kept verbatim in `role`); the lab says "leader"/"follower" (`friendly_role`).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from dashboard.guestbook.entries import KEY as GUESTBOOK_KEY
from dashboard.guestbook.entries import split_entries
from dashboard.models import Component

Link = Literal["up", "down"]
FriendlyRole = Literal["leader", "follower"]
EventKind = Literal["link_down", "link_up", "full_resync", "partial_resync", "leader_restarted"]


# --------------------------------------------------------------------------------------------------- INFO parsing


def parse_info(text: str | bytes) -> dict[str, str]:
    """The `field:value` lines of any `INFO` section as strings; `# Section` headers and blank lines are skipped."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    info: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition(":")
        if sep:
            info[name] = value
    return info


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class ConnectedFollower:
    """One `slaveN:ip=..,port=..,state=..,offset=..,lag=..` line of a leader's `INFO replication`."""

    ip: str
    port: int | None
    state: str
    offset: int | None
    lag: int | None

    def to_json(self) -> dict[str, object]:
        return {"ip": self.ip, "port": self.port, "state": self.state, "offset": self.offset, "lag": self.lag}


def parse_connected_follower(value: str) -> ConnectedFollower:
    """Parse the value of a `slaveN` line (`ip=127.0.0.1,port=6380,state=online,offset=60,lag=0`)."""
    fields: dict[str, str] = {}
    for part in value.split(","):
        name, sep, item = part.partition("=")
        if sep:
            fields[name] = item
    return ConnectedFollower(
        ip=fields.get("ip", ""),
        port=_int(fields.get("port")),
        state=fields.get("state", ""),
        offset=_int(fields.get("offset")),
        lag=_int(fields.get("lag")),
    )


@dataclass(frozen=True)
class NodeReplication:
    """What one Redis node says about replication (or why it could not be asked: `error`).

    `role` is Redis's word ("master"/"slave", None when unreachable). `link` is the follower's
    `master_link_status` ("up"/"down"); None for a leader that answered, "down" for any node that did not.
    `offset` is `master_repl_offset` for a leader and `slave_repl_offset` (else `master_repl_offset`) for a follower.
    """

    name: str
    component: Component
    role: str | None
    link: Link | None
    offset: int | None
    master_host: str | None = None
    master_port: int | None = None
    last_io_seconds_ago: int | None = None
    sync_in_progress: bool = False
    connected_followers: tuple[ConnectedFollower, ...] = ()
    master_replid: str | None = None
    error: str | None = None

    @property
    def friendly_role(self) -> FriendlyRole | None:
        """The lab's word for `role`: "leader" for master, "follower" for slave, None when unknown."""
        if self.role == "master":
            return "leader"
        if self.role == "slave":
            return "follower"
        return None

    @property
    def reachable(self) -> bool:
        return self.error is None


def parse_replication(name: str, component: Component, info: Mapping[str, str]) -> NodeReplication:
    """A `NodeReplication` from the parsed `INFO replication` of a node that answered."""
    role = info.get("role")
    followers = tuple(
        parse_connected_follower(value)
        for key, value in sorted(info.items(), key=lambda item: _slave_index(item[0]))
        if _slave_index(key) >= 0
    )
    if role == "slave":
        status = info.get("master_link_status")
        link: Link | None = "up" if status == "up" else "down"
        offset = _int(info.get("slave_repl_offset"))
        if offset is None:
            offset = _int(info.get("master_repl_offset"))
        last_io = _int(info.get("master_last_io_seconds_ago"))
        return NodeReplication(
            name=name,
            component=component,
            role=role,
            link=link,
            offset=offset,
            master_host=info.get("master_host"),
            master_port=_int(info.get("master_port")),
            last_io_seconds_ago=None if last_io is None or last_io < 0 else last_io,
            sync_in_progress=info.get("master_sync_in_progress") == "1",
            connected_followers=followers,
            master_replid=info.get("master_replid"),
        )
    return NodeReplication(
        name=name,
        component=component,
        role=role,
        link=None,
        offset=_int(info.get("master_repl_offset")),
        connected_followers=followers,
        master_replid=info.get("master_replid"),
    )


def _slave_index(key: str) -> int:
    """N for a `slaveN` key, else -1."""
    if key.startswith("slave") and key[5:].isdigit():
        return int(key[5:])
    return -1


def unreachable_node(name: str, component: Component, error: str) -> NodeReplication:
    """A node that could not be asked: `error` says why, its link counts as down."""
    return NodeReplication(name=name, component=component, role=None, link="down", offset=None, error=error)


# ------------------------------------------------------------------------------------------------ data comparison


@dataclass(frozen=True)
class EntryDiff:
    """How a follower's guestbook entries differ from the leader's.

    `missing`: entries the leader has and the follower lacks, `extra`: the reverse, both with multiplicity
    (Counter semantics: an entry twice on the leader and once on the follower is missing once).
    `same`: the same entries in any order. `same_order`: the same list. `compared`: False when the leader's
    entries are unknown (no leader, or it did not answer); then nothing is claimed.
    """

    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    same: bool = False
    same_order: bool = False
    compared: bool = True

    def to_json(self) -> dict[str, object]:
        return {
            "missing": list(self.missing),
            "extra": list(self.extra),
            "same": self.same,
            "same_order": self.same_order,
            "compared": self.compared,
        }


_NOT_COMPARED_ENTRIES = EntryDiff(compared=False)
_IDENTICAL_ENTRIES = EntryDiff(same=True, same_order=True)


def _multiset_minus(left: Sequence[str], right: Sequence[str]) -> tuple[str, ...]:
    """Elements of `left` not matched in `right`, with multiplicity, in `left`'s order."""
    remaining = Counter(right)
    out: list[str] = []
    for item in left:
        if remaining[item] > 0:
            remaining[item] -= 1
        else:
            out.append(item)
    return tuple(out)


def diff_entries(leader: Sequence[str] | None, follower: Sequence[str]) -> EntryDiff:
    """`EntryDiff` of one follower against the leader."""
    if leader is None:
        return _NOT_COMPARED_ENTRIES
    if list(leader) == list(follower):
        return _IDENTICAL_ENTRIES
    missing = _multiset_minus(leader, follower)
    extra = _multiset_minus(follower, leader)
    return EntryDiff(missing=missing, extra=extra, same=not missing and not extra, same_order=False)


def compare_entries(leader: Sequence[str] | None, followers: Mapping[str, Sequence[str]]) -> dict[str, EntryDiff]:
    """Per follower name: what it misses and has in addition compared with the leader's entries."""
    return {name: diff_entries(leader, entries) for name, entries in followers.items()}


@dataclass(frozen=True)
class KeyDiff:
    """How a follower's keys (other than `guestbook`, which is compared by entries) differ from the leader's.

    `missing`: keys on the leader only; `extra`: keys on the follower only; `differing`: on both with another
    value (digest). `compared`: False when either side's keys were not read (too many keys, or unreachable).
    `counts_equal`: when not compared, both hold the same number of keys (`DBSIZE`), the best evidence left.
    """

    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    differing: tuple[str, ...] = ()
    compared: bool = True
    counts_equal: bool = False

    @property
    def same(self) -> bool:
        """As far as we can tell: equal digests when compared, else equal key counts."""
        if not self.compared:
            return self.counts_equal
        return not self.missing and not self.extra and not self.differing

    def to_json(self) -> dict[str, object]:
        return {
            "missing": list(self.missing),
            "extra": list(self.extra),
            "differing": list(self.differing),
            "compared": self.compared,
            "counts_equal": self.counts_equal,
            "same": self.same,
        }


_NOT_COMPARED_KEYS = KeyDiff(compared=False)


def diff_keys(leader: Mapping[str, bytes] | None, follower: Mapping[str, bytes] | None) -> KeyDiff:
    """`KeyDiff` of one follower's key → digest map against the leader's. `guestbook` is ignored."""
    if leader is None or follower is None:
        return _NOT_COMPARED_KEYS
    leader_keys = set(leader) - {GUESTBOOK_KEY}
    follower_keys = set(follower) - {GUESTBOOK_KEY}
    return KeyDiff(
        missing=tuple(sorted(leader_keys - follower_keys)),
        extra=tuple(sorted(follower_keys - leader_keys)),
        differing=tuple(sorted(k for k in leader_keys & follower_keys if leader[k] != follower[k])),
    )


def compare_keys(
    leader: Mapping[str, bytes] | None, followers: Mapping[str, Mapping[str, bytes] | None]
) -> dict[str, KeyDiff]:
    """Per follower name: keys missing, extra and differing compared with the leader (input: key → value digest)."""
    return {name: diff_keys(leader, keys) for name, keys in followers.items()}


class EntriesCache:
    """Memoises `split_entries` and entry comparisons by raw value, so an unchanged guestbook costs a dict lookup.

    The raw `bytes` are the cache key (Python hashes them once per object; equal values compare with memcmp).
    Identical raw values map to the very same tuple, which also makes snapshot equality checks cheap.
    Bounded: the oldest items go first.
    """

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._entries: dict[bytes, tuple[str, ...]] = {}
        self._diffs: dict[tuple[bytes, bytes], EntryDiff] = {}
        self.splits = 0  # how many times a value was actually split (for tests and the benchmark)

    def entries(self, raw: bytes) -> tuple[str, ...]:
        found = self._entries.get(raw)
        if found is None:
            found = tuple(split_entries(raw))
            self.splits += 1
            _put(self._entries, raw, found, self._size)
        return found

    def diff(self, leader: bytes | None, follower: bytes) -> EntryDiff:
        if leader is None:
            return _NOT_COMPARED_ENTRIES
        if leader == follower:
            return _IDENTICAL_ENTRIES
        key = (leader, follower)
        found = self._diffs.get(key)
        if found is None:
            found = diff_entries(self.entries(leader), self.entries(follower))
            _put(self._diffs, key, found, self._size)
        return found


_K = TypeVar("_K")
_V = TypeVar("_V")


def _put(cache: dict[_K, _V], key: _K, value: _V, size: int) -> None:
    while len(cache) >= size:
        del cache[next(iter(cache))]
    cache[key] = value


# ------------------------------------------------------------------------------------------------------- snapshot


@dataclass(frozen=True)
class NodeData:
    """Everything the sampler read from one node in one tick.

    `guestbook`: the raw value of the `guestbook` key (None when absent or unreadable). `keys`: key → digest of
    its value for every key, None when not read (too many keys or unreachable). `warning`: a problem that is not
    unreachability (e.g. `guestbook` holds another type).
    """

    replication: NodeReplication
    guestbook: bytes | None = None
    dbsize: int | None = None
    keys: Mapping[str, bytes] | None = None
    warning: str | None = None


@dataclass(frozen=True)
class FollowerState:
    """One follower in a snapshot: its replication state and how its data compares with the leader's."""

    node: NodeReplication
    gap_bytes: int | None
    seconds_behind: float | None
    replid_matches: bool | None
    entries: EntryDiff
    keys: KeyDiff
    dbsize: int | None

    @property
    def in_sync(self) -> bool:
        return (
            self.node.error is None
            and self.node.link == "up"
            and self.gap_bytes == 0
            and self.replid_matches is not False
            and self.entries.same_order
            and self.keys.same
        )

    def to_json(self) -> dict[str, object]:
        node = self.node
        return {
            "name": node.name,
            "role": node.role,
            "link": node.link or "down",
            "offset": node.offset,
            "gap_bytes": self.gap_bytes,
            "component": node.component,
            "friendly_role": node.friendly_role,
            "seconds_behind": self.seconds_behind,
            "last_io_seconds_ago": node.last_io_seconds_ago,
            "sync_in_progress": node.sync_in_progress,
            "master_host": node.master_host,
            "master_port": node.master_port,
            "master_replid": node.master_replid,
            "replid_matches": self.replid_matches,
            "dbsize": self.dbsize,
            "missing": list(self.entries.missing),
            "extra": list(self.entries.extra),
            "entries_same": self.entries.same,
            "entries_compared": self.entries.compared,
            "keys": self.keys.to_json(),
            "in_sync": self.in_sync,
            "error": node.error,
        }


@dataclass(frozen=True)
class ReplicationSnapshot:
    """The state of every Redis node at one moment. Equality ignores `sampled_at` (the sampler's change detection).

    `entries` maps each node that answered to its guestbook entries (a node without the key maps to ()).
    `errors` maps node name to why it could not be asked or read.
    """

    leader: NodeReplication | None = None
    followers: tuple[FollowerState, ...] = ()
    entries: tuple[tuple[str, tuple[str, ...]], ...] = ()
    errors: tuple[tuple[str, str], ...] = ()
    leader_dbsize: int | None = None
    sampled_at: float = field(default=0.0, compare=False)
    _json: dict[str, Any] | None = field(default=None, init=False, compare=False, repr=False)

    @property
    def in_sync(self) -> bool:
        """A leader answered, and every follower: link up, gap 0, same replication id, same entries, same keys."""
        return self.leader is not None and self.leader.error is None and all(f.in_sync for f in self.followers)

    def to_json(self) -> dict[str, Any]:
        """The contract: `leader` {name, role, offset, ...} | null, `followers` [{name, role, link, offset,
        gap_bytes, ...}], `entries` {node: [entry, ...]}, `in_sync`; plus `sampled_at`, `errors`, `keys`.
        Fields may be added here, never renamed. Built once per snapshot and shared: treat it as read-only."""
        if self._json is None:
            object.__setattr__(self, "_json", self._build_json())
        assert self._json is not None
        return self._json

    def _build_json(self) -> dict[str, Any]:
        leader = self.leader
        leader_json: dict[str, object] | None = None
        if leader is not None:
            leader_json = {
                "name": leader.name,
                "role": leader.role,
                "offset": leader.offset,
                "component": leader.component,
                "friendly_role": leader.friendly_role,
                "master_replid": leader.master_replid,
                "connected_followers": [f.to_json() for f in leader.connected_followers],
                "dbsize": self.leader_dbsize,
                "error": leader.error,
            }
        return {
            "sampled_at": self.sampled_at,
            "leader": leader_json,
            "followers": [f.to_json() for f in self.followers],
            "entries": {name: list(items) for name, items in self.entries},
            "keys": {f.node.name: f.keys.to_json() for f in self.followers},
            "errors": dict(self.errors),
            "in_sync": self.in_sync,
        }


def choose_leader(nodes: Sequence[NodeReplication]) -> NodeReplication | None:
    """The node that leads: a reachable "master" of the redis-leader component, else any reachable "master",
    else an unreachable redis-leader (shown with its error). None when there is no candidate."""
    ranked = [
        [n for n in nodes if n.error is None and n.role == "master" and n.component == "redis-leader"],
        [n for n in nodes if n.error is None and n.role == "master" and n.component != "redis-follower"],
        [n for n in nodes if n.component == "redis-leader"],
    ]
    for candidates in ranked:
        if candidates:
            return min(candidates, key=lambda n: n.name)
    return None


def build_snapshot(
    nodes: Iterable[NodeData],
    sampled_at: float = 0.0,
    seconds_behind: Mapping[str, float | None] | None = None,
    cache: EntriesCache | None = None,
    errors: Iterable[tuple[str, str]] = (),
) -> ReplicationSnapshot:
    """Assemble a snapshot from one tick's reads. `seconds_behind` comes from `LagHistory.record`; `errors`
    adds problems that belong to no node (e.g. ("platform", why the endpoints could not be listed))."""
    data = sorted(nodes, key=lambda d: d.replication.name)
    cache = cache or EntriesCache()
    behind = seconds_behind or {}
    leader = choose_leader([d.replication for d in data])
    leader_data = next((d for d in data if leader is not None and d.replication is leader), None)
    leader_raw: bytes | None = None
    leader_keys: Mapping[str, bytes] | None = None
    leader_known = leader_data is not None and leader_data.replication.error is None
    if leader_data is not None and leader_known:
        leader_raw = leader_data.guestbook if leader_data.guestbook is not None else b""
        leader_keys = leader_data.keys
    followers: list[FollowerState] = []
    entries: list[tuple[str, tuple[str, ...]]] = []
    problems: list[tuple[str, str]] = list(errors)
    for d in data:
        node = d.replication
        if node.error is not None:
            problems.append((node.name, node.error))
        elif d.warning is not None:
            problems.append((node.name, d.warning))
        raw = d.guestbook if d.guestbook is not None else b""
        if node.error is None:
            entries.append((node.name, cache.entries(raw)))
        if d is leader_data:
            continue
        reachable = node.error is None
        gap = None
        if leader is not None and leader.offset is not None and node.offset is not None and node.role == "slave":
            gap = leader.offset - node.offset
        replid_matches = None
        if leader is not None and leader.master_replid and node.master_replid and node.role == "slave":
            replid_matches = leader.master_replid == node.master_replid
        if reachable and leader_known:
            entry_diff = cache.diff(leader_raw, raw)
            key_diff = diff_keys(leader_keys, d.keys)
            if not key_diff.compared and leader_data is not None and d.dbsize == leader_data.dbsize:
                key_diff = KeyDiff(compared=False, counts_equal=True)  # too many keys to read one by one
        else:
            entry_diff, key_diff = _NOT_COMPARED_ENTRIES, _NOT_COMPARED_KEYS
        followers.append(
            FollowerState(
                node=node,
                gap_bytes=gap,
                seconds_behind=behind.get(node.name),
                replid_matches=replid_matches,
                entries=entry_diff,
                keys=key_diff,
                dbsize=d.dbsize,
            )
        )
    return ReplicationSnapshot(
        leader=leader,
        followers=tuple(followers),
        entries=tuple(entries),
        errors=tuple(problems),
        leader_dbsize=leader_data.dbsize if leader_data is not None else None,
        sampled_at=sampled_at,
    )


# ---------------------------------------------------------------------------------------------------- lag history


@dataclass(frozen=True)
class LagSample:
    """One point of a follower's lag chart."""

    time: float
    gap_bytes: int | None
    seconds_behind: float | None
    link: Link

    def to_json(self) -> dict[str, object]:
        return {
            "time": self.time,
            "gap_bytes": self.gap_bytes,
            "seconds_behind": self.seconds_behind,
            "link": self.link,
        }


@dataclass(frozen=True)
class LagEvent:
    """Something that happened to a follower's (or the leader's) replication, as seen between two samples."""

    time: float
    node: str
    kind: EventKind
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return {"time": self.time, "node": self.node, "kind": self.kind, "detail": self.detail}


@dataclass
class _FollowerTrack:
    samples: deque[LagSample]
    caught_up_at: float
    last_seen_tick: int
    link: Link
    replid: str | None
    offset: int | None
    sync_in_progress: bool
    down_since: float | None = None
    full_in_episode: bool = False
    reported_down: bool = False  # the follower itself said master_link_status:down during this outage


class LagHistory:
    """The last `max_samples` lag samples per follower, and replication events, for a live chart.

    Seconds behind (an estimate; Redis reports bytes, not time): for each follower we remember the time of the
    last sample at which its offset equalled or exceeded the leader's offset. While it lags, seconds behind is
    the time elapsed since then (0 when the gap is 0). The first time a follower is seen lagging, that moment
    is the reference, so the value is a lower bound. With a sampling interval I it is accurate to about I.

    Events, from consecutive samples of a follower: `link_down` / `link_up` on transitions (unreachable counts
    as down). A full resynchronisation is recognised by `master_sync_in_progress` turning on, the follower's
    `master_replid` changing, or its offset going backwards; a reconnection (down then up) without any of
    these is a `partial_resync`. A resync seen without an observed outage is reported as `full_resync` at once.
    An outage during which the follower only failed to answer (never itself said `master_link_status:down`)
    gives `link_down` / `link_up` and no resync event: nothing says its replication link broke.
    `leader_restarted`: the leader's replication offset went backwards (a new, empty leader). A changed replication
    id alone is not one: Redis changes it when it creates the backlog for its first follower.
    Not thread-safe: call from the event loop only.
    """

    def __init__(self, max_samples: int = 300, max_events: int = 200) -> None:
        self.max_samples = max_samples
        self._tracks: dict[str, _FollowerTrack] = {}
        self.events: deque[LagEvent] = deque(maxlen=max_events)
        self._tick = 0
        self._leader_replid: str | None = None
        self._leader_offset: int | None = None
        self._leader_name: str | None = None

    def record(
        self, now: float, leader: NodeReplication | None, followers: Iterable[NodeReplication]
    ) -> dict[str, float | None]:
        """Add one sample per follower; returns the estimated seconds behind per follower name."""
        self._tick += 1
        self._record_leader(now, leader)
        leader_offset = leader.offset if leader is not None and leader.error is None else None
        behind: dict[str, float | None] = {}
        for node in followers:
            behind[node.name] = self._record_follower(now, node, leader_offset)
        for name in [n for n, t in self._tracks.items() if self._tick - t.last_seen_tick >= self.max_samples]:
            del self._tracks[name]
        return behind

    def _record_leader(self, now: float, leader: NodeReplication | None) -> None:
        if leader is None or leader.error is not None:
            return
        if leader.name == self._leader_name and self._leader_replid is not None and leader.master_replid is not None:
            went_back = (
                self._leader_offset is not None and leader.offset is not None and leader.offset < self._leader_offset
            )
            # Only a step back counts: Redis also changes a fresh leader's replication id when it creates the
            # backlog for its first follower, which is no restart.
            if went_back:
                self.events.append(LagEvent(now, leader.name, "leader_restarted", "its replication offset went back"))
        self._leader_name = leader.name
        self._leader_replid = leader.master_replid
        self._leader_offset = leader.offset

    def _record_follower(self, now: float, node: NodeReplication, leader_offset: int | None) -> float | None:
        link: Link = "up" if node.error is None and node.link == "up" else "down"
        gap: int | None = None
        if leader_offset is not None and node.offset is not None and node.role == "slave" and node.error is None:
            gap = leader_offset - node.offset
        track = self._tracks.get(node.name)
        if track is None:
            track = _FollowerTrack(
                samples=deque(maxlen=self.max_samples),
                caught_up_at=now,
                last_seen_tick=self._tick,
                link=link,
                replid=node.master_replid,
                offset=node.offset,
                sync_in_progress=node.sync_in_progress,
                down_since=now if link == "down" else None,
            )
            self._tracks[node.name] = track
        else:
            self._events(now, node, link, track)
        track.last_seen_tick = self._tick
        seconds: float | None
        if gap is not None and gap <= 0:
            track.caught_up_at = now
            seconds = 0.0
        else:
            seconds = round(max(0.0, now - track.caught_up_at), 3)
        track.samples.append(LagSample(now, gap, seconds, link))
        return seconds

    def _events(self, now: float, node: NodeReplication, link: Link, track: _FollowerTrack) -> None:
        name = node.name
        full_reasons: list[str] = []
        if node.error is None:
            if node.sync_in_progress and not track.sync_in_progress:
                full_reasons.append("sync in progress")
            if node.master_replid and track.replid and node.master_replid != track.replid:
                full_reasons.append("replication id changed")
            if node.offset is not None and track.offset is not None and node.offset < track.offset:
                full_reasons.append("offset went back")
        if track.link == "up" and link == "down":
            self.events.append(LagEvent(now, name, "link_down", node.error or "master_link_status:down"))
            track.down_since = now
            track.full_in_episode = False
            track.reported_down = False
        if node.error is None and node.link != "up":
            track.reported_down = True
        if full_reasons:
            if track.down_since is not None:
                track.full_in_episode = True
            else:
                self.events.append(LagEvent(now, name, "full_resync", ", ".join(full_reasons)))
        if track.link == "down" and link == "up":
            down_for = now - track.down_since if track.down_since is not None else 0.0
            self.events.append(LagEvent(now, name, "link_up", f"after {down_for:.1f} s"))
            if track.full_in_episode or full_reasons:
                self.events.append(LagEvent(now, name, "full_resync", "reconnected with a full sync"))
            elif track.reported_down:
                self.events.append(LagEvent(now, name, "partial_resync", "reconnected, replication id kept"))
            track.down_since = None
            track.full_in_episode = False
            track.reported_down = False
        track.link = link
        if node.error is None:
            track.replid = node.master_replid or track.replid
            track.offset = node.offset
            track.sync_in_progress = node.sync_in_progress

    def samples(self, name: str) -> list[LagSample]:
        track = self._tracks.get(name)
        return list(track.samples) if track is not None else []

    def to_json(self) -> dict[str, Any]:
        """{"max_samples", "followers": {name: [{time, gap_bytes, seconds_behind, link}, ...]}, "events": [...]}"""
        return {
            "max_samples": self.max_samples,
            "followers": {name: [s.to_json() for s in t.samples] for name, t in sorted(self._tracks.items())},
            "events": [e.to_json() for e in self.events],
        }
