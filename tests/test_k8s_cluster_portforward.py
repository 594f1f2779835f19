"""The Kubernetes platform's port-forward path on a REAL cluster (`k8s` marker; setup in `tests/k8s_cluster.py`).

`kubernetes.stream.ws_client` opens a WebSocket to the API server's pods/portforward subresource, which the
kubelet serves: `--redis-access port-forward`, so nothing dials a pod IP. Redis both ways (a leader and two
followers replicating, 2 MiB values, 24 forwards at once next to an apply), the frontends' own forwards and the
exposed one moving off each frontend pod that goes, and the errors: a port nothing listens on inside the pod, a
pod that is gone. A 403 on pods/portforward is `tests/test_k8s_cluster_access.py`. Each test has its own
namespace.
"""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from dashboard.errors import PlatformError
from dashboard.lab import guestbook_answers
from dashboard.platforms.kubernetes import LAB_MANIFESTS, KubernetesPlatform
from dashboard.redis_nodes import redis_info
from dashboard.settings import Settings
from tests.k8s_cluster import CLUSTER, cluster_settings, ready_pods
from tests.k8s_helpers import apply_all, run
from tests.polling import until

pytestmark = [*CLUSTER, pytest.mark.timeout(240)]


def settings_for(namespace: str, tmp_path: Path) -> Settings:
    """The real cluster, reaching Redis and the frontend through the API server's port-forward."""
    return cluster_settings(namespace, tmp_path, redis_access="port-forward")


