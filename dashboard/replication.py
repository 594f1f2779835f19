"""Replication, derived from plain data: what the Redis nodes say about each other and whether their data agrees.

Pure functions and frozen dataclasses, no I/O. The sampler (`dashboard.sampler`) reads each node once per tick
(`INFO server replication stats`, `GET guestbook`, `DBSIZE`, key digests) and hands the raw values here:

- `parse_info` / `parse_replication` turn `INFO` text into a `NodeReplication` (role, link, offsets, followers,
  and the process's `run_id` and the leader's resync counters `sync_full` / `sync_partial_ok`);
- `diff_entries` / `diff_keys` say what a follower lacks or has in addition to the leader;
- `build_snapshot` assembles a `ReplicationSnapshot` whose `to_json()` is the contract the web layer renders;
- `LagHistory` keeps the last samples per follower (gap in bytes, seconds behind, link) and the events
  (link down/up, full or partial resynchronisation, leader restarted) for a live chart, from both sides: what
  each follower says, and what the leader counted, so that a follower restarted between two samples still shows.

Words: Redis says "master"/"slave" (kept verbatim in `role`); the lab says "leader"/"follower" (`friendly_role`).
"""

from __future__ import annotations

import bisect
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from typing import Any, Literal

from dashboard.guestbook.entries import KEY as GUESTBOOK_KEY
from dashboard.guestbook.entries import split_entries
from dashboard.models import Component

Link = Literal["up", "down"]
FriendlyRole = Literal["leader", "follower"]
EventKind = Literal["link_down", "link_up", "full_resync", "partial_resync", "leader_restarted"]
ResyncKind = Literal["full_resync", "partial_resync"]


# --------------------------------------------------------------------------------------------------- INFO parsing


def parse_info(text: str | bytes) -> dict[str, str]:
    """The `field:value` lines of any `INFO` section as strings; `# Section` headers and blank lines are skipped.
    (One comprehension: the sampler parses three sections of every node on every tick.)"""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and line[0] != "#")


