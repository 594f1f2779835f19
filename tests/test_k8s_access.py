"""How the Kubernetes platform reaches pods and publishes the frontend, without a cluster: `--redis-access auto`'s
pod-IP probe, which port-forward refusals fail a step at once, and the NodePort that nobody serves (a port-forward
fallback with a note). The real-cluster side is `tests/test_k8s_cluster_access.py`."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dashboard.errors import PlatformError, PlatformRefused
from dashboard.platforms.kubernetes import KubernetesPlatform
from dashboard.platforms.kubernetes.access import NODEPORT_CHECK_SECONDS, pod_ip_answers
from dashboard.platforms.kubernetes.errors import portforward_refusal
from dashboard.web import create_app
from tests.k8s_double import FIXTURES, KubernetesApiDouble, LoopbackKubelet
from tests.k8s_helpers import run, settings_for


def status_body(code: int, message: str) -> bytes:
    return json.dumps({"kind": "Status", "status": "Failure", "message": message, "code": code}).encode()


def test_403_on_pods_portforward_is_refused_for_good_with_the_rbac_fix() -> None:
    translated = PlatformError("alice may not get pods/portforward in namespace lab (403 Forbidden).", "")
    refusal = portforward_refusal(403, b"", "redis-leader-1", translated)
    assert isinstance(refusal, PlatformRefused)
    assert refusal.message == translated.message
    assert "'get' and 'create' on pods/portforward" in refusal.hint and "--redis-access direct" in refusal.hint


def test_no_preferred_kubelet_address_is_refused_for_good_with_the_address_fix() -> None:
    body = status_body(500, "unable to upgrade connection: no preferred addresses found; known addresses: []")
    refusal = portforward_refusal(500, body, "redis-leader-1", PlatformError("x", ""))
    assert isinstance(refusal, PlatformRefused)
    assert refusal.message == (
        "The API server cannot open a port-forward to pod redis-leader-1: unable to upgrade connection: "
        "no preferred addresses found; known addresses: []."
    )
    assert "--kubelet-preferred-address-types" in refusal.hint and "--redis-access direct" in refusal.hint


def test_a_passing_failure_is_not_refused_for_good() -> None:
    assert portforward_refusal(503, status_body(503, "the server is shutting down"), "p", PlatformError("x")) is None
    assert portforward_refusal(404, status_body(404, 'pods "p" not found'), "p", PlatformError("x")) is None


def test_pod_ip_answers_counts_a_refused_connection_as_reachable() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        port = listening.getsockname()[1]
        reachable, what = asyncio.run(pod_ip_answers("127.0.0.1", port))
        assert reachable and what.startswith("connected in")
    reachable, what = asyncio.run(pod_ip_answers("127.0.0.1", port))  # closed now: refused, yet reachable
    assert reachable and "refused" in what


@pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"recorded API responses not found at {FIXTURES}")
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_on_the_api_double_a_403_port_forward_fails_the_leader_step_at_once(tmp_path: Path) -> None:
    """The same flow as on the real cluster (test_k8s_cluster_access.py), where the API server really says 403."""
    (tmp_path / "pods").mkdir()
    kubelet = LoopbackKubelet(tmp_path / "pods")
    try:
        with KubernetesApiDouble(pod_grace=0.1, kubelet=kubelet) as double:
            double.forbid("get", "pods/portforward")
            settings = settings_for(double, tmp_path, redis_access="port-forward", step_timeout=300)
            with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
                started = time.monotonic()
                step = client.post("/api/steps/leader", headers={"HX-Request": "true"}).json()
                assert time.monotonic() - started < 10, step
                assert step["state"] == "failed" and "pods/portforward" in step["message"], step
                assert "403 Forbidden" in step["message"] and "--redis-access direct" in step["hint"], step
    finally:
        kubelet.close()


@pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"recorded API responses not found at {FIXTURES}")
def test_on_the_api_double_a_nodeport_nobody_serves_falls_back_to_a_port_forward(tmp_path: Path) -> None:
    """No server on the double's node port (127.0.0.1:30303): after a few seconds, a port-forward and a note."""
    with KubernetesApiDouble(pod_grace=0.1) as double:
        platform = KubernetesPlatform(settings_for(double, tmp_path, expose_mode="nodeport"))

        async def body() -> None:
            await platform.apply("frontend-service.yaml")
            started = time.monotonic()
            url = await platform.expose()
            assert time.monotonic() - started < NODEPORT_CHECK_SECONDS + 2
            assert url.startswith("http://127.0.0.1:") and url != "http://127.0.0.1:30303", url
            note = platform.expose_note() or ""
            assert note.startswith("Service frontend is type NodePort: port 30303 on every node. But "), note
            assert "http://127.0.0.1:30303 does not answer within 3 s (ConnectError" in note, note
            assert note.endswith("using a port-forward to a ready frontend pod instead."), note
            assert platform.expose_status()["mode"] == "nodeport"

        run(platform, body)