async def ping_through(port: int) -> bytes:
    """Send a Redis PING to a local forward port; what came back before the connection closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"*1\r\n$4\r\nPING\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 20)
    except ConnectionResetError:  # closed with our PING unread
        return b""
    finally:
        writer.close()


async def start_redis_pods(platform: KubernetesPlatform) -> None:
    for manifest in LAB_MANIFESTS[:4]:
        await platform.apply(manifest)
    await until(lambda: ready_pods(platform, 3), 60, what="leader and two followers Ready")


def test_redis_endpoints_through_port_forward_reach_the_real_redis(namespace: str, tmp_path: Path) -> None:
    platform = KubernetesPlatform(settings_for(namespace, tmp_path))

    async def body() -> None:
        await start_redis_pods(platform)
        pods = await platform.get_pods()
        endpoints = await platform.redis_endpoints()
        assert [e.component for e in endpoints] == ["redis-leader", "redis-follower", "redis-follower"]
        assert {e.name for e in endpoints} == {p.name for p in pods}
        # local forward ports on loopback, never the pod IPs
        assert all(e.host == "127.0.0.1" and e.port != 6379 for e in endpoints), endpoints
        assert not {e.host for e in endpoints} & {p.ip for p in pods}
        infos = [await redis_info(e) for e in endpoints]
        assert [i["role"] for i in infos] == ["master", "slave", "slave"]

        async def linked() -> list[dict[str, Any]] | None:
            found = [await redis_info(e) for e in endpoints]
            return found if [i.get("master_link_status") for i in found[1:]] == ["up", "up"] else None

        infos = await until(linked, 30, what="both followers linked to the leader")
        assert infos[0]["connected_slaves"] == "2"

        # Data both ways, larger than one websocket frame and than the client's 1 MiB reads.
        big = bytes(range(256)) * 8192  # 2 MiB, every byte value
        async with aioredis.Redis(host=endpoints[0].host, port=endpoints[0].port) as leader:
            assert await leader.set("guestbook", big)
            assert await leader.get("guestbook") == big
        async with aioredis.Redis(host=endpoints[1].host, port=endpoints[1].port) as follower:
            assert await until(lambda: follower.strlen("guestbook"), 20, what="the value on a follower") == len(big)
            assert await follower.get("guestbook") == big

    run(platform, body)


def test_concurrent_port_forwards_leave_the_shared_api_client_alone(namespace: str, tmp_path: Path) -> None:
    # kubernetes.stream.portforward swaps call_api on the ApiClient it is given; the platform must not let
    # that happen to the client its watches and applies share.
    platform = KubernetesPlatform(settings_for(namespace, tmp_path))

    async def body() -> None:
        await start_redis_pods(platform)
        endpoints = await platform.redis_endpoints()

        async def ping(index: int) -> bool:
            endpoint = endpoints[index % len(endpoints)]
            async with aioredis.Redis(host=endpoint.host, port=endpoint.port, socket_timeout=20) as client:
                return bool(await client.ping())

        results = await asyncio.gather(*(ping(i) for i in range(24)), platform.apply("frontend-service.yaml"))
        assert all(results[:24]) and results[24] == ["service/frontend created"]
        assert "call_api" not in vars(platform.api.api_client)
        assert await platform.apply("frontend-service.yaml") == ["service/frontend unchanged"]

    run(platform, body)


async def frontends_replaced(platform: KubernetesPlatform, victim: str) -> bool:
    """Three frontend pods Ready, none of them `victim` or terminating."""
    pods = [p for p in await platform.get_pods() if p.component == "frontend"]
    return len(pods) == 3 and all(p.ready and not p.deleting and p.name != victim for p in pods)


def test_frontend_endpoints_and_expose_through_port_forward(namespace: str, tmp_path: Path) -> None:
    platform = KubernetesPlatform(settings_for(namespace, tmp_path))

    async def body() -> None:
        await apply_all(platform)
        await until(lambda: ready_pods(platform, 6), 60, what="six pods Ready")
        urls = await platform.frontend_endpoints()
        assert len(set(urls)) == 3 and all(u.startswith("http://127.0.0.1:") for u in urls), urls
        async with httpx.AsyncClient(timeout=20) as client:
            assert [await guestbook_answers(client, u) for u in urls] == [None, None, None]
            url = await platform.expose()
            assert url.startswith("http://127.0.0.1:") and platform.frontend_url() == url
            assert platform.expose_status()["mode"] == "port-forward"
            for _ in range(3):  # one connection each: round robin over the ready frontend pods
                response = await client.get(f"{url}/guestbook.php?cmd=get", headers={"Connection": "close"})
                assert response.status_code == 200 and "data" in response.json(), response.text

            # Every frontend pod goes, one by one; each time, four requests on connections of their own must
            # each be answered at once from the ready pods. A replacement can be Ready before Apache listens (the
            # tutorial has no readiness probe): the forward moves such a refused connection to the next pod.
            # The page, not `cmd=get`: on the kit, PHP's name lookup of redis-follower in a pod sometimes waits
            # 5-20 s (its resolver's retries, after the kit's bridge changes its MAC), which is not the forward's.
            originals = {p.name for p in await platform.get_pods() if p.component == "frontend"}
            for victim in sorted(originals):
                await platform.delete_pod(victim)
                await until(partial(frontends_replaced, platform, victim), 90, what=f"{victim} replaced and Ready")
                for _ in range(4):
                    response = await client.get(f"{url}/", headers={"Connection": "close"}, timeout=10)
                    assert response.status_code == 200 and "<title>Guestbook</title>" in response.text, response
            assert not originals & {p.name for p in await platform.get_pods()}
        assert platform.expose_status()["port_forward_error"] is None

    run(platform, body)


def test_port_forward_errors_are_one_sentence(namespace: str, tmp_path: Path) -> None:
    platform = KubernetesPlatform(settings_for(namespace, tmp_path))

    async def body() -> None:
        # A pod that is not there: the API server's 404.
        forward = platform._forward_to("redis-leader-0000000000-gone0", 6379)
        assert await ping_through(forward.port) == b""
        error = await until(lambda: asyncio.sleep(0, forward.error), 20, what="the 404")
        assert error.message == f"pods/redis-leader-0000000000-gone0 was not found in namespace {namespace}."

        await platform.apply("redis-leader-deployment.yaml")
        await until(lambda: ready_pods(platform, 1), 60, what="the leader Ready")
        (leader,) = await platform.get_pods()
        # Nothing listens on that port inside the pod: the kubelet's error channel, then the stream closes.
        forward = platform._forward_to(leader.name, 7000)
        assert await ping_through(forward.port) == b""  # closed without an answer
        error = await until(lambda: asyncio.sleep(0, forward.error), 20, what="the forward's error")
        assert isinstance(error, PlatformError)
        assert error.message.startswith(f"The port-forward to pod {leader.name} port 7000 failed: "), error.message
        assert "connection refused" in error.message, error.message

    run(platform, body)
