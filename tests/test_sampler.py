"""The sampler against REAL redis-server processes: a leader and two followers (`--replicaof`), started and
stopped by this module (by pid), behind a tiny fake platform that only lists their endpoints; then in a real lab
on the local platform, through the app's JSON API: followers and the leader killed with SIGKILL (found by their
pod's address, `INFO server` says the pid) and what the lag history and the write load make of it."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis.exceptions import ResponseError

from dashboard.models import RedisEndpoint
from dashboard.probe import NodeCount, leader_restart, lost_everywhere
from dashboard.replication import ReplicationSnapshot, parse_info
from dashboard.sampler import Sampler, takes_one_info_section
from dashboard.settings import Settings
from dashboard.web import create_app
from tests.polling import until
from tests.redis_helpers import RedisProc, free_port, redis_command, start_redis, wait_until

LEADER, FOLLOWER_A, FOLLOWER_B = "redis-leader-0", "redis-follower-a", "redis-follower-b"


@dataclass
class EndpointsPlatform:
    """Just enough platform for the sampler: a list of endpoints it can change, or an error to raise."""

    endpoints: list[RedisEndpoint] = field(default_factory=list)
    error: Exception | None = None
    calls: int = 0

    async def redis_endpoints(self) -> list[RedisEndpoint]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return list(self.endpoints)


@dataclass
class Cluster:
    leader: RedisProc
    a: RedisProc
    b: RedisProc

    def endpoints(self) -> list[RedisEndpoint]:
        return [
            RedisEndpoint(LEADER, "redis-leader", "127.0.0.1", self.leader.port),
            RedisEndpoint(FOLLOWER_A, "redis-follower", "127.0.0.1", self.a.port),
            RedisEndpoint(FOLLOWER_B, "redis-follower", "127.0.0.1", self.b.port),
        ]

    def platform(self) -> EndpointsPlatform:
        return EndpointsPlatform(self.endpoints())


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    started: list[RedisProc] = []
    try:
        leader = start_redis()
        started.append(leader)
        for _ in range(2):
            started.append(start_redis(replicaof=("127.0.0.1", leader.port)))
        cluster = Cluster(*started)
        yield cluster
        started += [s for s in (cluster.leader, cluster.a, cluster.b) if s not in started]  # replaced by a test
    finally:
        for server in started:
            if server.alive():
                os.kill(server.pid, signal.SIGCONT)  # in case a test stopped it and failed before resuming it
            server.stop()


@pytest.fixture
def clean(cluster: Cluster) -> Cluster:
    """Each test starts from an empty, read-only, caught-up lab."""
    for server in (cluster.a, cluster.b):
        server.command("CONFIG", "SET", "replica-read-only", "yes")
    cluster.leader.command("FLUSHALL")  # replicated: also clears anything written directly on a follower
    for server in (cluster.a, cluster.b):
        wait_until(lambda s=server: s.command("DBSIZE") == 0, timeout=5, what="followers to flush")  # type: ignore[misc]
    return cluster


@asynccontextmanager
async def sampling(platform: EndpointsPlatform, **options: Any) -> AsyncIterator[Sampler]:
    """A Sampler of `platform`, stopped at the end (its clients closed)."""
    sampler = Sampler(platform, **options)
    try:
        yield sampler
    finally:
        await sampler.stop()


async def sample_until(
    sampler: Sampler, predicate: Callable[[ReplicationSnapshot], bool], timeout: float = 10.0
) -> ReplicationSnapshot:
    """Sample until `predicate(snapshot)` holds (poll with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        snapshot = await sampler.sample_now()
        if predicate(snapshot):
            return snapshot
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout} s; last snapshot: {snapshot.to_json()}")
        await asyncio.sleep(0.02)


eventually = until  # the one polling helper (tests.polling), on the event loop


def followers_by_name(snapshot: ReplicationSnapshot) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in snapshot.to_json()["followers"]}


# ----------------------------------------------------------------------------------------------------------- tests


