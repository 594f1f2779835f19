"""The Kubernetes platform's port-forward path, end to end through the real client code.

`kubernetes.stream.ws_client` opens a WebSocket (`v4.channel.k8s.io`) to the API double's pods/portforward
subresource, which forwards to REAL servers the test started on 127.0.0.1: redis-server processes (a leader and
two followers replicating from it) and tiny HTTP frontends, run behind the double's pods by its
`LoopbackKubelet`. Nothing dials a pod IP; redis_access is port-forward.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
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
from tests.k8s_double import KubernetesApiDouble, LoopbackKubelet
from tests.k8s_helpers import run
from tests.k8s_helpers import settings_for as double_settings
from tests.polling import until

pytestmark = [
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed"),
]


def settings_for(double: KubernetesApiDouble, tmp_path: Path, **overrides: Any) -> Settings:
    """The shared settings, reaching Redis and the frontend through the API server's port-forward."""
    return double_settings(double, tmp_path, **{"redis_access": "port-forward", "step_timeout": 20, **overrides})


@pytest.fixture
def kubelet(tmp_path: Path) -> Iterator[LoopbackKubelet]:
    runner = LoopbackKubelet(tmp_path, frontend="stub")
    try:
        yield runner
    finally:
        runner.close()


@pytest.fixture
def double(kubelet: LoopbackKubelet) -> Iterator[KubernetesApiDouble]:
    with KubernetesApiDouble(pod_grace=0.1, kubelet=kubelet) as api:
        yield api


