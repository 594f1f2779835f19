"""The whole five-step lab through the JSON API on the Kubernetes platform code path, in CI (no cluster needed).

The same flow as `test_k8s_cluster.py`, against `tests/k8s_api_double.py`: the dashboard app (`create_app`) talks
to the double through the real kubernetes client (kubeconfig, server-side apply, the pod watch, port-forwards
over WebSocket). Behind the double's pods its `LoopbackKubelet` runs real processes on 127.0.0.1: redis-server
for the leader, redis-server replicating from it for each follower, and the project's Python guestbook frontend
(`python -m dashboard.guestbook --endpoints FILE`) for each frontend pod. redis_access is port-forward, as from
a laptop: the replication panel and every check reach Redis and the frontend only through the API server.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi.testclient import TestClient

from dashboard.platforms.k8s_objects import LAB_LABEL_KEY, LAB_LABEL_VALUE
from dashboard.settings import Settings
from dashboard.web import create_app
from tests.k8s_api_double import FIXTURES, KubernetesApiDouble, LoopbackKubelet
from tests.k8s_helpers import poll

T = TypeVar("T")
HX = {"HX-Request": "true"}

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"recorded API responses not found at {FIXTURES}"),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed"),
]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[KubernetesApiDouble, LoopbackKubelet]]:
    (tmp_path / "pods").mkdir()
    kubelet = LoopbackKubelet(tmp_path / "pods")
    try:
        with KubernetesApiDouble(pod_grace=0.1, kubelet=kubelet) as double:
            yield double, kubelet
    finally:
        kubelet.close()


def test_the_whole_lab_through_the_json_api_on_the_api_double(
    cluster: tuple[KubernetesApiDouble, LoopbackKubelet], tmp_path: Path
) -> None:
    double, kubelet = cluster
    settings = Settings(
        platform="kubernetes",
        kubeconfig=double.write_kubeconfig(tmp_path / "kubeconfig"),
        namespace="guestbook",
        redis_access="port-forward",
        frontend_port=0,
        step_timeout=60,
        sample_interval=0.2,
        run_dir=tmp_path,
    )
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        lab = client.get("/api/lab").json()
        assert lab["platform"] == "kubernetes" and lab["frontend_url"] is None
        for step in ("leader", "followers", "frontend", "expose"):
            response = client.post(f"/api/steps/{step}", headers=HX)
            assert response.status_code == 200, response.text
            assert response.json()["state"] == "done", response.json()

        # What the cluster holds is what the tutorial's kubectl apply creates, plus our label.
        deployments = {d["metadata"]["name"]: d for d in double.objects("deployments")}
        assert sorted(deployments) == ["frontend", "redis-follower", "redis-leader"]
        assert [deployments[n]["spec"]["replicas"] for n in ("redis-leader", "redis-follower", "frontend")] == [1, 2, 3]
        assert deployments["redis-follower"]["spec"]["selector"] == {"matchLabels": {"app": "redis"}}
        assert deployments["frontend"]["spec"]["template"]["spec"]["containers"][0]["image"].endswith("gb-frontend:v5")
        assert all(d["metadata"]["labels"][LAB_LABEL_KEY] == LAB_LABEL_VALUE for d in deployments.values())
        services = {s["metadata"]["name"]: s for s in double.objects("services")}
        assert sorted(services) == ["frontend", "redis-follower", "redis-leader"]
        assert services["frontend"]["spec"]["selector"] == {"app": "guestbook", "tier": "frontend"}

        pods = client.get("/api/pods").json()
        assert sorted(p["component"] for p in pods) == ["frontend"] * 3 + ["redis-follower"] * 2 + ["redis-leader"]
        assert all(p["ready"] and p["status"] == "Running" for p in pods)
        assert sorted(p["name"] for p in pods) == kubelet.running()

        def replicated() -> dict[str, Any] | None:
            rep: dict[str, Any] = client.get("/api/replication").json()
            links = [f["link"] for f in rep["followers"]]
            return rep if rep["leader"] and rep["leader"]["role"] == "master" and links == ["up", "up"] else None

        rep = poll(replicated, what="the replication panel showing the leader and two linked followers")
        assert rep is not None
        names = {p["name"] for p in pods if p["component"] != "frontend"}
        assert {rep["leader"]["name"], *(f["name"] for f in rep["followers"])} == names

        # The embedded guestbook works through the exposed port-forward: a write lands on every Redis pod.
        url = client.get("/api/lab").json()["frontend_url"]
        assert url and url.startswith("http://127.0.0.1:")
        answer = httpx.get(f"{url}/guestbook.php", params={"cmd": "append", "value": "hello from the double"})
        assert answer.status_code == 200, answer.text

        def everywhere() -> bool:
            rep = client.get("/api/replication").json()
            entries = rep["entries"]
            return len(entries) == 3 and all(e == ["hello from the double"] for e in entries.values())

        poll(everywhere, what="the entry on the leader and both followers")
        read = httpx.get(f"{url}/guestbook.php", params={"cmd": "get"}).json()
        assert "hello from the double" in read["data"]
        events = client.get("/api/events")
        assert events.status_code == 200 and isinstance(events.json(), list)

        response = client.post("/api/steps/cleanup", headers=HX)
        assert response.status_code == 200 and response.json()["state"] == "done", response.text
        assert double.objects("deployments") == [] and double.objects("services") == []
        assert [p for p in double.objects("pods") if not p["metadata"].get("deletionTimestamp")] == []
        assert client.get("/api/pods").json() == []
        assert client.get("/api/lab").json()["frontend_url"] is None
        poll(lambda: kubelet.running() == [], what="every process behind the pods stopped")
    assert {pod for _, pod, _ in double.portforwards} >= names  # Redis was only ever reached through the API server


def test_the_real_cluster_suite_passes_on_the_api_double(tmp_path: Path) -> None:
    """`tests/test_k8s_cluster.py`'s own flow (throwaway namespace, pre-flight, five steps, what the cluster holds,
    guestbook read-back, label-scoped cleanup, namespace deleted), pointed at the double instead of a cluster."""
    from tests.test_k8s_cluster import cluster_clients, run_whole_lab, throwaway_namespace

    (tmp_path / "pods").mkdir()
    kubelet = LoopbackKubelet(tmp_path / "pods")
    try:
        with KubernetesApiDouble(namespaces=("default",), pod_grace=0.1, kubelet=kubelet) as double:
            kubeconfig = double.write_kubeconfig(tmp_path / "kubeconfig", namespace="default")
            core = cluster_clients(str(kubeconfig), None)
            with throwaway_namespace(core[0], timeout=20) as namespace:
                assert namespace in double.namespaces
                # The double's pod IPs (127.0.0.x) have nothing on the pods' ports: port-forward, not auto
                run_whole_lab(core, namespace, kubeconfig, None, tmp_path, redis_access="port-forward")
            assert sorted(double.namespaces) == ["default"]
            assert kubelet.running() == []
    finally:
        kubelet.close()