def test_in_sync_lab_shows_leader_followers_and_entries_everywhere(clean: Cluster) -> None:
    async def scenario() -> None:
        async with sampling(clean.platform()) as sampler:
            clean.leader.command("SET", "guestbook", "a,b")
            snapshot = await sample_until(
                sampler, lambda s: s.in_sync and len(s.entries) == 3 and s.entries[0][1] != ()
            )
            out = snapshot.to_json()
            assert out["leader"]["name"] == LEADER and out["leader"]["role"] == "master"
            assert out["leader"]["offset"] > 0
            followers = followers_by_name(snapshot)
            assert set(followers) == {FOLLOWER_A, FOLLOWER_B}
            for follower in followers.values():
                assert (follower["role"], follower["link"], follower["gap_bytes"]) == ("slave", "up", 0)
                assert follower["offset"] == out["leader"]["offset"]
                assert follower["seconds_behind"] == 0.0 and follower["error"] is None
            assert out["entries"] == {LEADER: ["a", "b"], FOLLOWER_A: ["a", "b"], FOLLOWER_B: ["a", "b"]}
            assert out["in_sync"] is True and out["errors"] == {}
            ports = sorted(f["port"] for f in out["leader"]["connected_followers"])
            assert ports == sorted([clean.a.port, clean.b.port])
            # one key per node: one pipeline of three commands each, nothing else
            before = sampler.commands_sent
            await sampler.sample_now()
            assert sampler.commands_sent - before == 9

    asyncio.run(scenario())


def test_a_stopped_follower_shows_down_then_recovers(clean: Cluster) -> None:
    async def scenario() -> None:
        async with sampling(clean.platform(), socket_timeout=0.3, connect_timeout=0.2) as sampler:
            clean.leader.command("SET", "guestbook", "a")
            await sample_until(sampler, lambda s: s.in_sync)
            os.kill(clean.a.pid, signal.SIGSTOP)
            try:
                clean.leader.command("SET", "guestbook", "a,b")
                started = time.monotonic()
                snapshot = await sampler.sample_now()
                assert time.monotonic() - started < 1.5  # bounded by the timeouts, the others are not held up
                out = snapshot.to_json()
                a, b = followers_by_name(snapshot)[FOLLOWER_A], followers_by_name(snapshot)[FOLLOWER_B]
                assert a["link"] == "down" and a["error"] and a["gap_bytes"] is None
                assert FOLLOWER_A in out["errors"] and FOLLOWER_A not in out["entries"]
                assert out["in_sync"] is False
                assert b["error"] is None and b["link"] == "up"
                snapshot = await sample_until(sampler, lambda s: s.to_json()["entries"].get(FOLLOWER_B) == ["a", "b"])
                assert not snapshot.in_sync
            finally:
                os.kill(clean.a.pid, signal.SIGCONT)
            snapshot = await sample_until(sampler, lambda s: s.in_sync)
            assert snapshot.to_json()["entries"][FOLLOWER_A] == ["a", "b"]
            kinds = [(e.node, e.kind) for e in sampler.history.events]
            assert (FOLLOWER_A, "link_down") in kinds and (FOLLOWER_A, "link_up") in kinds
            assert any(s.link == "down" for s in sampler.history.samples(FOLLOWER_A))

    asyncio.run(scenario())


