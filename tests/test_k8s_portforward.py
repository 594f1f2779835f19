"""The exposed port-forward moving off each frontend pod that goes, on the API double.

A real cluster shows this too, but on the kit a new port-forward to a PHP frontend pod can hang for 35-72 s, so
it is not timed there; everything else of the port-forward path runs on the real cluster
(`tests/test_k8s_cluster_portforward.py`). `kubernetes.stream.ws_client` opens a WebSocket (`v4.channel.k8s.io`)
to the API double's pods/portforward subresource, which forwards to tiny HTTP frontends the double's
`LoopbackKubelet` runs behind the pods (each answers `cmd=get` with its pod's name), and cuts every forward into
a pod the moment it starts terminating, as the kubelet does when it kills the containers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboard.platforms.kubernetes import LAB_MANIFESTS, KubernetesPlatform
from dashboard.settings import Settings
from tests.k8s_double import KubernetesApiDouble, LoopbackKubelet
from tests.k8s_helpers import run
from tests.k8s_helpers import settings_for as double_settings
from tests.polling import until


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


async def ready_pods(platform: KubernetesPlatform, count: int) -> bool:
    pods = await platform.get_pods()
    return len(pods) == count and all(p.ready for p in pods)


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
