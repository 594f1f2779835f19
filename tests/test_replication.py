"""Unit tests of `dashboard.replication`: INFO parsing (literal and freshly captured text), comparisons, the snapshot
contract and the lag history."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard.models import Component
from dashboard.replication import (
    ConnectedFollower,
    EntriesCache,
    EntryDiff,
    LagHistory,
    Link,
    NodeData,
    NodeReplication,
    ReplicationSnapshot,
    build_snapshot,
    choose_leader,
    diff_entries,
    diff_keys,
    parse_info,
    parse_replication,
    unreachable_node,
)
from dashboard.replication_chart import build_charts
from tests.redis_helpers import RedisProc, start_redis, wait_until

# Captured from redis-server 7.0.15: a leader one follower is still syncing with, and that follower.
LEADER_INFO = """# Replication\r
role:master\r
connected_slaves:1\r
slave0:ip=127.0.0.1,port=17002,state=wait_bgsave,offset=0,lag=0\r
master_failover_state:no-failover\r
master_replid:4dcc1b84f3737617121f522f97bb225e853f3188\r
master_replid2:0000000000000000000000000000000000000000\r
master_repl_offset:60\r
second_repl_offset:-1\r
repl_backlog_active:1\r
repl_backlog_size:1048576\r
repl_backlog_first_byte_offset:1\r
repl_backlog_histlen:60\r
"""

FOLLOWER_DOWN_INFO = """# Replication\r
role:slave\r
master_host:127.0.0.1\r
master_port:17001\r
master_link_status:down\r
master_last_io_seconds_ago:-1\r
master_sync_in_progress:0\r
slave_read_repl_offset:1\r
slave_repl_offset:1\r
master_link_down_since_seconds:-1\r
slave_priority:100\r
slave_read_only:1\r
replica_announced:1\r
connected_slaves:0\r
master_failover_state:no-failover\r
master_replid:940bc231c23912179b73cf89f713fa5af16ee54d\r
master_replid2:0000000000000000000000000000000000000000\r
master_repl_offset:0\r
second_repl_offset:-1\r
repl_backlog_active:0\r
repl_backlog_size:1048576\r
repl_backlog_first_byte_offset:0\r
repl_backlog_histlen:0\r
"""

FOLLOWER_UP_INFO = """# Replication
role:slave
master_host:redis-leader
master_port:6379
master_link_status:up
master_last_io_seconds_ago:3
master_sync_in_progress:1
slave_repl_offset:1500
connected_slaves:0
master_replid:4dcc1b84f3737617121f522f97bb225e853f3188
master_repl_offset:1500
"""

REPLID = "4dcc1b84f3737617121f522f97bb225e853f3188"


# ------------------------------------------------------------------------------------------------------- parsing


def test_parse_info_skips_headers_and_blank_lines_and_keeps_colons_in_values() -> None:
    info = parse_info(b"# Replication\r\nrole:slave\r\n\r\nmaster_host:::1\r\n# Keyspace\r\ndb0:keys=1,expires=0\r\n")
    assert info == {"role": "slave", "master_host": "::1", "db0": "keys=1,expires=0"}
    assert parse_info("") == {}


def test_parse_replication_of_a_leader() -> None:
    node = parse_replication("redis-leader-1", "redis-leader", parse_info(LEADER_INFO))
    assert node.role == "master" and node.friendly_role == "leader"
    assert node.link is None and node.error is None
    assert node.offset == 60
    assert node.master_replid == REPLID
    assert node.connected_followers == (ConnectedFollower("127.0.0.1", 17002, "wait_bgsave", 0, 0),)


def test_parse_replication_of_a_follower_whose_link_is_down() -> None:
    node = parse_replication("redis-follower-1", "redis-follower", parse_info(FOLLOWER_DOWN_INFO))
    assert node.role == "slave" and node.friendly_role == "follower"
    assert node.link == "down"
    assert node.offset == 1  # slave_repl_offset, not master_repl_offset
    assert node.master_host == "127.0.0.1" and node.master_port == 17001
    assert node.last_io_seconds_ago is None  # -1 means never
    assert node.sync_in_progress is False
    assert node.connected_followers == ()


def test_parse_replication_of_a_follower_that_is_up() -> None:
    node = parse_replication("f", "redis-follower", parse_info(FOLLOWER_UP_INFO))
    assert (node.link, node.offset, node.last_io_seconds_ago, node.sync_in_progress) == ("up", 1500, 3, True)
    assert node.master_host == "redis-leader"


def test_follower_offset_falls_back_to_master_repl_offset() -> None:
    node = parse_replication("f", "redis-follower", {"role": "slave", "master_repl_offset": "42"})
    assert node.offset == 42 and node.link == "down"


def test_several_connected_followers_are_parsed_in_order() -> None:
    info = parse_info(
        "role:master\nconnected_slaves:2\n"
        "slave1:ip=10.0.0.2,port=6379,state=online,offset=99,lag=1\n"
        "slave0:ip=10.0.0.1,port=6379,state=online,offset=100,lag=0\n"
        "slaveX:not=a,follower=line\nmaster_repl_offset:100\n"
    )
    node = parse_replication("l", "redis-leader", info)
    assert [(f.ip, f.offset, f.lag) for f in node.connected_followers] == [("10.0.0.1", 100, 0), ("10.0.0.2", 99, 1)]


def test_unreachable_node_has_its_error_and_a_down_link() -> None:
    node = unreachable_node("f", "redis-follower", "ConnectionError: refused")
    assert node.error == "ConnectionError: refused" and node.link == "down"
    assert node.role is None and node.friendly_role is None and node.offset is None


def test_parse_replication_of_real_redis_servers() -> None:
    """The same parsing over `INFO replication` captured now from a leader and a follower this test starts."""
    leader = start_redis()
    follower: RedisProc | None = None
    try:
        follower = start_redis(replicaof=("127.0.0.1", leader.port))

        def node(server: RedisProc, component: Component) -> NodeReplication:
            raw = server.command("INFO", "server", "replication", "stats")  # what the sampler asks, in one command
            assert isinstance(raw, bytes)
            return parse_replication(str(server.port), component, parse_info(raw), host="127.0.0.1")

        leader.command("SET", "guestbook", "a,b")
        wait_until(lambda: follower is not None and follower.command("GET", "guestbook") == b"a,b", timeout=5)
        wait_until(
            lambda: (
                follower is not None and node(leader, "redis-leader").offset == node(follower, "redis-follower").offset
            ),
            timeout=5,
        )
        lead, foll = node(leader, "redis-leader"), node(follower, "redis-follower")
        assert lead.role == "master" and foll.role == "slave" and foll.link == "up" and not foll.sync_in_progress
        assert foll.master_port == leader.port and foll.master_host == "127.0.0.1"
        assert foll.master_replid == lead.master_replid
        assert [(f.port, f.state) for f in lead.connected_followers] == [(follower.port, "online")]
        assert lead.offset is not None and lead.offset > 0
        # the other sections: the process's run id and port, and the resyncs the leader served (one full sync)
        server_info = parse_info(follower.command("INFO", "server"))  # type: ignore[arg-type]
        assert foll.run_id == server_info["run_id"] and len(foll.run_id) == 40 and foll.run_id != lead.run_id
        assert (lead.tcp_port, foll.tcp_port, foll.host) == (leader.port, follower.port, "127.0.0.1")
        assert (lead.sync_full, lead.sync_partial_ok) == (1, 0)
        leader_json = build_snapshot([NodeData(lead), NodeData(foll)]).to_json()["leader"]
        assert (leader_json["run_id"], leader_json["sync_full"], leader_json["sync_partial_ok"]) == (lead.run_id, 1, 0)
    finally:
        if follower is not None:
            follower.stop()
        leader.stop()


# --------------------------------------------------------------------------------------------------- comparison


def test_compare_entries_counts_multiplicity() -> None:
    followers = {"f1": ["a", "b", "c"], "f2": ["c", "b", "a", "b"], "f3": ["a", "x"]}
    diffs = {name: diff_entries(["a", "b", "b", "c"], entries) for name, entries in followers.items()}
    assert diffs["f1"].missing == ("b",) and diffs["f1"].extra == () and not diffs["f1"].same
    assert diffs["f2"].same and not diffs["f2"].same_order and diffs["f2"].missing == diffs["f2"].extra == ()
    assert diffs["f3"].missing == ("b", "b", "c") and diffs["f3"].extra == ("x",)


def test_compare_entries_identical_and_unknown_leader() -> None:
    assert diff_entries(["a"], ["a"]) == EntryDiff(same=True, same_order=True)
    unknown = diff_entries(None, ["a"])
    assert not unknown.compared and not unknown.same and unknown.missing == unknown.extra == ()


def test_compare_keys_ignores_guestbook_and_reports_missing_extra_differing() -> None:
    leader = {"guestbook": b"1", "a": b"x", "b": b"y", "c": b"z"}
    diffs = {
        "f1": diff_keys(leader, {"guestbook": b"2", "a": b"x", "b": b"other", "d": b"w"}),
        "f2": diff_keys(leader, None),
    }
    assert (diffs["f1"].missing, diffs["f1"].extra, diffs["f1"].differing) == (("c",), ("d",), ("b",))
    assert not diffs["f1"].same
    assert not diffs["f2"].compared and not diffs["f2"].same
    assert diff_keys({"guestbook": b"1"}, {}).same
    assert not diff_keys(None, {}).compared


def test_entries_cache_splits_each_raw_value_once() -> None:
    cache = EntriesCache(size=2)
    first = cache.entries(b"a,b%2Cc")
    assert first == ("a", "b,c")
    assert cache.entries(b"a,b%2Cc") is first and cache.splits == 1
    assert cache.diff(b"a,b", b"a,b").same_order
    diff = cache.diff(b"a,b", b"b")
    assert diff.missing == ("a",) and cache.diff(b"a,b", b"b") is diff
    cache.entries(b"x")
    cache.entries(b"y")
    cache.entries(b"a,b%2Cc")  # evicted by the size bound, split again
    assert cache.splits == 6


# ----------------------------------------------------------------------------------------------------- snapshot


def _leader(
    offset: int = 100,
    replid: str = REPLID,
    name: str = "redis-leader-0",
    run_id: str | None = None,
    full: int | None = None,
    partial: int | None = None,
    replicas: tuple[ConnectedFollower, ...] = (),
) -> NodeReplication:
    return NodeReplication(
        name,
        "redis-leader",
        "master",
        None,
        offset,
        master_replid=replid,
        run_id=run_id,
        sync_full=full,
        sync_partial_ok=partial,
        connected_followers=replicas,
    )


def _follower(
    name: str = "redis-follower-a",
    offset: int | None = 100,
    link: Link = "up",
    replid: str | None = REPLID,
    sync_in_progress: bool = False,
    run_id: str | None = None,
    port: int | None = None,
) -> NodeReplication:
    return NodeReplication(
        name,
        "redis-follower",
        "slave",
        link,
        offset,
        master_replid=replid,
        sync_in_progress=sync_in_progress,
        run_id=run_id,
        tcp_port=port,
        host="127.0.0.1" if port is not None else None,
    )


def _data(node: NodeReplication, raw: bytes | None = b"a,b", keys: dict[str, bytes] | None = None) -> NodeData:
    return NodeData(node, guestbook=raw, dbsize=1 + len(keys or {}), keys=keys if keys is not None else {})


def test_empty_snapshot_is_the_contract_with_nothing() -> None:
    out = build_snapshot([]).to_json()
    assert out["leader"] is None and out["followers"] == [] and out["entries"] == {} and out["in_sync"] is False
    assert ReplicationSnapshot().to_json()["in_sync"] is False


def test_snapshot_in_sync_json_contract() -> None:
    snap = build_snapshot(
        [_data(_leader()), _data(_follower()), _data(_follower("redis-follower-b"))],
        sampled_at=12.5,
        seconds_behind={"redis-follower-a": 0.0},
    )
    out = snap.to_json()
    assert snap.in_sync and out["in_sync"] is True
    assert out["sampled_at"] == 12.5
    leader = out["leader"]
    assert isinstance(leader, dict)
    assert {k: leader[k] for k in ("name", "role", "offset")} == {
        "name": "redis-leader-0",
        "role": "master",
        "offset": 100,
    }
    followers = out["followers"]
    assert isinstance(followers, list)
    assert [{k: f[k] for k in ("name", "role", "link", "offset", "gap_bytes")} for f in followers] == [
        {"name": "redis-follower-a", "role": "slave", "link": "up", "offset": 100, "gap_bytes": 0},
        {"name": "redis-follower-b", "role": "slave", "link": "up", "offset": 100, "gap_bytes": 0},
    ]
    assert followers[0]["seconds_behind"] == 0.0 and followers[1]["seconds_behind"] is None
    assert out["entries"] == {n: ["a", "b"] for n in ("redis-follower-a", "redis-follower-b", "redis-leader-0")}
    assert out["errors"] == {}
    assert snap.to_json() is out  # built once per snapshot


@pytest.mark.parametrize(
    ("follower", "raw", "keys"),
    [
        pytest.param(_follower(link="down"), b"a,b", {}, id="link down"),
        pytest.param(_follower(offset=90), b"a,b", {}, id="gap"),
        pytest.param(_follower(replid="0" * 40), b"a,b", {}, id="another replication id"),
        pytest.param(_follower(), b"a", {}, id="entry missing"),
        pytest.param(_follower(), b"b,a", {}, id="entries in another order"),
        pytest.param(_follower(), b"a,b", {"stray": b"1"}, id="extra key"),
        pytest.param(unreachable_node("redis-follower-a", "redis-follower", "timeout"), None, None, id="unreachable"),
    ],
)
def test_snapshot_not_in_sync(follower: NodeReplication, raw: bytes | None, keys: dict[str, bytes] | None) -> None:
    data = NodeData(follower, guestbook=raw, dbsize=None, keys=keys)
    snap = build_snapshot([_data(_leader()), data])
    assert not snap.in_sync and snap.to_json()["in_sync"] is False


def test_snapshot_reports_gap_missing_extra_keys_and_errors() -> None:
    snap = build_snapshot(
        [
            _data(_leader(offset=150), b"a,b,c", {"k": b"1"}),
            _data(_follower(offset=100), b"a,x", {}),
            NodeData(unreachable_node("redis-follower-b", "redis-follower", "ConnectionError: refused")),
        ]
    )
    out = snap.to_json()
    followers = out["followers"]
    assert isinstance(followers, list)
    a, b = followers
    assert a["gap_bytes"] == 50 and a["missing"] == ["b", "c"] and a["extra"] == ["x"]
    assert a["keys"]["missing"] == ["k"]
    assert b["link"] == "down" and b["error"] == "ConnectionError: refused" and b["gap_bytes"] is None
    assert b["role"] is None and b["entries_compared"] is False
    assert out["errors"] == {"redis-follower-b": "ConnectionError: refused"}
    assert set(out["entries"]) == {"redis-leader-0", "redis-follower-a"}  # nothing claimed for an unreachable node
    assert out["keys"] == {"redis-follower-a": a["keys"], "redis-follower-b": b["keys"]}


def test_missing_guestbook_key_counts_as_no_entries() -> None:
    snap = build_snapshot([_data(_leader(), None), _data(_follower(), None)])
    assert snap.in_sync and snap.to_json()["entries"] == {"redis-follower-a": [], "redis-leader-0": []}


def test_leader_only_snapshot_and_unreachable_leader() -> None:
    assert build_snapshot([_data(_leader())]).in_sync  # nothing to be out of sync with
    down = build_snapshot([NodeData(unreachable_node("redis-leader-0", "redis-leader", "refused")), _data(_follower())])
    out = down.to_json()
    assert not down.in_sync
    leader = out["leader"]
    assert isinstance(leader, dict) and leader["error"] == "refused" and leader["offset"] is None
    followers = out["followers"]
    assert isinstance(followers, list) and followers[0]["gap_bytes"] is None and followers[0]["missing"] == []


def test_choose_leader_prefers_a_reachable_master_of_the_leader_component() -> None:
    stray = NodeReplication("redis-follower-x", "redis-follower", "master", None, 5)
    assert choose_leader([stray, _follower()]) is None
    assert choose_leader([stray, _leader()]) == _leader()
    old = unreachable_node("redis-leader-old", "redis-leader", "gone")
    assert choose_leader([old, _leader()]) == _leader()
    assert choose_leader([old]) == old
    snap = build_snapshot([_data(_leader()), _data(stray), _data(_follower())])
    followers = snap.to_json()["followers"]
    assert isinstance(followers, list)
    assert [(f["name"], f["link"], f["gap_bytes"]) for f in followers] == [
        ("redis-follower-a", "up", 0),
        ("redis-follower-x", "down", None),  # a follower pod that is not replicating
    ]
    assert not snap.in_sync


def test_too_many_keys_falls_back_to_equal_key_counts() -> None:
    leader = NodeData(_leader(), b"a", dbsize=5000, keys=None)
    same = NodeData(_follower(), b"a", dbsize=5000, keys=None)
    fewer = NodeData(_follower("redis-follower-b"), b"a", dbsize=4999, keys=None)
    snap = build_snapshot([leader, same, fewer])
    assert [f.keys.same for f in snap.followers] == [True, False]


def test_snapshot_equality_ignores_sampled_at() -> None:
    cache = EntriesCache()
    nodes = [_data(_leader()), _data(_follower())]
    first, second = build_snapshot(nodes, 1.0, cache=cache), build_snapshot(nodes, 2.0, cache=cache)
    assert first == second and first.sampled_at != second.sampled_at
    assert build_snapshot([_data(_leader()), _data(_follower(), b"a")], 3.0, cache=cache) != first
    assert cache.splits == 2


# -------------------------------------------------------------------------------------------------- lag history


def test_seconds_behind_is_time_since_the_follower_last_caught_up() -> None:
    history = LagHistory(max_samples=3)
    assert not history.has_followers and not history.to_json()["followers"]
    history.record(9.0, _leader(100), [])
    assert not history.has_followers  # a leader alone: nothing for the chart
    assert history.record(10.0, _leader(100), [_follower(offset=100)]) == {"redis-follower-a": 0.0}
    assert history.record(11.0, _leader(200), [_follower(offset=150)]) == {"redis-follower-a": 1.0}
    assert history.record(12.5, _leader(300), [_follower(offset=250)]) == {"redis-follower-a": 2.5}
    assert history.record(13.0, _leader(300), [_follower(offset=300)]) == {"redis-follower-a": 0.0}
    assert history.has_followers and list(history.to_json()["followers"]) == ["redis-follower-a"]
    samples = history.samples("redis-follower-a")
    assert [(s.time, s.gap_bytes, s.seconds_behind, s.link) for s in samples] == [
        (11.0, 50, 1.0, "up"),
        (12.5, 50, 2.5, "up"),
        (13.0, 0, 0.0, "up"),
    ]


def test_seconds_behind_of_a_follower_first_seen_lagging_and_an_unreachable_one() -> None:
    history = LagHistory()
    history.record(5.0, _leader(100), [_follower(offset=10)])
    assert history.record(7.0, _leader(100), [_follower(offset=10)]) == {"redis-follower-a": 2.0}
    gone = unreachable_node("redis-follower-a", "redis-follower", "timeout")
    assert history.record(8.0, _leader(100), [gone]) == {"redis-follower-a": 3.0}
    assert history.samples("redis-follower-a")[-1].gap_bytes is None
    assert history.samples("redis-follower-a")[-1].link == "down"


def test_partial_resync_is_down_then_up_with_the_same_replication_id() -> None:
    history = LagHistory()
    history.record(1.0, _leader(), [_follower()])
    history.record(2.0, _leader(), [_follower(link="down")])
    history.record(3.0, _leader(), [_follower()])
    assert [(e.time, e.kind) for e in history.events] == [(2.0, "link_down"), (3.0, "link_up"), (3.0, "partial_resync")]


def test_full_resync_by_sync_in_progress_or_new_replication_id() -> None:
    history = LagHistory()
    history.record(1.0, _leader(), [_follower()])
    history.record(2.0, _leader(), [_follower(link="down", sync_in_progress=True)])
    history.record(3.0, _leader(), [_follower()])
    history.record(4.0, _leader(replid="b" * 40), [_follower(replid="b" * 40, offset=100)])  # no outage seen
    history.record(
        5.0, _leader(offset=150, replid="b" * 40), [_follower(offset=40, replid="b" * 40)]
    )  # offset went back
    kinds = [(e.time, e.node, e.kind) for e in history.events]
    assert kinds == [
        (2.0, "redis-follower-a", "link_down"),
        (3.0, "redis-follower-a", "link_up"),
        (3.0, "redis-follower-a", "full_resync"),
        (4.0, "redis-follower-a", "full_resync"),
        (5.0, "redis-follower-a", "full_resync"),
    ]


def test_an_unanswering_follower_gives_link_events_but_no_resync() -> None:
    history = LagHistory()
    history.record(1.0, _leader(), [_follower()])
    history.record(2.0, _leader(), [unreachable_node("redis-follower-a", "redis-follower", "timeout")])
    history.record(3.0, _leader(), [_follower()])
    assert [e.kind for e in history.events] == ["link_down", "link_up"]
    assert history.events[0].detail == "timeout"


def test_history_forgets_followers_gone_for_a_whole_window_and_serialises() -> None:
    history = LagHistory(max_samples=2)
    history.record(1.0, _leader(), [_follower(), _follower("redis-follower-b")])
    history.record(2.0, _leader(), [_follower()])
    out = history.to_json()
    followers = out["followers"]
    assert isinstance(followers, dict) and set(followers) == {"redis-follower-a", "redis-follower-b"}
    history.record(3.0, _leader(), [_follower()])
    followers = history.to_json()["followers"]
    assert isinstance(followers, dict) and list(followers) == ["redis-follower-a"]
    assert followers["redis-follower-a"] == [
        {"time": 2.0, "gap_bytes": 0, "seconds_behind": 0.0, "link": "up"},
        {"time": 3.0, "gap_bytes": 0, "seconds_behind": 0.0, "link": "up"},
    ]
    assert history.to_json()["max_samples"] == 2 and history.to_json()["events"] == []


def test_leader_restart_is_an_offset_going_back_not_a_new_replication_id() -> None:
    history = LagHistory()
    history.record(1.0, _leader(offset=500), [_follower(offset=500)])
    # Redis gives a fresh leader a new replication id when it creates its backlog: not a restart
    history.record(2.0, _leader(offset=520, replid="b" * 40), [_follower(offset=520, replid="b" * 40)])
    assert [e.kind for e in history.events if e.kind == "leader_restarted"] == []
    history.record(3.0, _leader(offset=14, replid="c" * 40), [_follower(offset=520, replid="b" * 40)])
    assert [(e.time, e.kind) for e in history.events if e.kind == "leader_restarted"] == [(3.0, "leader_restarted")]


# ------------------------------------------------------------- events from the leader's side and from the run id

RUN_A, RUN_A2, RUN_B, RUN_L = "a" * 40, "d" * 40, "b" * 40, "1" * 40


def _kinds(history: LagHistory) -> list[tuple[float, str, str, bool]]:
    return [(e.time, e.node, e.kind, e.inferred) for e in history.events]


def _two(a_run: str = RUN_A, a_link: Link = "up", **a: Any) -> list[NodeReplication]:
    """Follower a (port 7001) and follower b (port 7002), both up unless said otherwise."""
    return [
        _follower(run_id=a_run, link=a_link, port=7001, **a),
        _follower("redis-follower-b", run_id=RUN_B, port=7002),
    ]


def test_a_follower_restarted_between_two_samples_is_link_down_up_and_a_full_resync_inferred() -> None:
    """Every sample shows its link up, but its run id changed and the leader counted a full sync: one restart."""
    history = LagHistory()
    history.record(1.0, _leader(run_id=RUN_L, full=2, partial=0), _two())
    history.record(1.5, _leader(run_id=RUN_L, full=3, partial=0), _two(a_run=RUN_A2))
    for t in (2.0, 2.5, 3.0, 3.5, 4.0):  # the leader's count is matched: nothing more, however long we wait
        history.record(t, _leader(run_id=RUN_L, full=3, partial=0), _two(a_run=RUN_A2))
    assert _kinds(history) == [
        (1.5, "redis-follower-a", "link_down", True),
        (1.5, "redis-follower-a", "link_up", True),
        (1.5, "redis-follower-a", "full_resync", True),
    ]
    assert (
        history.events[0].detail.startswith("inferred: its process restarted") and "run_id" in history.events[0].detail
    )
    assert "the leader counted it" in history.events[2].detail
    assert all(e.attributed for e in history.events)
    out = history.to_json()["events"][0]
    assert out["inferred"] is True and out["attributed"] is True and out["kind"] == "link_down"


def test_a_restart_is_found_by_the_run_id_alone_when_the_leader_has_no_counters() -> None:
    history = LagHistory()
    history.record(1.0, _leader(), [_follower(run_id=RUN_A)])
    history.record(1.5, _leader(), [_follower(run_id=RUN_A2)])
    assert [(e.kind, e.inferred) for e in history.events] == [
        ("link_down", True),
        ("link_up", True),
        ("full_resync", True),
    ]


def test_a_restart_seen_while_its_link_is_down_gives_each_event_once() -> None:
    history = LagHistory()
    history.record(1.0, _leader(run_id=RUN_L, full=2, partial=0), _two())
    history.record(1.5, _leader(run_id=RUN_L, full=3, partial=0), _two(a_run=RUN_A2, a_link="down"))
    history.record(2.0, _leader(run_id=RUN_L, full=3, partial=0), _two(a_run=RUN_A2))
    for t in (2.5, 3.0, 3.5):
        history.record(t, _leader(run_id=RUN_L, full=3, partial=0), _two(a_run=RUN_A2))
    assert _kinds(history) == [
        (1.5, "redis-follower-a", "link_down", False),
        (2.0, "redis-follower-a", "link_up", False),
        (2.0, "redis-follower-a", "full_resync", False),
    ]
    assert history.events[0].detail == "master_link_status:down; its process restarted (new run_id)"
    assert history.events[2].detail.startswith("its process restarted, so it synced in full")


def test_a_restarted_follower_that_was_unreachable_still_gets_its_resync() -> None:
    """Before run ids, an outage where the follower only failed to answer gave no resync event."""
    history = LagHistory()
    history.record(1.0, _leader(run_id=RUN_L, full=2, partial=0), _two())
    gone = unreachable_node("redis-follower-a", "redis-follower", "ConnectionError: refused")
    history.record(1.5, _leader(run_id=RUN_L, full=2, partial=0), [gone, _two()[1]])
    history.record(2.0, _leader(run_id=RUN_L, full=3, partial=0), _two(a_run=RUN_A2))
    assert [(e.node, e.kind) for e in history.events] == [
        ("redis-follower-a", "link_down"),
        ("redis-follower-a", "link_up"),
        ("redis-follower-a", "full_resync"),
    ]


def test_a_follower_missing_from_the_endpoints_while_it_restarts_is_one_restart() -> None:
    """The platform lists only ready pods: the leader counts the sync while the follower is not listed."""
    history = LagHistory()
    history.record(1.0, _leader(run_id=RUN_L, full=2, partial=0), _two())
    for t in (1.5, 2.0, 2.5, 3.0):
        history.record(t, _leader(run_id=RUN_L, full=3, partial=0), _two()[1:])
    history.record(3.5, _leader(run_id=RUN_L, full=3, partial=0), _two(a_run=RUN_A2))
    for t in (4.0, 4.5, 5.0):
        history.record(t, _leader(run_id=RUN_L, full=3, partial=0), _two(a_run=RUN_A2))
    assert [(e.time, e.node, e.kind) for e in history.events] == [
        (3.5, "redis-follower-a", "link_down"),
        (3.5, "redis-follower-a", "link_up"),
        (3.5, "redis-follower-a", "full_resync"),
    ]


def test_a_restart_the_leader_served_with_a_partial_resync_is_a_partial_one() -> None:
    history = LagHistory()
    history.record(1.0, _leader(run_id=RUN_L, full=2, partial=0), _two())
    history.record(1.5, _leader(run_id=RUN_L, full=2, partial=1), _two(a_run=RUN_A2))
    assert [e.kind for e in history.events] == ["link_down", "link_up", "partial_resync"]


def test_a_resync_only_the_leader_counted_goes_to_the_follower_whose_replica_entry_reset() -> None:
    history = LagHistory()
    online = (
        ConnectedFollower("127.0.0.1", 7001, "online", 500, 0),
        ConnectedFollower("127.0.0.1", 7002, "online", 500, 0),
    )
    history.record(1.0, _leader(run_id=RUN_L, full=2, partial=0, replicas=online), _two())
    # b's link broke and resumed between two samples: the leader served a partial resync and lists b anew
    history.record(1.5, _leader(run_id=RUN_L, full=2, partial=1, replicas=online[:1]), _two())
    history.record(2.0, _leader(run_id=RUN_L, full=2, partial=1, replicas=online), _two())
    assert list(history.events) == []  # not yet: a follower's own samples may still explain it
    history.record(2.5, _leader(run_id=RUN_L, full=2, partial=1, replicas=online), _two())
    assert _kinds(history) == [
        (1.5, "redis-follower-b", "link_down", True),
        (1.5, "redis-follower-b", "link_up", True),
        (1.5, "redis-follower-b", "partial_resync", True),
    ]
    assert "sync_partial_ok grew" in history.events[2].detail and "replica list reset" in history.events[2].detail
    history.record(3.0, _leader(run_id=RUN_L, full=2, partial=1, replicas=online), _two())
    assert len(history.events) == 3


def test_a_resync_only_the_leader_counted_goes_to_the_only_follower_or_to_no_one() -> None:
    one = LagHistory()
    one.record(1.0, _leader(run_id=RUN_L, full=1, partial=0), _two()[:1])
    for t in (1.5, 2.0, 2.5):
        one.record(t, _leader(run_id=RUN_L, full=2, partial=0), _two()[:1])
    assert [(e.node, e.kind, e.attributed) for e in one.events] == [
        ("redis-follower-a", "link_down", True),
        ("redis-follower-a", "link_up", True),
        ("redis-follower-a", "full_resync", True),
    ]
    assert "the only follower" in one.events[2].detail
    two = LagHistory()
    two.record(1.0, _leader(run_id=RUN_L, full=2, partial=0), _two())
    for t in (1.5, 2.0, 2.5):
        two.record(t, _leader(run_id=RUN_L, full=3, partial=0), _two())
    assert [(e.time, e.node, e.kind, e.inferred, e.attributed) for e in two.events] == [
        (1.5, "redis-leader-0", "full_resync", True, False)
    ]
    assert "could not be told" in two.events[0].detail


def test_a_counted_resync_waits_for_a_follower_that_is_down_and_is_its_resync() -> None:
    history = LagHistory()
    history.record(1.0, _leader(run_id=RUN_L, full=2, partial=0), _two())
    history.record(1.5, _leader(run_id=RUN_L, full=2, partial=0), _two(a_link="down"))
    for t in (2.0, 2.5, 3.0, 3.5):  # the leader counts a full sync while a is still down (loading the data)
        history.record(t, _leader(run_id=RUN_L, full=3, partial=0), _two(a_link="down"))
    history.record(4.0, _leader(run_id=RUN_L, full=3, partial=0), _two())
    history.record(4.5, _leader(run_id=RUN_L, full=3, partial=0), _two())
    assert [(e.time, e.node, e.kind) for e in history.events] == [
        (1.5, "redis-follower-a", "link_down"),
        (4.0, "redis-follower-a", "link_up"),
        (4.0, "redis-follower-a", "full_resync"),
    ]
    assert history.events[2].detail == "reconnected; the leader counted a full sync (sync_full)"


def test_a_follower_event_the_leader_counts_a_tick_later_is_not_counted_twice() -> None:
    history = LagHistory()
    history.record(1.0, _leader(run_id=RUN_L, full=2, partial=0), _two())
    history.record(1.5, _leader(run_id=RUN_L, full=2, partial=0), _two(a_run=RUN_A2))  # read before it counted
    for t in (2.0, 2.5, 3.0, 3.5):
        history.record(t, _leader(run_id=RUN_L, full=3, partial=0), _two(a_run=RUN_A2))
    assert [(e.node, e.kind) for e in history.events] == [
        ("redis-follower-a", "link_down"),
        ("redis-follower-a", "link_up"),
        ("redis-follower-a", "full_resync"),
    ]


def test_a_new_followers_first_sync_is_no_event() -> None:
    history = LagHistory()
    history.record(1.0, _leader(run_id=RUN_L, full=2, partial=0), _two())
    for t in (1.5, 2.0, 2.5, 3.0):  # scaled to three: the new one syncs in full, the leader counts it
        third = _follower("redis-follower-c", run_id="c" * 40, port=7003)
        history.record(t, _leader(run_id=RUN_L, full=3, partial=0), [*_two(), third])
    assert list(history.events) == []


def test_a_leader_with_a_new_run_id_restarted_and_its_counters_start_afresh() -> None:
    history = LagHistory()
    history.record(1.0, _leader(offset=500, run_id=RUN_L, full=2, partial=0), _two(offset=500))
    # a new leader process, whose offset has already passed the old one: only its run id tells
    history.record(1.5, _leader(offset=900, replid="e" * 40, run_id="2" * 40, full=0, partial=0), _two(offset=500))
    history.record(2.0, _leader(offset=900, replid="e" * 40, run_id="2" * 40, full=0, partial=0), _two(offset=500))
    assert [(e.time, e.node, e.kind) for e in history.events] == [(1.5, "redis-leader-0", "leader_restarted")]
    assert history.events[0].detail == "its run_id changed: a new process"


def test_events_stay_in_time_order_when_an_attributed_one_comes_late() -> None:
    """The leader's count (at 1.5) is attributed only once the follower, down since 2.0, has kept it waiting for
    `wait_limit`: its events go before the link_down of 2.0, and the bounded list drops its oldest."""
    history = LagHistory(max_events=3)
    history.record(1.0, _leader(run_id=RUN_L, full=1, partial=0), _two()[:1])
    history.record(1.5, _leader(run_id=RUN_L, full=2, partial=0), _two()[:1])
    down = [_follower(run_id=RUN_A, link="down", port=7001)]
    history.record(2.0, _leader(run_id=RUN_L, full=2, partial=0), down)
    history.record(11.0, _leader(run_id=RUN_L, full=2, partial=0), down)
    assert [(e.time, e.kind) for e in history.events] == [(2.0, "link_down")]  # still waiting for it
    history.record(12.0, _leader(run_id=RUN_L, full=2, partial=0), down)
    assert [(e.time, e.kind) for e in history.events] == [(1.5, "link_up"), (1.5, "full_resync"), (2.0, "link_down")]


def test_charts_show_a_resync_no_follower_could_be_told_on_every_chart() -> None:
    history = LagHistory()
    history.record(1.0, _leader(run_id=RUN_L, full=2, partial=0), _two())
    for t in (1.5, 2.0, 2.5):
        history.record(t, _leader(run_id=RUN_L, full=3, partial=0), _two())
    history.record(3.0, _leader(run_id=RUN_L, full=3, partial=0), _two(a_run=RUN_A2))
    charts = {c.name: c for c in build_charts(history.to_json(), ["redis-follower-a", "redis-follower-b"], now=4.0)}
    kinds = {name: [(e["node"], e["kind"]) for e in c.events] for name, c in charts.items()}
    assert kinds["redis-follower-b"] == [("redis-leader-0", "full_resync")]
    assert kinds["redis-follower-a"] == [
        ("redis-leader-0", "full_resync"),
        ("redis-follower-a", "link_down"),
        ("redis-follower-a", "link_up"),
        ("redis-follower-a", "full_resync"),
    ]
    assert "inferred: its process restarted" in charts["redis-follower-a"].svg