def test_writes_on_a_writable_follower_are_flagged(clean: Cluster) -> None:
    async def scenario() -> None:
        leader, b = clean.leader, clean.b
        async with sampling(clean.platform()) as sampler:
            leader.command("SET", "guestbook", "a,b")
            leader.command("SET", "shared", "1")
            leader.command("SET", "lonely", "1")
            await sample_until(sampler, lambda s: s.in_sync and s.to_json()["entries"].get(FOLLOWER_B) == ["a", "b"])
            b.command("CONFIG", "SET", "replica-read-only", "no")
            b.command("SET", "guestbook", "a,b,c")  # what a frontend writing to the wrong Service would do
            b.command("SET", "stray", "x")
            b.command("SET", "shared", "2")
            b.command("DEL", "lonely")
            snapshot = await sample_until(sampler, lambda s: not s.in_sync)
            out = snapshot.to_json()
            follower = followers_by_name(snapshot)[FOLLOWER_B]
            assert follower["extra"] == ["c"] and follower["missing"] == []
            assert follower["link"] == "up" and follower["gap_bytes"] == 0  # replication itself is fine
            assert out["keys"][FOLLOWER_B] == {
                "missing": ["lonely"],
                "extra": ["stray"],
                "differing": ["shared"],
                "compared": True,
                "counts_equal": False,
                "same": False,
            }
            assert out["keys"][FOLLOWER_A]["same"] is True
            assert out["entries"][FOLLOWER_B] == ["a", "b", "c"] and out["in_sync"] is False
            # the leader writes the key again: the follower's copy is replaced, entries agree; the keys still differ
            leader.command("SET", "guestbook", "a,b")
            snapshot = await sample_until(sampler, lambda s: s.to_json()["entries"][FOLLOWER_B] == ["a", "b"])
            assert followers_by_name(snapshot)[FOLLOWER_B]["extra"] == [] and not snapshot.in_sync

    asyncio.run(scenario())


def test_too_many_keys_are_not_read_one_by_one(clean: Cluster) -> None:
    async def scenario() -> None:
        async with sampling(clean.platform(), key_limit=3) as sampler:
            for i in range(5):
                clean.leader.command("SET", f"k{i}", "v")
            snapshot = await sample_until(sampler, lambda s: s.in_sync and s.leader_dbsize == 5)
            keys = [f["keys"] for f in snapshot.to_json()["followers"]]
            assert [(k["compared"], k["counts_equal"], k["same"]) for k in keys] == [(False, True, True)] * 2
            before = sampler.commands_sent
            await sampler.sample_now()
            assert sampler.commands_sent - before == 9  # no SCAN, no DUMP

    asyncio.run(scenario())


def test_an_unreachable_node_is_an_error_in_the_snapshot_not_a_crash(clean: Cluster) -> None:
    async def scenario() -> None:
        platform = clean.platform()
        platform.endpoints.append(RedisEndpoint("redis-follower-gone", "redis-follower", "127.0.0.1", free_port()))
        async with sampling(platform, interval=0.05) as sampler:
            await sampler.start()
            await eventually(lambda: sampler.ticks >= 3, 10)
            out = sampler.snapshot.to_json()
            gone = followers_by_name(sampler.snapshot)["redis-follower-gone"]
            assert gone["link"] == "down" and "ConnectionError" in gone["error"]
            assert "redis-follower-gone" in out["errors"] and out["in_sync"] is False
            assert followers_by_name(sampler.snapshot)[FOLLOWER_A]["link"] == "up"

    asyncio.run(scenario())


def test_platform_errors_keep_the_last_nodes_and_say_why(clean: Cluster) -> None:
    async def scenario() -> None:
        platform = clean.platform()
        async with sampling(platform) as sampler:
            await sampler.sample_now()
            platform.error = RuntimeError("cluster unreachable")
            out = (await sampler.sample_now()).to_json()
            assert out["errors"] == {"platform": "RuntimeError: cluster unreachable"}
            assert out["leader"]["name"] == LEADER and len(out["followers"]) == 2

    asyncio.run(scenario())


def test_clients_are_cached_and_closed_when_their_endpoint_disappears(clean: Cluster) -> None:
    async def scenario() -> None:
        platform = clean.platform()
        async with sampling(platform) as sampler:
            await sampler.sample_now()
            await sampler.sample_now()
            assert sorted(p for _, p in sampler.client_addresses) == sorted(
                [clean.leader.port, clean.a.port, clean.b.port]
            )
            platform.endpoints = platform.endpoints[:2]
            out = (await sampler.sample_now()).to_json()
            assert [f["name"] for f in out["followers"]] == [FOLLOWER_A]
            assert clean.b.port not in [p for _, p in sampler.client_addresses]
        assert sampler.client_addresses == []

    asyncio.run(scenario())


