"""A port-forward works in a process that holds more than 1024 file descriptors, as a workshop room's dashboard
does (100 labs × 3 Redis forwards, each a listener, a connection and a websocket). `select()` cannot wait on a
descriptor numbered 1024 or more ("filedescriptor out of range in select()"); the relay waits with a selector
(dashboard/platforms/kubernetes/portforward.py). Against the API double, with a real redis-server behind its pod.
"""

from __future__ import annotations

import os
import resource
import shutil
import threading
from pathlib import Path

import pytest

from dashboard.platforms.kubernetes import LAB_MANIFESTS, KubernetesPlatform
from dashboard.redis_nodes import redis_info
from tests.k8s_double import KubernetesApiDouble, LoopbackKubelet
from tests.k8s_helpers import run, settings_for
from tests.polling import until

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
HELD = 1100  # descriptors held open, so that every socket the forward opens is numbered above 1024


def test_a_port_forward_relays_with_descriptors_above_1024(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < HELD + 512:
        pytest.skip(f"the hard limit of open files is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, HELD + 512), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(HELD)]
    kubelet = LoopbackKubelet(tmp_path / "pods", frontend="stub")
    (tmp_path / "pods").mkdir(exist_ok=True)
    try:
        with KubernetesApiDouble(pod_grace=0.1, kubelet=kubelet) as double:
            platform = KubernetesPlatform(settings_for(double, tmp_path, redis_access="port-forward"))

            async def body() -> None:
                for manifest in LAB_MANIFESTS[:2]:  # the leader's Deployment and Service
                    await platform.apply(manifest)
                endpoints = await until(platform.redis_endpoints, what="the leader's endpoint")
                for _ in range(3):  # a new connection each time, each through its own websocket
                    info = await redis_info(endpoints[0])
                    assert info["role"] == "master"

            run(platform, body)
            # The forward's own sockets were numbered above 1024, and no select()-based proxy thread ran.
            assert min(held) < 1024 < max(held)
            assert not [t for t in threading.enumerate() if t.name.startswith("Kubernetes port forward proxy")]
    finally:
        kubelet.close()
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