def _int(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
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
        return dict(vars(self))


def parse_connected_follower(value: str) -> ConnectedFollower:
    """Parse the value of a `slaveN` line (`ip=127.0.0.1,port=6380,state=online,offset=60,lag=0`)."""
    fields = {name: item for name, sep, item in (part.partition("=") for part in value.split(",")) if sep}
    return ConnectedFollower(
        ip=fields.get("ip", ""),
        port=_int(fields.get("port")),
        state=fields.get("state", ""),
        offset=_int(fields.get("offset")),
        lag=_int(fields.get("lag")),
    )


_FRIENDLY_ROLES: dict[str | None, FriendlyRole] = {"master": "leader", "slave": "follower"}


@dataclass(frozen=True)
class NodeReplication:
    """What one Redis node says about replication (or why it could not be asked: `error`).

    `role` is Redis's word ("master"/"slave", None when unreachable). `link` is the follower's
    `master_link_status` ("up"/"down"); None for a leader that answered, "down" for any node that did not.
    `offset` is `master_repl_offset` for a leader and `slave_repl_offset` (else `master_repl_offset`) for a follower.
    From the other `INFO` sections, when they were read: `run_id` (a new one means a new process), `tcp_port`, and
    the counters of resyncs this node served as a leader, `sync_full` and `sync_partial_ok` (`INFO stats`).
    `host` is the address the dashboard reached the node at (to match it with a leader's replica list).
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
    run_id: str | None = None
    tcp_port: int | None = None
    sync_full: int | None = None
    sync_partial_ok: int | None = None
    host: str | None = None

    @property
    def friendly_role(self) -> FriendlyRole | None:
        """The lab's word for `role`: "leader" for master, "follower" for slave, None when unknown."""
        return _FRIENDLY_ROLES.get(self.role)


def parse_replication(
    name: str, component: Component, info: Mapping[str, str], host: str | None = None
) -> NodeReplication:
    """A `NodeReplication` from the parsed `INFO` of a node that answered: the `replication` section, and from the
    `server` and `stats` sections when present (`run_id`, `tcp_port`, `sync_full`, `sync_partial_ok`)."""
    node = NodeReplication(
        name=name,
        component=component,
        role=info.get("role"),
        link=None,
        offset=_int(info.get("master_repl_offset")),
        connected_followers=tuple(
            parse_connected_follower(info[key])
            for key in sorted((k for k in info if _slave_index(k) >= 0), key=_slave_index)
        ),
        master_replid=info.get("master_replid"),
        run_id=info.get("run_id") or None,
        tcp_port=_int(info.get("tcp_port")),
        sync_full=_int(info.get("sync_full")),
        sync_partial_ok=_int(info.get("sync_partial_ok")),
        host=host,
    )
    if node.role != "slave":
        return node
    offset = _int(info.get("slave_repl_offset"))
    last_io = _int(info.get("master_last_io_seconds_ago"))
    return replace(
        node,
        link="up" if info.get("master_link_status") == "up" else "down",
        offset=node.offset if offset is None else offset,
        master_host=info.get("master_host"),
        master_port=_int(info.get("master_port")),
        last_io_seconds_ago=None if last_io is None or last_io < 0 else last_io,
        sync_in_progress=info.get("master_sync_in_progress") == "1",
    )


def _slave_index(key: str) -> int:
    """N for a `slaveN` key, else -1."""
    return int(key[5:]) if key.startswith("slave") and key[5:].isdigit() else -1


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
        return {**vars(self), "missing": list(self.missing), "extra": list(self.extra)}


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
        return not (self.missing or self.extra or self.differing) if self.compared else self.counts_equal

    def to_json(self) -> dict[str, object]:
        lists = {"missing": list(self.missing), "extra": list(self.extra), "differing": list(self.differing)}
        return {**vars(self), **lists, "same": self.same}


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


class EntriesCache:
    """Memoises `split_entries` and entry comparisons by raw value, so an unchanged guestbook costs a dict lookup.

    The raw `bytes` are the cache key (Python hashes them once per object; equal values compare with memcmp).
    Identical raw values map to the very same tuple, which also makes snapshot equality checks cheap.
    Bounded: the least recently used items go first.
    """

    def __init__(self, size: int = 16) -> None:
        self.splits = 0  # how many times a value was actually split (for tests and the benchmark)
        self.entries = lru_cache(maxsize=size)(self._split)
        self._diff = lru_cache(maxsize=size)(self._compare)

    def _split(self, raw: bytes) -> tuple[str, ...]:
        self.splits += 1
        return tuple(split_entries(raw))

    def diff(self, leader: bytes, follower: bytes) -> EntryDiff:
        return _IDENTICAL_ENTRIES if leader == follower else self._diff(leader, follower)

    def _compare(self, leader: bytes, follower: bytes) -> EntryDiff:
        return diff_entries(self.entries(leader), self.entries(follower))


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
            "run_id": node.run_id,
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

    @property
    def in_sync(self) -> bool:
        """A leader answered, and every follower: link up, gap 0, same replication id, same entries, same keys."""
        return self.leader is not None and self.leader.error is None and all(f.in_sync for f in self.followers)

    def to_json(self) -> dict[str, Any]:
        """The contract: `leader` {name, role, offset, ...} | null, `followers` [{name, role, link, offset,
        gap_bytes, ...}], `entries` {node: [entry, ...]}, `in_sync`; plus `sampled_at`, `errors`, `keys`.
        Fields may be added here, never renamed. Built once per snapshot and shared: treat it as read-only."""
        return self._json

    @cached_property
    def _json(self) -> dict[str, Any]:
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
                "run_id": leader.run_id,
                "sync_full": leader.sync_full,
                "sync_partial_ok": leader.sync_partial_ok,
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
    return next((min(candidates, key=lambda n: n.name) for candidates in ranked if candidates), None)


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
    leader_data = next((d for d in data if d.replication is leader), None)
    # what every follower is compared with: the leader's data, when it answered
    known = leader_data if leader_data is not None and leader_data.replication.error is None else None
    followers: list[FollowerState] = []
    entries: list[tuple[str, tuple[str, ...]]] = []
    problems: list[tuple[str, str]] = list(errors)
    for d in data:
        node = d.replication
        if node.error is not None:
            problems.append((node.name, node.error))
        elif d.warning is not None:
            problems.append((node.name, d.warning))
        raw = d.guestbook or b""
        if node.error is None:
            entries.append((node.name, cache.entries(raw)))
        if d is leader_data:
            continue
        gap = None
        if leader is not None and leader.offset is not None and node.offset is not None and node.role == "slave":
            gap = leader.offset - node.offset
        replid_matches = None
        if leader is not None and leader.master_replid and node.master_replid and node.role == "slave":
            replid_matches = leader.master_replid == node.master_replid
        if node.error is None and known is not None:
            entry_diff = cache.diff(known.guestbook or b"", raw)
            key_diff = diff_keys(known.keys, d.keys)
            if not key_diff.compared and d.dbsize == known.dbsize:
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
        return dict(vars(self))


@dataclass(frozen=True)
class LagEvent:
    """Something that happened to a follower's (or the leader's) replication, as seen between two samples.

    `inferred`: not seen in any sample of the node itself but deduced (from its new `run_id`, or from the leader's
    resync counters); `detail` says from what. `attributed`: False when the leader counted a resync but which
    follower made it could not be told; `node` is then the leader.
    """

    time: float
    node: str
    kind: EventKind
    detail: str = ""
    inferred: bool = False
    attributed: bool = True

    def to_json(self) -> dict[str, object]:
        return dict(vars(self))


@dataclass(frozen=True)
class _Resync:
    """One resync not yet matched: counted by the leader and not yet explained by a follower's samples, or seen
    on a follower and not yet counted by the leader. `tick` and `time` say when it was first known."""

    kind: ResyncKind
    time: float
    tick: int
    strict: bool = False  # matches only a resync of the same kind (a new follower's first sync is a full one)


@dataclass
class _FollowerTrack:
    samples: deque[LagSample]
    caught_up_at: float
    last_seen_tick: int
    link: Link
    last: NodeReplication  # its latest answer (with the last replication id and run_id known)
    down_since: float | None = None
    full_in_episode: bool = False
    reported_down: bool = False  # the follower itself said master_link_status:down during this outage
    restarted_in_episode: bool = False  # its run_id changed during this outage

    def new_episode(self, down_since: float | None) -> None:
        """An outage starts (at `down_since`) or ends (None): what the previous one showed no longer counts."""
        self.down_since = down_since
        self.full_in_episode = self.reported_down = self.restarted_in_episode = False


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
    `leader_restarted`: the leader's `run_id` changed or its replication offset went backwards (a new, empty
    leader). A changed replication id alone is not one: Redis changes it when it creates the backlog for its
    first follower.

    A follower restarted faster than the sampling interval is seen from two other sides. Its `run_id` changed:
    its process restarted, so its link went down and it resynced (in full, unless the leader counted only a
    partial resync): `link_down`, `link_up` and the resync, marked `inferred`, even when every sample showed its
    link up. And the leader counts every resync it serves (`sync_full`, `sync_partial_ok`): each increase is
    matched with a follower's resync event (either may come first, by a tick); one no follower explains within
    `attribute_after` seconds (and two ticks) is attributed to the follower whose entry in the leader's replica
    list reset (reappeared, went back, or was not online), else to the only follower, else to no one (an event on
    the leader with `attributed` False) — waiting, up to `wait_limit` seconds, while a follower is down or missing
    (it may yet explain it). A follower's first sync (a new follower) is no event.
    Not thread-safe: call from the event loop only.
    """

    def __init__(
        self, max_samples: int = 300, max_events: int = 200, attribute_after: float = 1.0, wait_limit: float = 10.0
    ) -> None:
        self.max_samples = max_samples
        self.attribute_after = attribute_after
        self.wait_limit = wait_limit
        self._tracks: dict[str, _FollowerTrack] = {}
        self.events: deque[LagEvent] = deque(maxlen=max_events)
        self._tick = 0
        self._leader: NodeReplication | None = None  # its latest answer (with the last run_id known)
        self._replicas: dict[tuple[str, int | None], ConnectedFollower] | None = None
        self._replica_resets: dict[tuple[str, int | None], int] = {}  # replica address → tick of its last reset
        self._counted: list[_Resync] = []  # resyncs the leader counted that no follower event explains yet
        self._claimed: list[_Resync] = []  # follower resync events the leader has not counted yet

    def record(
        self, now: float, leader: NodeReplication | None, followers: Iterable[NodeReplication]
    ) -> dict[str, float | None]:
        """Add one sample per follower; returns the estimated seconds behind per follower name."""
        self._tick += 1
        self._record_leader(now, leader)
        leader_offset = leader.offset if leader is not None and leader.error is None else None
        seen = list(followers)
        behind = {node.name: self._record_follower(now, node, leader_offset) for node in seen}
        self._attribute_counted(now, seen)
        for name in [n for n, t in self._tracks.items() if self._tick - t.last_seen_tick >= self.max_samples]:
            del self._tracks[name]
        return behind

    # -- the leader -----------------------------------------------------------------------------------------------

    def _record_leader(self, now: float, leader: NodeReplication | None) -> None:
        if leader is None or leader.error is not None:
            return
        # the same leader's previous answer, None for another leader
        last = self._leader if self._leader is not None and self._leader.name == leader.name else None
        reasons: list[str] = []
        if last is not None and last.run_id and leader.run_id and leader.run_id != last.run_id:
            reasons.append("its run_id changed: a new process")
        # Only a step back of the offset counts: Redis also changes a fresh leader's replication id when it creates
        # the backlog for its first follower, which is no restart.
        if (
            last is not None
            and last.master_replid is not None
            and leader.master_replid is not None
            and last.offset is not None
            and leader.offset is not None
            and leader.offset < last.offset
        ):
            reasons.append("its replication offset went back")
        if reasons:
            self._emit(LagEvent(now, leader.name, "leader_restarted", ", ".join(reasons)))
        if last is None or reasons:  # another leader, or a new process: counters and matching start afresh
            self._counted.clear()
            self._claimed.clear()
            self._replica_resets.clear()
        else:
            self._count_resyncs(now, "full_resync", last.sync_full, leader.sync_full)
            self._count_resyncs(now, "partial_resync", last.sync_partial_ok, leader.sync_partial_ok)
        self._record_replicas(leader, same_leader=last is not None and not reasons)
        self._leader = replace(leader, run_id=leader.run_id or (last.run_id if last is not None else None))

    def _count_resyncs(self, now: float, kind: ResyncKind, before: int | None, after: int | None) -> None:
        """The leader served `after - before` resyncs of `kind` since the last sample: match each with a follower
        event that already claimed it, or keep it to be explained."""
        if before is None or after is None:
            return
        for _ in range(max(0, after - before)):  # CONFIG RESETSTAT sets the counters back: nothing to count
            if _take(self._claimed, kind) is None:
                self._counted.append(_Resync(kind, now, self._tick))

    def _record_replicas(self, leader: NodeReplication, same_leader: bool) -> None:
        """Remember when each entry of the leader's replica list reset: reappeared, went back, or not online."""
        replicas = {(r.ip, r.port): r for r in leader.connected_followers}
        if same_leader and self._replicas is not None:
            for address, replica in replicas.items():
                before = self._replicas.get(address)
                went_back = (
                    before is not None
                    and before.offset is not None
                    and replica.offset is not None
                    and replica.offset < before.offset
                )
                if before is None or went_back or replica.state != "online":
                    self._replica_resets[address] = self._tick
        self._replicas = replicas

    # -- one follower ---------------------------------------------------------------------------------------------

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
                last=node,
                down_since=now if link == "down" else None,
            )
            self._tracks[node.name] = track
            if self._tick > 1:  # a follower new to a running history: its first sync, counted by the leader, no event
                self._claim(now, "full_resync", strict=True)
        else:
            self._events(now, node, link, track)
        track.last_seen_tick = self._tick
        if gap is not None and gap <= 0:
            track.caught_up_at = now
        seconds = round(max(0.0, now - track.caught_up_at), 3)
        track.samples.append(LagSample(now, gap, seconds, link))
        return seconds

    def _events(self, now: float, node: NodeReplication, link: Link, track: _FollowerTrack) -> None:
        name = node.name
        last = track.last
        restarted = node.error is None and bool(node.run_id and last.run_id and node.run_id != last.run_id)
        full_reasons: list[str] = []
        if node.error is None:
            if node.sync_in_progress and not last.sync_in_progress:
                full_reasons.append("sync in progress")
            if node.master_replid and last.master_replid and node.master_replid != last.master_replid:
                full_reasons.append("replication id changed")
            if node.offset is not None and last.offset is not None and node.offset < last.offset:
                full_reasons.append("offset went back")
        if track.link == "up" and link == "down":
            why = node.error or "master_link_status:down"
            self._emit(
                LagEvent(now, name, "link_down", f"{why}; its process restarted (new run_id)" if restarted else why)
            )
            track.new_episode(now)
        if node.error is None and node.link != "up":
            track.reported_down = True
        if restarted and track.down_since is not None:
            track.restarted_in_episode = True
        if full_reasons and not restarted:
            if track.down_since is not None:
                track.full_in_episode = True
            else:
                self._resync_event(now, name, "full_resync", ", ".join(full_reasons))
        if track.link == "down" and link == "up":
            down_for = now - track.down_since if track.down_since is not None else 0.0
            self._emit(LagEvent(now, name, "link_up", f"after {down_for:.1f} s"))
            kind, detail = self._resync_kind(track, full_reasons)
            if kind is not None:
                self._resync_event(now, name, kind, detail)
            track.new_episode(None)
        elif restarted and link == "up":
            # up before and up now, yet another process: it restarted between two samples, and resynced
            gone = "inferred: its process restarted between two samples (new run_id)"
            linked = "inferred: its new process is linked to the leader"
            self._emit(LagEvent(now, name, "link_down", gone, inferred=True))
            self._emit(LagEvent(now, name, "link_up", linked, inferred=True))
            track.restarted_in_episode = True
            kind, detail = self._resync_kind(track, full_reasons)
            track.restarted_in_episode = False
            self._resync_event(now, name, kind or "full_resync", f"inferred: {detail}", inferred=True)
        track.link = link
        if node.error is None:
            replid, run_id = node.master_replid or last.master_replid, node.run_id or last.run_id
            track.last = replace(node, master_replid=replid, run_id=run_id)

    def _resync_kind(self, track: _FollowerTrack, full_reasons: Sequence[str]) -> tuple[ResyncKind | None, str]:
        """Which resync ended an outage: what the follower showed, else what the leader counted meanwhile."""
        counted = {r.kind for r in self._counted}
        if full_reasons or track.full_in_episode:
            return "full_resync", "reconnected with a full sync"
        if track.restarted_in_episode:
            if counted == {"partial_resync"}:
                return "partial_resync", "restarted and reconnected; the leader counted a partial resync"
            return "full_resync", "its process restarted, so it synced in full" + (
                " (the leader counted it: sync_full)" if "full_resync" in counted else ""
            )
        if counted == {"full_resync"}:
            return "full_resync", "reconnected; the leader counted a full sync (sync_full)"
        if "partial_resync" in counted:
            return "partial_resync", "reconnected; the leader counted a partial resync (sync_partial_ok)"
        if track.reported_down:
            return "partial_resync", "reconnected, replication id kept"
        return None, ""

    # -- matching the two sides -----------------------------------------------------------------------------------

    def _resync_event(self, now: float, name: str, kind: ResyncKind, detail: str, inferred: bool = False) -> None:
        self._emit(LagEvent(now, name, kind, detail, inferred=inferred))
        self._claim(now, kind)

    def _claim(self, now: float, kind: ResyncKind, strict: bool = False) -> None:
        """A follower resynced: it explains one resync the leader counted, or one it is about to count."""
        counters_known = self._leader is not None and self._leader.sync_full is not None
        if _take(self._counted, kind, strict) is None and counters_known:
            self._claimed.append(_Resync(kind, now, self._tick, strict))

    def _old(self, item: _Resync, now: float) -> bool:
        return self._tick - item.tick >= 2 and now - item.time >= self.attribute_after

    def _attribute_counted(self, now: float, seen: Sequence[NodeReplication]) -> None:
        """Resyncs the leader counted that no follower explained in time: attribute each to a follower if one
        can be told, else to no one (see the class docstring)."""
        self._claimed = [c for c in self._claimed if not self._old(c, now)]
        if not self._counted:
            return
        seen_names = {n.name for n in seen}
        someone_down = any(self._tracks[n.name].down_since is not None for n in seen)
        keep: list[_Resync] = []
        for item in self._counted:
            # a follower down, or gone from the endpoints since the count (restarting), may yet explain it
            missing = any(
                name not in seen_names and t.last_seen_tick >= item.tick - 2 for name, t in self._tracks.items()
            )
            if not self._old(item, now) or ((someone_down or missing) and now - item.time < self.wait_limit):
                keep.append(item)
                continue
            self._attribute(item, seen)
        self._counted = keep

    def _attribute(self, item: _Resync, seen: Sequence[NodeReplication]) -> None:
        counter = "sync_full" if item.kind == "full_resync" else "sync_partial_ok"
        what = "a full resync" if item.kind == "full_resync" else "a partial resync"
        reset = [
            n
            for n in seen
            if n.host is not None and self._replica_resets.get((n.host, n.tcp_port), -1) >= item.tick - 1
        ]
        if len(reset) == 1:
            name, how = reset[0].name, "its entry in the leader's replica list reset"
        elif len(seen) == 1:
            name, how = seen[0].name, "the only follower"
        else:
            unknown = f"inferred: the leader counted {what} ({counter} grew); which follower made it could not be told"
            leader = self._leader.name if self._leader is not None else "leader"
            self._emit(LagEvent(item.time, leader, item.kind, unknown, inferred=True, attributed=False))
            return
        detail = f"inferred: the leader counted {what} ({counter} grew) no sample of this follower showed; {how}"
        for kind in ("link_down", "link_up", item.kind):
            self._emit(LagEvent(item.time, name, kind, detail, inferred=True))

    def _emit(self, event: LagEvent) -> None:
        """Append `event`, keeping the events in time order (an attributed one may be a second or two late)."""
        if len(self.events) == self.events.maxlen:
            self.events.popleft()
        bisect.insort(self.events, event, key=lambda e: e.time)

    # -- reading --------------------------------------------------------------------------------------------------

    @property
    def has_followers(self) -> bool:
        """Whether any follower has samples: the chart has something to draw (`to_json()["followers"]` not empty)."""
        return bool(self._tracks)

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


def _take(items: list[_Resync], kind: ResyncKind, strict: bool = False) -> _Resync | None:
    """Remove and return the oldest item of `kind`, else (unless `strict`) the oldest one not strict itself: the
    kind of a follower's resync is sometimes a guess, the leader's count is not."""
    at = next((i for i, item in enumerate(items) if item.kind == kind), None)
    if at is None and not strict:
        at = next((i for i, item in enumerate(items) if not item.strict), None)
    return None if at is None else items.pop(at)