def test_version_changes_only_with_content_and_listeners_hear_it(clean: Cluster) -> None:
    """A leader alone: its INFO has no moving parts (no follower lag, no pings), so equal ticks are equal."""

    async def scenario() -> None:
        platform = EndpointsPlatform(clean.endpoints()[:1])
        solo = start_redis()
        platform.endpoints = [RedisEndpoint(LEADER, "redis-leader", "127.0.0.1", solo.port)]
        sampler = Sampler(platform)
        heard: list[int] = []
        sampler.add_listener(lambda: heard.append(sampler.version))

        def broken() -> None:
            raise RuntimeError("a broken listener is only logged")

        sampler.add_listener(broken)
        try:
            await sampler.sample_now()
            first = sampler.version
            assert first == 1 and heard == [1]
            for _ in range(3):
                await sampler.sample_now()
            assert sampler.version == first and sampler.ticks == 4
            solo.command("SET", "guestbook", "hello")
            snapshot = await sampler.sample_now()
            assert sampler.version == first + 1 and heard == [1, 2]
            assert snapshot.to_json()["entries"] == {LEADER: ["hello"]}
            assert snapshot.in_sync  # a leader with no follower has nothing to be out of sync with
        finally:
            await sampler.stop()
            solo.stop()

    asyncio.run(scenario())


def test_viewers_cause_no_redis_commands_and_unchanged_values_are_not_split_again(clean: Cluster) -> None:
    async def scenario() -> None:
        async with sampling(clean.platform()) as sampler:
            clean.leader.command("SET", "guestbook", ",".join(f"entry {i}" for i in range(10_000)))
            await sample_until(sampler, lambda s: s.in_sync and len(s.entries[0][1]) == 10_000)
            splits, sent = sampler.entries_cache.splits, sampler.commands_sent
            for _ in range(50):  # fifty viewers read the snapshot
                assert sampler.snapshot.to_json()["in_sync"] is True
            assert sampler.commands_sent == sent
            for _ in range(3):
                await sampler.sample_now()
            assert sampler.entries_cache.splits == splits
            assert sampler.commands_sent - sent == 3 * 9

    asyncio.run(scenario())


def test_the_loop_runs_on_its_own_and_poke_wakes_it(clean: Cluster) -> None:
    async def scenario() -> None:
        platform = clean.platform()
        async with sampling(platform, interval=30) as sampler:  # would sleep for half a minute without poke
            await sampler.start()
            await sampler.start()  # idempotent
            await eventually(lambda: sampler.ticks >= 1, 5)
            sampler.poke()
            await eventually(lambda: sampler.ticks >= 2, 5)
            assert sampler.snapshot.leader is not None
        ticks = sampler.ticks
        await asyncio.sleep(0.05)
        assert sampler.ticks == ticks and platform.calls == ticks

    asyncio.run(scenario())


