"""Issue 4 on the Kubernetes platform code path: probe, write load, every failure drill, lag history and logs.

The same lab as `test_k8s_double_lab.py` (the dashboard app driving `tests/k8s_double/` through the real
kubernetes client; behind the pods the `LoopbackKubelet` runs real redis-server processes and the Python guestbook
frontend; Redis and the frontend are reached only through WebSocket port-forwards). After the five main steps,
in the order an instructor would: the probe (per-follower ms and WAIT's count), a short write load (every entry
on every follower), the drills (network blip, pause, delete a follower, scale the followers, scale the frontend,
delete the leader — each "done" with a message saying what happened), the lag history with its events and the
leader's and followers' pod logs side by side. One lab for the module; the tests run in file order.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from fastapi.testclient import TestClient

from dashboard import drills
from dashboard.settings import Settings
from dashboard.web import create_app
from tests.k8s_double import KubernetesApiDouble, LoopbackKubelet
from tests.polling import wait_until

T = TypeVar("T")
HX = {"HX-Request": "true"}
REDIS_LINE = re.compile(r"^\d+:[XCSM] \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d\.\d+ [.\-*#] ")

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed"),
]


@dataclass
class Lab:
    client: TestClient
    double: KubernetesApiDouble
    kubelet: LoopbackKubelet

    def replication(self) -> dict[str, Any]:
        body: dict[str, Any] = self.client.get("/api/replication").json()
        return body

    def in_sync(self, followers: int = 2) -> bool:
        body = self.replication()
        return bool(body["in_sync"]) and len(body["followers"]) == followers

    def drill(self, drill_id: str) -> dict[str, Any]:
        response = self.client.post(f"/api/drills/{drill_id}", headers=HX)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["state"] == "done", (body["state"], body.get("error"), body["message"], body["output"][-5:])
        assert body["message"], body
        return body


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The five main steps on the double (port-forward access, as from a laptop); cleaned up at the end."""
    tmp = tmp_path_factory.mktemp("k8s-drills")
    (tmp / "pods").mkdir()
    kubelet = LoopbackKubelet(tmp / "pods")
    try:
        with KubernetesApiDouble(pod_grace=0.1, kubelet=kubelet) as double:
            settings = Settings(
                platform="kubernetes",
                kubeconfig=double.write_kubeconfig(tmp / "kubeconfig"),
                namespace="guestbook",
                redis_access="port-forward",
                frontend_port=0,
                step_timeout=30,
                sample_interval=0.2,
                run_dir=tmp / "run",
            )
            with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
                assert client.get("/api/lab").json()["platform"] == "kubernetes"
                for step in ("leader", "followers", "frontend", "expose"):
                    response = client.post(f"/api/steps/{step}", headers=HX)
                    assert response.status_code == 200, response.text
                    assert response.json()["state"] == "done", response.json()
                lab = Lab(client, double, kubelet)
                wait_until(lab.in_sync, what="the leader and two followers in sync")
                yield lab
                response = client.post("/api/steps/cleanup", headers=HX)
                assert response.status_code == 200 and response.json()["state"] == "done", response.text
                wait_until(lambda: kubelet.running() == [], what="every process behind the pods stopped")
    finally:
        kubelet.close()


def test_probe_times_each_follower_and_counts_wait_acks(lab: Lab) -> None:
    response = lab.client.post("/api/probe", headers=HX)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["all_arrived"] and result["followers"] == 2 and result["acknowledged"] == 2, result
    assert result["wait_error"] is None and result["append_supported"] is True
    followers = [n for n in result["nodes"] if n["role"] == "follower"]
    assert len(followers) == 2
    for node in followers:
        assert node["error"] is None and node["ms"] >= 0 and node["ms_after_leader"] >= 0, node
    assert result["max_follower_ms"] is not None and result["max_follower_ms"] < 2000
    assert lab.client.get("/api/probe").json()["entry"] == result["entry"]
    wait_until(lambda: all(result["entry"] in e for e in lab.replication()["entries"].values()), what="the probe entry")
    forwarded = {pod for _, pod, _ in lab.double.portforwards}
    assert {n["name"] for n in result["nodes"]} <= forwarded  # Redis reached only through the API server


