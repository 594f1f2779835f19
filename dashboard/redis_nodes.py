"""Reading the lab's Redis nodes: INFO, the guestbook key, the leader's resync counters and convergence.

Thin I/O over `RedisEndpoint`s (short-lived connections with tight timeouts) shared by the steps' checks, the
drills and the experiments. Resync kinds are read from the leader's own counters (`INFO stats`: `sync_full`,
`sync_partial_ok`), which a sampler at 1 Hz could miss for a 1 ms reconnection.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from dashboard.errors import DashboardError
from dashboard.guestbook.entries import KEY as GUESTBOOK_KEY
from dashboard.models import RedisEndpoint
from dashboard.platforms.base import Platform
from dashboard.probe import ask, redis_client, split_nodes
from dashboard.replication import parse_info


async def node_info(endpoint: RedisEndpoint, *sections: str) -> dict[str, str]:
    """`INFO <sections>` of one node as a dict (a short-lived connection)."""
    return _as_info(await ask(endpoint, "INFO", *sections))


def _as_info(reply: Any) -> dict[str, str]:
    """An `INFO` reply, as redis-py parsed it (a dict) or as text, as a dict of strings."""
    return {str(k): str(v) for k, v in reply.items()} if isinstance(reply, dict) else parse_info(reply)


async def node_state(endpoint: RedisEndpoint) -> tuple[dict[str, str], bytes]:
    """`INFO replication` and the raw guestbook of one node, in one round trip."""
    client = redis_client(endpoint)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("INFO", "replication")
        pipe.get(GUESTBOOK_KEY)
        info, raw = await pipe.execute()
    finally:
        await client.aclose()
    return _as_info(info), raw if isinstance(raw, bytes) else b""


@dataclass(frozen=True)
class SyncCounters:
    """The leader's count of full and partial resynchronisations it served (`INFO stats`)."""

    replid: str
    full: int
    partial: int


async def sync_counters(leader: RedisEndpoint) -> SyncCounters:
    info = await node_info(leader, "stats")
    repl = await node_info(leader, "replication")
    return SyncCounters(
        repl.get("master_replid", ""), int(info.get("sync_full", 0)), int(info.get("sync_partial_ok", 0))
    )


def resync_words(before: SyncCounters, after: SyncCounters) -> tuple[str, int, int]:
    """("full"|"partial"|"none", full delta, partial delta); a new leader (other replid) counts from zero."""
    if after.replid != before.replid:
        full, partial = after.full, after.partial
    else:
        full, partial = after.full - before.full, after.partial - before.partial
    kind = "full" if full > 0 else "partial" if partial > 0 else "none"
    return kind, full, partial


async def converged(platform: Platform, want_followers: int | None = None) -> str | None:
    """None when every follower is linked to the leader with gap 0 and the same guestbook; else why not."""
    try:
        leader, followers = await split_nodes(platform)
    except DashboardError as exc:
        return exc.message
    if want_followers is not None and len(followers) != want_followers:
        return f"{len(followers)} of {want_followers} followers are running"
    try:
        leader_info, leader_raw = await node_state(leader)
    except (RedisError, OSError) as exc:
        return f"the leader {leader.name} does not answer ({type(exc).__name__})"
    if leader_info.get("role") != "master":
        return f"{leader.name} answers with role {leader_info.get('role')}"
    states = await asyncio.gather(*(node_state(f) for f in followers), return_exceptions=True)
    for follower, state in zip(followers, states, strict=True):
        if isinstance(state, BaseException):
            return f"{follower.name} does not answer ({type(state).__name__})"
        info, raw = state
        if info.get("master_link_status") != "up":
            return f"{follower.name} has master_link_status:{info.get('master_link_status', 'unknown')}"
        if info.get("master_replid") != leader_info.get("master_replid"):
            return f"{follower.name} still follows another replication history"
        gap = int(leader_info.get("master_repl_offset", 0)) - int(info.get("slave_repl_offset", 0))
        if gap > 0:
            return f"{follower.name} is {gap} bytes behind"
        if raw != leader_raw:
            return f"{follower.name}'s guestbook differs from the leader's"
    return None


async def redis_info(endpoint: RedisEndpoint) -> dict[str, str]:
    """PING then `INFO replication` of one Redis pod, as a dict (a short-lived connection with tight timeouts)."""
    client = aioredis.Redis(
        host=endpoint.host, port=endpoint.port, socket_timeout=1.0, socket_connect_timeout=0.5, decode_responses=True
    )
    try:
        await client.ping()
        info = await client.info("replication")
        return {str(k): str(v) for k, v in info.items()}
    finally:
        await client.aclose()


async def frontend_clients(endpoint: RedisEndpoint) -> list[str]:
    """Names of the guestbook frontend's connections on one Redis pod (CLIENT LIST, names `gb-frontend-*`)."""
    client = aioredis.Redis(
        host=endpoint.host, port=endpoint.port, socket_timeout=1.0, socket_connect_timeout=0.5, decode_responses=True
    )
    try:
        clients = await client.client_list()
    finally:
        await client.aclose()
    return [str(c.get("name")) for c in clients if str(c.get("name", "")).startswith("gb-frontend-")]