def test_reconnections_are_partial_or_full_resyncs_in_the_history(clean: Cluster) -> None:
    """A follower pointed at a dead port and back resumes with a partial resync; one detached with
    `REPLICAOF NO ONE` (it takes a new replication id) and re-attached needs a full one."""

    async def scenario() -> None:
        sampler = Sampler(clean.platform(), interval=0.02)
        a, leader = clean.a, clean.leader
        events = sampler.history.events

        def follower_a() -> dict[str, Any]:
            return followers_by_name(sampler.snapshot)[FOLLOWER_A]

        try:
            leader.command("SET", "guestbook", "a")
            await sample_until(sampler, lambda s: s.in_sync)
            await sampler.start()
            a.command("REPLICAOF", "127.0.0.1", str(free_port()))  # nobody listens there: the link stays down
            await eventually(lambda: follower_a()["link"] == "down")
            leader.command("SET", "guestbook", "a,b")
            await eventually(lambda: follower_a()["gap_bytes"] is None or follower_a()["seconds_behind"] > 0)
            a.command("REPLICAOF", "127.0.0.1", str(leader.port))
            await eventually(lambda: any(e.kind in ("partial_resync", "full_resync") for e in events))
            await eventually(lambda: sampler.snapshot.in_sync)
            assert [(e.node, e.kind) for e in events] == [
                (FOLLOWER_A, "link_down"),
                (FOLLOWER_A, "link_up"),
                (FOLLOWER_A, "partial_resync"),
            ]
            a.command("REPLICAOF", "NO", "ONE")
            await eventually(lambda: follower_a()["role"] == "master")
            a.command("REPLICAOF", "127.0.0.1", str(leader.port))
            await eventually(lambda: sum(e.kind == "link_up" for e in events) == 2)
            await eventually(lambda: sampler.snapshot.in_sync)
            assert [(e.node, e.kind) for e in events][3:] == [
                (FOLLOWER_A, "link_down"),
                (FOLLOWER_A, "link_up"),
                (FOLLOWER_A, "full_resync"),
            ]
            history = sampler.history.to_json()
            assert {FOLLOWER_A, FOLLOWER_B} <= set(history["followers"])
            assert any(sample["link"] == "down" for sample in history["followers"][FOLLOWER_A])
            assert len(history["events"]) == 6
        finally:
            await sampler.stop()
            a.command("REPLICAOF", "127.0.0.1", str(leader.port))

    asyncio.run(scenario())


def test_a_redis_older_than_7_is_told_by_its_answer_to_several_info_sections() -> None:
    # Redis 6 answers `INFO server replication stats` with "-ERR syntax error"; redis-py drops the "ERR "
    assert takes_one_info_section(ResponseError("syntax error"))
    assert not takes_one_info_section(ResponseError("NOAUTH Authentication required."))
    assert not takes_one_info_section(b"# Server\r\nredis_version:7.0.15\r\n")


def test_one_info_per_section_reads_the_same_for_two_more_commands_per_node(clean: Cluster) -> None:
    """The path for Redis before 7.0 (forced here on a real 7.0): three INFO commands in the same pipeline."""

    async def scenario() -> None:
        together, apart = Sampler(clean.platform()), Sampler(clean.platform(), one_section_info=True)
        try:
            clean.leader.command("SET", "guestbook", "a")
            snapshots = [await sample_until(s, lambda snap: snap.in_sync) for s in (together, apart)]
            for sampler, per_node in ((together, 3), (apart, 5)):
                before = sampler.commands_sent
                await sampler.sample_now()
                assert sampler.commands_sent - before == 3 * per_node
            one, other = (snap.to_json() for snap in snapshots)
            info = redis_command(clean.a.port, "INFO", "server")
            assert isinstance(info, bytes)
            assert followers_by_name(snapshots[0])[FOLLOWER_A]["run_id"] == parse_info(info)["run_id"]
            for key in ("run_id", "sync_full", "sync_partial_ok"):
                assert one["leader"][key] == other["leader"][key] is not None
            assert [f["run_id"] for f in one["followers"]] == [f["run_id"] for f in other["followers"]]
        finally:
            await together.stop()
            await apart.stop()

    asyncio.run(scenario())