def test_write_load_is_accounted_for_on_every_follower(lab: Lab) -> None:
    response = lab.client.post("/api/load", json={"rate": 40, "seconds": 2}, headers=HX)
    assert response.status_code == 202, response.text

    def finished() -> dict[str, Any] | None:
        body: dict[str, Any] = lab.client.get("/api/load").json()
        return body if body["state"] not in ("running", "checking") else None

    done = wait_until(finished, 30, what="the write load to finish")
    assert done is not None
    assert done["state"] == "done", done
    assert done["ok"] == done["planned"] == 80 and done["failed"] == 0, done
    assert [n["role"] for n in done["nodes"]] == ["leader", "follower", "follower"]
    assert all(n["found"] == 80 and n["missing"] == 0 and n["error"] is None for n in done["nodes"]), done
    assert "every one is on the leader and on all 2 followers" in done["message"]


def test_network_blip_is_a_partial_resync(lab: Lab) -> None:
    wait_until(lab.in_sync, what="in sync")
    body = lab.drill("network-blip")
    assert "PARTIAL" in body["message"] and "sync_partial_ok +1" in body["message"], body["message"]
    assert any(m["kind"] == "partial_resync" for m in lab.client.get("/api/lag").json()["marks"])


def test_pause_replication_makes_lag_grow_then_drain(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drills, "PAUSE_SECONDS", 1.5)
    wait_until(lab.in_sync, what="in sync")
    started = time.time()
    body = lab.drill("pause-replication")
    assert "gap grew to" in body["message"] and "holds every entry" in body["message"], body["message"]
    history = lab.client.get("/api/lag").json()
    gaps = [s["gap_bytes"] or 0 for samples in history["followers"].values() for s in samples if s["time"] >= started]
    assert max(gaps) > 0, history["followers"]  # the sampler measured the lag through the port-forwards too
    wait_until(lab.in_sync, what="caught up")


def test_delete_follower_comes_back_with_a_full_resync(lab: Lab) -> None:
    before = {f["name"] for f in lab.replication()["followers"]}
    body = lab.drill("delete-follower")
    assert "FULL sync" in body["message"] and "sync_full +1" in body["message"], body["message"]
    assert any(line.startswith("$ kubectl delete pod") for line in body["output"])
    wait_until(lab.in_sync, what="in sync with the replacement")
    after = {f["name"] for f in lab.replication()["followers"]}
    assert len(after) == 2 and len(after - before) == 1
    marks = lab.client.get("/api/lag").json()["marks"]
    assert any(m["kind"] == "full_resync" and m["node"] in after - before for m in marks)


def test_scale_followers_to_three_and_back(lab: Lab) -> None:
    body = lab.drill("scale-followers")
    assert "Scaled to 3" in body["message"] and "sync_full +1" in body["message"], body["message"]
    assert any("--replicas=3" in line for line in body["output"])
    deployments = {d["metadata"]["name"]: d for d in lab.double.objects("deployments")}
    assert deployments["redis-follower"]["spec"]["replicas"] == 2
    wait_until(lab.in_sync, what="two followers in sync")


def test_scale_frontend_to_five_and_back_to_two(lab: Lab) -> None:
    body = lab.drill("scale-frontend")
    assert "5 frontend replicas answered, then 2" in body["message"], body["message"]
    # the three scaled away may still be Terminating for their grace period, as kubectl get pods shows them
    wait_until(
        lambda: len([p for p in lab.client.get("/api/pods").json() if p["component"] == "frontend"]) == 2,
        what="two frontend pods left",
    )
    deployments = {d["metadata"]["name"]: d for d in lab.double.objects("deployments")}
    assert deployments["frontend"]["spec"]["replicas"] == 2


