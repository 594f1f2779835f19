"""The five steps through the JSON API, the same tests on the local platform and on a real Kubernetes cluster.

Each test runs on both (`tests/platform_labs.py`; the kubernetes one in a throwaway namespace of its own, `k8s`
marker, skipped with the reason without GUESTBOOK_LAB_TEST_KUBECONFIG): checks that say what they proved,
idempotence, concurrent clicks, cleanup (nothing left in the cluster), the embedded guestbook, the replication
panel and a write seen on every Redis pod. What only one platform has is tested only there: the objects the
cluster holds against the tutorial; the local platform's busy expose port.
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
from tests.platform_labs import HX, MAIN_STEPS, PLATFORMS, Lab, open_lab
from tests.polling import wait_until

pytestmark = [pytest.mark.timeout(240)]


@pytest.fixture(params=PLATFORMS)
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    with open_lab(request.param, tmp_path) as opened:
        yield opened


@pytest.fixture(params=[p for p in PLATFORMS if p.values == ("kubernetes",)])
def kube_lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    with open_lab(request.param, tmp_path) as opened:
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
    if lab.platform == "local":  # the Python frontend names its Redis connections: CLIENT LIST tells where they go
        assert "CLIENT LIST shows them writing to redis-leader-" in message, message
        assert "reading from redis-follower-" in message, message
    else:  # the upstream PHP frontend's connections are unnamed: the step says what the manifests say instead
        assert "they write to the redis-leader Service and read from the redis-follower Service." in message, message
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
    if lab.platform == "kubernetes":  # what the cluster holds right after the step: no object of the lab's
        assert lab.deployments() == {} and lab.v1.list_namespaced_service(lab.namespace).items == []
        assert [p.metadata.name for p in lab.cluster_pods() if p.metadata.deletion_timestamp is None] == []
    lab.pod_processes_gone()
    # and the prerequisite chain starts again from the leader
    assert lab.client.post("/api/steps/followers", headers=HX).status_code == 409


def test_the_embedded_guestbook_works_through_the_dashboard(lab: Lab) -> None:
    lab.main_steps()
    page = lab.client.get("/guestbook/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    entry = "through the dashboard & #+ ✓"  # no quote or comma: the upstream PHP prints it into JSON unescaped
    origin = {"Origin": "http://127.0.0.1:8000"}
    # The upstream contract, as the tutorial's page sends it (the PHP frontend on the cluster, the Python one here)
    written = lab.client.get(
        "/guestbook/guestbook.php", params={"cmd": "set", "key": "guestbook", "value": entry}, headers=origin
    )
    assert written.status_code == 200 and written.json() == {"message": "Updated"}, written.text
    # reads come from a follower: the entry shows there a moment later
    wait_until(
        lambda: lab.client.get("/guestbook/guestbook.php?cmd=get&key=guestbook").json()["data"] == entry,
        10,
        what="the entry on the follower the frontend reads from",
    )
    if lab.platform == "local":  # the Python frontend's own `append`, with the entries as a list
        second = 'a second one, with a comma and "quotes"'
        appended = lab.client.post("/guestbook/guestbook.php", data={"cmd": "append", "value": second}, headers=origin)
        assert appended.status_code == 200 and appended.json()["entries"] == [entry, second]
        wait_until(
            lambda: lab.client.get("/guestbook/guestbook.php?cmd=get").json()["entries"] == [entry, second],
            5,
            what="both entries on the follower",
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
    # How the dashboard reached them, and why: loopback ports, or (the kit, --redis-access auto) the pod IPs
    using = {"local": "loopback", "kubernetes": "direct"}[lab.platform]
    assert rep["redis_access"]["using"] == using and rep["redis_access"]["reason"], rep["redis_access"]
    panel = lab.client.get("/fragments/replication").text
    assert f"Redis reached by {using}: " in panel

    url = lab.client.get("/api/lab").json()["frontend_url"]
    write = {"cmd": "set", "key": "guestbook", "value": "hello from the lab"}  # the upstream contract
    answer = httpx.get(f"{url.rstrip('/')}/guestbook.php", params=write, timeout=10)
    assert answer.status_code == 200, answer.text

    def everywhere() -> bool:
        entries = lab.replication()["entries"]
        return len(entries) == 3 and all(e == ["hello from the lab"] for e in entries.values())

    wait_until(everywhere, what="the entry on the leader and both followers")
    read = httpx.get(f"{url.rstrip('/')}/guestbook.php", params={"cmd": "get", "key": "guestbook"}, timeout=10)
    assert read.json()["data"] == "hello from the lab", read.text
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


def test_the_cluster_holds_the_tutorials_objects(kube_lab: Lab) -> None:
    kube_lab.main_steps()
    deployments = kube_lab.deployments()
    assert sorted(deployments) == ["frontend", "redis-follower", "redis-leader"]
    assert [deployments[n].spec.replicas for n in ("redis-leader", "redis-follower", "frontend")] == [1, 2, 3]
    assert deployments["redis-follower"].spec.selector.match_labels == {"app": "redis"}
    assert deployments["frontend"].spec.template.spec.containers[0].image.endswith("gb-frontend:v5")
    assert all(d.metadata.labels[LAB_LABEL_KEY] == LAB_LABEL_VALUE for d in deployments.values())
    services = {s.metadata.name: s for s in kube_lab.v1.list_namespaced_service(kube_lab.namespace).items}
    assert sorted(services) == ["frontend", "redis-follower", "redis-leader"]
    assert services["frontend"].spec.selector == {"app": "guestbook", "tier": "frontend"}
    pods = {p["name"]: p for p in kube_lab.client.get("/api/pods").json()}
    running = {p.metadata.name: p for p in kube_lab.cluster_pods() if p.metadata.deletion_timestamp is None}
    assert sorted(pods) == sorted(running)  # the board is the cluster's pods, with their real IPs and node
    assert all(pods[n]["ip"] == p.status.pod_ip and pods[n]["node"] == p.spec.node_name for n, p in running.items())
    wait_until(lambda: kube_lab.in_sync(), what="the leader and two followers in sync")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
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