def test_a_follower_restarted_between_two_samples_is_a_link_down_and_a_full_resync(clean: Cluster) -> None:
    """SIGKILL follower a and start a new redis-server on its port before the next sample, twice: once while it is
    off the endpoints (as a platform lists only ready pods: every sample shows its link up, yet its new run_id and
    the leader's sync_full say what happened), once in place (the sampler's kept connection fails once). Each
    restart is one link down, one link up and one full resync."""

    async def scenario() -> None:
        platform = clean.platform()
        sampler = Sampler(platform)
        events = sampler.history.events

        async def restart(unlisted: bool) -> None:
            snapshot = await sample_until(sampler, lambda s: s.in_sync)
            assert snapshot.leader is not None and snapshot.leader.sync_full is not None
            full_before = snapshot.leader.sync_full
            if unlisted:
                platform.endpoints = [e for e in platform.endpoints if e.name != FOLLOWER_A]
                await sampler.sample_now()
            old = clean.a
            os.kill(old.pid, signal.SIGKILL)
            old.proc.wait(timeout=5)
            old.stop()  # reaped; removes its directory
            clean.a = start_redis(port=old.port, replicaof=("127.0.0.1", clean.leader.port))  # linked when back
            platform.endpoints = clean.endpoints()
            snapshot = await sample_until(sampler, lambda s: s.in_sync)
            assert snapshot.leader is not None and snapshot.leader.sync_full == full_before + 1
            deadline = time.monotonic() + 1.5  # longer than the history waits before attributing a leader's count
            while time.monotonic() < deadline:
                await sampler.sample_now()
                await asyncio.sleep(0.05)

        try:
            clean.leader.command("SET", "guestbook", "a,b")
            await restart(unlisted=True)
            assert [(e.node, e.kind, e.inferred) for e in events] == [
                (FOLLOWER_A, "link_down", True),
                (FOLLOWER_A, "link_up", True),
                (FOLLOWER_A, "full_resync", True),
            ]
            assert "new run_id" in events[0].detail and "the leader counted it" in events[2].detail
            assert all(sample.link == "up" for sample in sampler.history.samples(FOLLOWER_A))  # no sample saw it
            await restart(unlisted=False)
            assert [(e.node, e.kind, e.inferred) for e in list(events)[3:]] == [
                (FOLLOWER_A, "link_down", False),
                (FOLLOWER_A, "link_up", False),
                (FOLLOWER_A, "full_resync", False),
            ]
            assert "ConnectionError" in events[3].detail
            assert events[5].detail.startswith("its process restarted, so it synced in full")
        finally:
            await sampler.stop()

    asyncio.run(scenario())


# ----------------------------------------------------------------------------- a real lab on the local platform

HX = {"HX-Request": "true"}
RESYNCS = ("full_resync", "partial_resync")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """Leader, followers and frontend on the local platform, sampled every 0.5 s (the dashboard's default)."""
    settings = Settings(run_dir=tmp_path_factory.mktemp("sampler-lab") / "run", frontend_port=0, sample_interval=0.5)
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        try:
            for step in ("leader", "followers", "frontend"):
                r = client.post(f"/api/steps/{step}", headers=HX)
                assert r.status_code == 200 and r.json()["state"] == "done", r.text
            yield client
        finally:
            client.post("/api/steps/cleanup", headers=HX)


def pods(client: TestClient) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in client.get("/api/pods").json()}


def redis_pid(pod: dict[str, Any]) -> int:
    """The pid of the redis-server behind a pod of the lab: its address from /api/pods, its pid from INFO server
    (checked against /proc: a redis-server serving that port)."""
    host, port = str(pod["ip"]).rsplit(":", 1)
    assert host == "127.0.0.1"
    info = redis_command(int(port), "INFO", "server")
    assert isinstance(info, bytes)
    pid = int(parse_info(info)["process_id"])
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    assert b"redis-server" in cmdline and port.encode() in cmdline, cmdline
    return pid


def in_sync(client: TestClient) -> bool:
    body = client.get("/api/replication").json()
    return bool(body["in_sync"]) and len(body["followers"]) == 2