def test_logs_side_by_side_are_the_pods_real_logs(lab: Lab) -> None:
    columns = lab.client.get("/api/logs-side").json()
    assert [c["component"] for c in columns] == ["redis-leader", "redis-follower", "redis-follower"], columns
    redis_pods = {p["name"] for p in lab.client.get("/api/pods").json() if p["component"] != "frontend"}
    assert {c["pod"] for c in columns} == redis_pods
    for column in columns:  # what redis-server wrote, with the kubelet's timestamps: no made-up lines
        assert column["lines"], column
        assert all(REDIS_LINE.match(line["text"]) for line in column["lines"]), column["lines"][:3]
        assert all(abs(line["time"] - time.time()) < 600 for line in column["lines"]), column["lines"][:3]
    kinds = {line["kind"] for column in columns for line in column["lines"]}
    assert {"ok", "link", "full", "partial"} <= kinds, kinds  # the blip's partial resync is in the leader's log
    follower_text = "\n".join(line["text"] for c in columns[1:] for line in c["lines"])
    assert "Connecting to MASTER" in follower_text and "MASTER <-> REPLICA sync: Finished with success" in follower_text
    assert any(verb == "get" and path.endswith("/log") for _, verb, path in lab.double.requests)
    assert lab.client.get("/logs/watch").status_code == 204
    html = lab.client.get("/fragments/logs").text
    assert "log-partial" in html and "log-ok" in html


def test_delete_leader_is_shown_as_data_loss(lab: Lab) -> None:
    wait_until(lab.in_sync, what="in sync")
    leader = lab.replication()["leader"]["name"]
    count = len(lab.replication()["entries"][leader])
    assert count > 0
    started = time.time()
    body = lab.drill("delete-leader")
    assert f"DATA LOSS: {count} entries are gone" in body["message"], body["message"]
    assert "2 followers made 2 full resync(s)" in body["message"] and "now hold 0 entries" in body["message"]
    wait_until(lab.in_sync, what="the followers in sync with the new leader")
    after = lab.replication()
    assert after["leader"]["name"] != leader
    assert all(entries == [] for entries in after["entries"].values())
    assert all(f["link"] == "up" for f in after["followers"])
    followers = {f["name"] for f in after["followers"]}

    def resyncs_sampled() -> set[str]:
        events = lab.client.get("/api/lag").json()["events"]
        seen = {e["node"] for e in events if e["time"] >= started and e["kind"] == "full_resync"}
        return seen if seen >= followers else set()

    wait_until(resyncs_sampled, what="the sampler's full_resync events for both followers")
    marks = lab.client.get("/api/lag").json()["marks"]
    assert any(m["detail"].startswith(f"deleted the leader {leader}") for m in marks)
    assert {m["node"] for m in marks if m["kind"] == "full_resync" and m["time"] >= started} == followers
    html = lab.client.get("/fragments/drills").text
    assert "hx-confirm" in html  # the warning before the click


def test_lag_history_shows_samples_events_and_marks(lab: Lab) -> None:
    history = lab.client.get("/api/lag").json()
    assert history["interval"] == 0.2
    current = {f["name"] for f in lab.replication()["followers"]}
    assert current <= set(history["followers"]) and len(history["followers"]) >= 4  # replaced and scaled ones too
    for name in current:
        samples = history["followers"][name]
        assert samples and samples[-1]["link"] == "up" and samples[-1]["gap_bytes"] == 0, samples[-3:]
    kinds = {e["kind"] for e in history["events"]}
    assert "full_resync" in kinds, history["events"]
    marks = {m["kind"] for m in history["marks"]}
    assert {"drill", "link_down", "partial_resync", "full_resync"} <= marks, marks
    html = lab.client.get("/fragments/lag").text
    assert html.count('class="lag-svg"') >= 2 and "gap (bytes" in html
