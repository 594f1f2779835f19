"""The five steps through the JSON API, the same tests on the local platform and on the Kubernetes API double.

Each test runs on both (`tests/platform_labs.py`): checks that say what they proved, idempotence, concurrent
clicks, cleanup, the embedded guestbook, the replication panel and a write seen on every Redis pod. What only
one platform has is tested only there: the objects the double's cluster holds and Redis reached only through the
API server's port-forwards; the local platform's busy expose port; the real-cluster suite pointed at the double.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboard.platforms.kubernetes.objects import LAB_LABEL_KEY, LAB_LABEL_VALUE
from tests.k8s_double import KubernetesApiDouble, LoopbackKubelet
from tests.platform_labs import HX, MAIN_STEPS, PLATFORMS, Lab, open_lab
from tests.polling import wait_until

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed"),
]


@pytest.fixture(params=PLATFORMS)
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    with open_lab(request.param, tmp_path) as opened:
        yield opened


@pytest.fixture
def kube_lab(tmp_path: Path) -> Iterator[Lab]:
    with open_lab("kubernetes", tmp_path) as opened:
        yield opened


def test_the_checks_say_what_they_proved(lab: Lab) -> None:
    assert lab.client.get("/api/lab").json()["platform"] == lab.platform
    leader = lab.step("leader")
    assert leader["state"] == "done" and "answers PING with role master" in str(leader["message"])
    followers = lab.step("followers")
    assert followers["state"] == "done" and "master_link_status:up" in str(followers["message"])
    frontend = lab.step("frontend")
    assert frontend["state"] == "done"
    message = str(frontend["message"])
    assert "3 frontend replicas answer the guestbook API" in message
    assert "CLIENT LIST shows them writing to redis-leader-" in message and "reading from redis-follower-" in message
    expose = lab.step("expose")
    assert expose["state"] == "done"
    url = lab.client.get("/api/lab").json()["frontend_url"]
    assert url and url.startswith("http://127.0.0.1:") and url in str(expose["message"])


def test_running_a_step_twice_is_not_an_error_and_starts_nothing_new(lab: Lab) -> None:
    lab.step("leader")
    before = {p["name"] for p in lab.client.get("/api/pods").json()}
    again = lab.step("leader")
    assert again["state"] == "done"
    assert again["output"] == ["deployment.apps/redis-leader unchanged", "service/redis-leader unchanged"]
    assert {p["name"] for p in lab.client.get("/api/pods").json()} == before


def test_concurrent_clicks_from_two_browsers_cannot_corrupt_the_state(lab: Lab) -> None:
    lab.step("leader")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: lab.step("followers"), range(4)))
    assert all(r["state"] == "done" for r in results)
    pods = lab.client.get("/api/pods").json()
    assert sorted(p["component"] for p in pods) == ["redis-follower", "redis-follower", "redis-leader"]
    outputs = [r["output"] for r in results]
    assert outputs.count(["deployment.apps/redis-follower created", "service/redis-follower created"]) == 1
    assert outputs.count(["deployment.apps/redis-follower unchanged", "service/redis-follower unchanged"]) == 3


def test_cleanup_resets_the_steps_and_leaves_nothing(lab: Lab) -> None:
    lab.main_steps()
    cleanup = lab.step("cleanup")
    assert cleanup["state"] == "done", cleanup
    state = lab.client.get("/api/lab").json()
    assert [s["state"] for s in state["steps"]] == ["pending", "pending", "pending", "pending", "done"]
    assert state["frontend_url"] is None
    assert lab.client.get("/api/pods").json() == []
    lab.pod_processes_gone()
    if lab.double is not None:
        assert lab.double.objects("deployments") == [] and lab.double.objects("services") == []
        assert [p for p in lab.double.objects("pods") if not p["metadata"].get("deletionTimestamp")] == []
    # and the prerequisite chain starts again from the leader
    assert lab.client.post("/api/steps/followers", headers=HX).status_code == 409


def test_the_embedded_guestbook_works_through_the_dashboard(lab: Lab) -> None:
    lab.main_steps()
    page = lab.client.get("/guestbook/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    entry = 'through the dashboard, with "quotes" & #+ ✓'
    written = lab.client.post(
        "/guestbook/guestbook.php",
        data={"cmd": "append", "value": entry},
        headers={"Origin": "http://127.0.0.1:8000"},
    )
    assert written.status_code == 200 and written.json()["entries"] == [entry]
    # reads come from a follower: the entry shows there a moment later
    wait_until(
        lambda: lab.client.get("/guestbook/guestbook.php?cmd=get").json()["entries"] == [entry],
        5,
        what="the entry on the follower the frontend reads from",
    )


def test_the_replication_panel_and_a_write_seen_on_every_redis_pod(lab: Lab) -> None:
    lab.main_steps()
    pods = lab.client.get("/api/pods").json()
    assert sorted(p["component"] for p in pods) == ["frontend"] * 3 + ["redis-follower"] * 2 + ["redis-leader"]
    assert all(p["ready"] and p["status"] == "Running" for p in pods)

    def replicated() -> dict[str, Any] | None:
        rep = lab.replication()
        links = [f["link"] for f in rep["followers"]]
        return rep if rep["leader"] and rep["leader"]["role"] == "master" and links == ["up", "up"] else None

    rep = wait_until(replicated, what="the replication panel showing the leader and two linked followers")
    names = {p["name"] for p in pods if p["component"] != "frontend"}
    assert {rep["leader"]["name"], *(f["name"] for f in rep["followers"])} == names
    # How the dashboard reached them, and why: loopback ports, or (the double's kit) --redis-access port-forward
    using = {"local": "loopback", "kubernetes": "port-forward"}[lab.platform]
    assert rep["redis_access"]["using"] == using and rep["redis_access"]["reason"], rep["redis_access"]
    panel = lab.client.get("/fragments/replication").text
    assert f"Redis reached by {using}: " in panel

    url = lab.client.get("/api/lab").json()["frontend_url"]
    answer = httpx.get(f"{url.rstrip('/')}/guestbook.php", params={"cmd": "append", "value": "hello from the lab"})
    assert answer.status_code == 200, answer.text

    def everywhere() -> bool:
        entries = lab.replication()["entries"]
        return len(entries) == 3 and all(e == ["hello from the lab"] for e in entries.values())

    wait_until(everywhere, what="the entry on the leader and both followers")
    read = httpx.get(f"{url.rstrip('/')}/guestbook.php", params={"cmd": "get"}).json()
    assert "hello from the lab" in read["data"]
    events = lab.client.get("/api/events")
    assert events.status_code == 200 and isinstance(events.json(), list)


def test_rollout_status(lab: Lab) -> None:
    platform = lab.client.app.state.labs.get("default").platform  # type: ignore[attr-defined]
    portal = lab.client.portal
    assert portal is not None
    missing = 'deployment "redis-leader" does not exist'
    assert portal.call(platform.rollout_status, "redis-leader", "redis-leader") == missing
    lab.step("leader")
    assert portal.call(platform.rollout_status, "redis-leader", "redis-leader") is None
    assert portal.call(platform.rollout_status, "redis-follower", "redis-follower") == (
        'deployment "redis-follower" does not exist'
    )


# ------------------------------------------------------------------------------------- one platform only


def test_the_cluster_holds_the_tutorials_objects_and_redis_is_reached_through_the_api_server(kube_lab: Lab) -> None:
    double, kubelet = kube_lab.double, kube_lab.kubelet
    assert double is not None and kubelet is not None
    kube_lab.main_steps()
    deployments = {d["metadata"]["name"]: d for d in double.objects("deployments")}
    assert sorted(deployments) == ["frontend", "redis-follower", "redis-leader"]
    assert [deployments[n]["spec"]["replicas"] for n in ("redis-leader", "redis-follower", "frontend")] == [1, 2, 3]
    assert deployments["redis-follower"]["spec"]["selector"] == {"matchLabels": {"app": "redis"}}
    assert deployments["frontend"]["spec"]["template"]["spec"]["containers"][0]["image"].endswith("gb-frontend:v5")
    assert all(d["metadata"]["labels"][LAB_LABEL_KEY] == LAB_LABEL_VALUE for d in deployments.values())
    services = {s["metadata"]["name"]: s for s in double.objects("services")}
    assert sorted(services) == ["frontend", "redis-follower", "redis-leader"]
    assert services["frontend"]["spec"]["selector"] == {"app": "guestbook", "tier": "frontend"}
    pods = kube_lab.client.get("/api/pods").json()
    assert sorted(p["name"] for p in pods) == kubelet.running()
    names = {p["name"] for p in pods if p["component"] != "frontend"}
    wait_until(lambda: kube_lab.in_sync(), what="the leader and two followers in sync")
    assert {pod for _, pod, _ in double.portforwards} >= names  # Redis was only ever reached through the API server


def test_a_busy_expose_port_is_said_not_hidden(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with open_lab("local", tmp_path, frontend_port=port) as lab:
            for step in MAIN_STEPS[:3]:
                lab.step(step)
            expose = lab.step("expose")
            assert expose["state"] == "done"
            assert f"port {port} is in use" in str(expose["message"])
            state = lab.client.get("/api/lab").json()
            assert f"port {port} is in use" in state["expose_note"]
            assert f":{port}/" not in state["frontend_url"]
            assert f"port {port} is in use" in lab.client.get("/fragments/guestbook").text


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