def test_a_follower_killed_five_times_shows_five_link_downs_and_five_resyncs(lab: TestClient) -> None:
    """The local platform restarts a killed follower in ~70 ms (then backs off): faster than a sample at first."""
    wait_until(lambda: in_sync(lab), 15, what="the lab in sync")
    followers = sorted(n for n, p in pods(lab).items() if p["component"] == "redis-follower")
    victim, other = followers
    started = time.time()
    restarts = pods(lab)[victim]["restarts"]
    for i in range(1, 6):
        pid = redis_pid(pods(lab)[victim])
        os.kill(pid, signal.SIGKILL)

        def back(pid: int = pid, want: int = restarts + i) -> bool:
            pod = pods(lab)[victim]
            return bool(pod["restarts"] == want and pod["ready"] and redis_pid(pod) != pid)

        wait_until(back, 30, interval=0.02, what=f"{victim} to come back after kill {i}")
        wait_until(lambda: in_sync(lab), 15, what=f"the lab in sync after kill {i}")

    def counts() -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {victim: {}, other: {}}
        for e in lab.get("/api/lag").json()["events"]:
            if e["time"] >= started and e["node"] in out:
                kind = "resync" if e["kind"] in RESYNCS else e["kind"]
                out[e["node"]][kind] = out[e["node"]].get(kind, 0) + 1
        return out

    want = {victim: {"link_down": 5, "link_up": 5, "resync": 5}, other: {}}
    wait_until(lambda: counts() == want, 10, interval=0.1, what=f"5 link downs and 5 resyncs of {victim}")
    time.sleep(1.5)  # three more samples: the leader's counts are matched, not attributed again
    assert counts() == want
    assert pods(lab)[victim]["restarts"] == restarts + 5


def test_a_leader_killed_during_the_write_load_is_data_loss_in_the_drills_words(lab: TestClient) -> None:
    wait_until(lambda: in_sync(lab), 15, what="the lab in sync")
    leader = next(n for n, p in pods(lab).items() if p["component"] == "redis-leader")
    restarts = pods(lab)[leader]["restarts"]
    r = lab.post("/api/load", json={"rate": 100, "seconds": 3}, headers=HX)
    assert r.status_code in (200, 202), r.text
    wait_until(lambda: lab.get("/api/load").json()["ok"] >= 50, 10, what="50 acknowledged writes")
    os.kill(redis_pid(pods(lab)[leader]), signal.SIGKILL)

    def finished() -> dict[str, Any] | None:
        body: dict[str, Any] = lab.get("/api/load").json()
        return None if body["state"] in ("running", "checking") else body

    body = wait_until(finished, 40, interval=0.1, what="the load's accounting")
    assert body is not None
    lost = body["entries_lost"]
    assert body["data_loss"] is True and 50 <= lost <= body["ok"], body
    assert body["message"].startswith(
        f"DATA LOSS: {lost} acknowledged entries are gone from every node: the leader {leader} restarted "
        f"(restarts {restarts} → {restarts + 1}) during the load and has no persistence, so it came back empty. "
        f"Wrote {body['ok']} of {body['planned']} entries"
    ), body["message"]
    assert "lacks" not in body["message"] or "beyond those" in body["message"]
    nodes = {n["name"]: n for n in body["nodes"]}
    assert nodes[leader]["missing"] == lost and all(n["missing"] >= lost for n in nodes.values())
    assert pods(lab)[leader]["restarts"] == restarts + 1


def test_the_loads_loss_is_what_no_node_holds_and_its_cause_a_leader_restart_or_replacement() -> None:
    """The values behind the load's DATA LOSS sentence (`dashboard.probe`)."""
    leader = NodeCount("redis-leader-x", "leader", missing=2, missing_entries=frozenset({"e1", "e2"}))
    follower = NodeCount("redis-follower-a", "follower", missing=3, missing_entries=frozenset({"e1", "e2", "e3"}))
    assert lost_everywhere([leader, follower]) == 2
    assert lost_everywhere([leader, NodeCount("redis-follower-b", "follower", missing=5, error="timeout")]) == 0
    assert lost_everywhere([]) == 0
    assert leader_restart(("redis-leader-x", 0), ("redis-leader-x", 1)) == "redis-leader-x restarted (restarts 0 → 1)"
    assert (
        leader_restart(("redis-leader-x", 2), ("redis-leader-y", 0)) == "redis-leader-x was replaced by redis-leader-y"
    )
    assert leader_restart(("redis-leader-x", 1), ("redis-leader-x", 1)) is None
    assert leader_restart(None, ("redis-leader-x", 1)) is None