async def ping_through(port: int) -> bytes:
    """Send a Redis PING to a local forward port; what came back before the connection closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"*1\r\n$4\r\nPING\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:  # closed with our PING unread
        return b""
    finally:
        writer.close()


async def ready_pods(platform: KubernetesPlatform, count: int) -> bool:
    pods = await platform.get_pods()
    return len(pods) == count and all(p.ready for p in pods)


async def start_redis_pods(platform: KubernetesPlatform) -> None:
    for manifest in LAB_MANIFESTS[:4]:
        await platform.apply(manifest)
    await until(lambda: ready_pods(platform, 3), what="leader and two followers Ready")


def test_redis_endpoints_through_port_forward_reach_the_real_redis(
    double: KubernetesApiDouble, kubelet: LoopbackKubelet, tmp_path: Path
) -> None:
    platform = KubernetesPlatform(settings_for(double, tmp_path, redis_access="port-forward"))

    async def body() -> None:
        await start_redis_pods(platform)
        endpoints = await platform.redis_endpoints()
        assert [e.component for e in endpoints] == ["redis-leader", "redis-follower", "redis-follower"]
        assert {e.name for e in endpoints} == {p.name for p in await platform.get_pods()}
        assert all(e.host == "127.0.0.1" for e in endpoints)
        assert not {e.port for e in endpoints} & {p.port for p in kubelet.redis.values()}  # local forward ports
        infos = [await redis_info(e) for e in endpoints]
        assert [i["role"] for i in infos] == ["master", "slave", "slave"]
        assert [i.get("master_link_status") for i in infos[1:]] == ["up", "up"]
        assert infos[0]["connected_slaves"] == "2"

        # Data both ways, larger than one websocket frame and than the client's 1 MiB reads.
        leader = aioredis.Redis(host=endpoints[0].host, port=endpoints[0].port)
        big = bytes(range(256)) * 8192  # 2 MiB, every byte value
        try:
            assert await leader.set("guestbook", big)
            assert await leader.get("guestbook") == big
        finally:
            await leader.aclose()
        follower = aioredis.Redis(host=endpoints[1].host, port=endpoints[1].port)
        try:
            assert await until(lambda: follower.strlen("guestbook"), what="the value on a follower") == len(big)
            assert await follower.get("guestbook") == big
        finally:
            await follower.aclose()

    run(platform, body)
    forwarded = {(pod, port) for _, pod, port in double.portforwards}
    assert {port for _, port in forwarded} == {6379}
    assert len(forwarded) == 3
    assert double.count("create", "portforward") == 0  # a websocket port-forward is a GET upgrade


def test_concurrent_port_forwards_leave_the_shared_api_client_alone(
    double: KubernetesApiDouble, kubelet: LoopbackKubelet, tmp_path: Path
) -> None:
    # kubernetes.stream.portforward swaps call_api on the ApiClient it is given; the platform must not let
    # that happen to the client its watches and applies share.
    platform = KubernetesPlatform(settings_for(double, tmp_path))

    async def body() -> None:
        await start_redis_pods(platform)
        endpoints = await platform.redis_endpoints()

        async def ping(index: int) -> bool:
            endpoint = endpoints[index % len(endpoints)]
            client = aioredis.Redis(host=endpoint.host, port=endpoint.port, socket_timeout=5)
            try:
                return bool(await client.ping())
            finally:
                await client.aclose()

        results = await asyncio.gather(*(ping(i) for i in range(24)), platform.apply("frontend-service.yaml"))
        assert all(results[:24]) and results[24] == ["service/frontend created"]
        assert "call_api" not in vars(platform.api.api_client)
        assert await platform.apply("frontend-service.yaml") == ["service/frontend unchanged"]

    run(platform, body)
    assert len(double.portforwards) >= 24


def test_frontend_endpoints_through_port_forward(
    double: KubernetesApiDouble, kubelet: LoopbackKubelet, tmp_path: Path
) -> None:
    platform = KubernetesPlatform(settings_for(double, tmp_path))

    async def body() -> None:
        for manifest in LAB_MANIFESTS:
            await platform.apply(manifest)
        await until(lambda: ready_pods(platform, 6), what="six pods Ready")
        urls = await platform.frontend_endpoints()
        frontends = sorted(p.name for p in await platform.get_pods() if p.component == "frontend")
        assert len(urls) == 3 and all(u.startswith("http://127.0.0.1:") for u in urls)
        async with httpx.AsyncClient(timeout=5) as client:
            assert [await guestbook_answers(client, u) for u in urls] == [None, None, None]
            answered = sorted([(await client.get(f"{u}/guestbook.php?cmd=get")).json()["data"] for u in urls])
        assert answered == frontends  # each URL is its own pod

    run(platform, body)
    assert {port for _, pod, port in double.portforwards if pod.startswith("frontend-")} == {80}


def test_expose_port_forward_serves_http_and_moves_when_its_pod_goes(
    double: KubernetesApiDouble, kubelet: LoopbackKubelet, tmp_path: Path
) -> None:
    platform = KubernetesPlatform(settings_for(double, tmp_path))

    async def body() -> None:
        for manifest in LAB_MANIFESTS[4:]:
            await platform.apply(manifest)
        await until(lambda: ready_pods(platform, 3), what="three frontends Ready")
        url = await platform.expose()
        assert url.startswith("http://127.0.0.1:") and platform.frontend_url() == url
        assert platform.expose_status()["mode"] == "port-forward"
        async with httpx.AsyncClient(timeout=5) as client:

            async def answer() -> str:
                response = await client.get(f"{url}/guestbook.php?cmd=get", headers={"Connection": "close"})
                return str(response.json()["data"])

            first = await answer()
            seen = {first}
            for _ in range(6):
                seen.add(await answer())
            assert seen <= {p.name for p in await platform.get_pods()}

            # Every pod behind the forward goes away, one by one; the forward keeps answering from ready pods.
            gone: set[str] = set()
            for victim in sorted(seen):
                await platform.delete_pod(victim)
                gone.add(victim)
                await until(lambda: ready_pods(platform, 3), what="the replacement Ready")
                for _ in range(4):
                    name = await until(answer, what="an answer through the moved forward")
                    assert name not in gone
            assert platform.expose_status()["port_forward_error"] is None

    run(platform, body)


def test_port_forward_errors_are_one_sentence(
    double: KubernetesApiDouble, kubelet: LoopbackKubelet, tmp_path: Path
) -> None:
    platform = KubernetesPlatform(settings_for(double, tmp_path))

    async def body() -> None:
        await platform.apply("redis-leader-deployment.yaml")
        await until(lambda: ready_pods(platform, 1), what="the leader Ready")
        (leader,) = await platform.get_pods()

        # Nothing listens on that port inside the pod: the kubelet's error channel, then the stream closes.
        forward = platform._forward_to(leader.name, 7000)
        assert await ping_through(forward.port) == b""  # closed without an answer
        error = await until(lambda: asyncio.sleep(0, forward.error), what="the forward's error")
        assert isinstance(error, PlatformError)
        assert error.message.startswith(f"The port-forward to pod {leader.name} port 7000 failed: error forwarding")
        assert "connection refused" in error.message

        # 403 on the subresource: the handshake's status survives the client's wrapping.
        double.forbid("create", "pods/portforward")
        forward = platform._forward_to(leader.name, 6379)
        assert await ping_through(forward.port) == b""
        error = await until(lambda: asyncio.sleep(0, forward.error), what="the 403")
        assert error.message == (
            "system:serviceaccount:guestbook:learner may not create pods/portforward in namespace guestbook"
            " (403 Forbidden)."
        )
        assert "manifests/dashboard/role.yaml" in error.hint

    run(platform, body)


def test_forward_to_a_pod_that_is_gone_says_not_found(double: KubernetesApiDouble, tmp_path: Path) -> None:
    platform = KubernetesPlatform(settings_for(double, tmp_path))

    async def body() -> None:
        forward = platform._forward_to("redis-leader-0000000000-gone0", 6379)
        assert await ping_through(forward.port) == b""
        error = await until(lambda: asyncio.sleep(0, forward.error), what="the 404")
        assert error.message == "pods/redis-leader-0000000000-gone0 was not found in namespace guestbook."

    run(platform, body)
