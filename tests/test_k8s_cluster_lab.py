"""The whole lab on a REAL cluster, as an instructor runs it (`k8s` marker; see `test_k8s_cluster.py` for the setup).

One throwaway namespace for the module, holding someone else's objects the lab did not create: an `app=redis`
Deployment with its pod, an `app=redis` Service, and a bare `app=redis` pod. Then, in file order, through the
dashboard's JSON API (in-process app, the default `--redis-access auto`): the pre-flight, the four steps
(each timed), the pods board (only the lab's pods), the replication panel, the events and the pods' real logs,
the probe and a bounded write load, every failure drill (each timed), and cleanup, which must leave the foreign
objects untouched. `pytest -s` prints each step's time on this cluster.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dashboard import drills
from dashboard.settings import Settings
from dashboard.web import create_app
from tests.k8s_helpers import poll
from tests.test_k8s_cluster import CONTEXT, HX, KUBECONFIG, TIMES, cluster_clients, throwaway_namespace, timed

REDIS_LINE = re.compile(r"^\d+:[XCSM] \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d\.\d+ [.\-*#] ")
LEADER_IMAGE = "registry.k8s.io/redis@sha256:cb111d1bd870a6a471385a4a69ad17469d326e9dd91e0e455350cacf36e1b3ee"
FOREIGN_LABELS = {"app": "redis", "owner": "someone-else"}

pytestmark = [
    pytest.mark.k8s,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        not KUBECONFIG, reason="set GUESTBOOK_LAB_TEST_KUBECONFIG to a kubeconfig to run the lab on a real cluster"
    ),
]


@dataclass
class Lab:
    client: TestClient
    namespace: str
    v1: Any
    apps: Any

    def replication(self) -> dict[str, Any]:
        body: dict[str, Any] = self.client.get("/api/replication").json()
        return body

    def in_sync(self, followers: int = 2) -> bool:
        body = self.replication()
        links = [f["link"] for f in body["followers"]]
        return bool(body["in_sync"]) and links == ["up"] * followers and body["leader"] is not None

    def step(self, step_id: str) -> dict[str, Any]:
        with timed(f"step {step_id}"):
            response = self.client.post(f"/api/steps/{step_id}", headers=HX)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["state"] == "done", body
        return body

    def drill(self, drill_id: str) -> dict[str, Any]:
        poll(self.in_sync, 60, "the leader and two followers in sync before the drill", interval=0.5)
        with timed(f"drill {drill_id}"):
            response = self.client.post(f"/api/drills/{drill_id}", headers=HX)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["state"] == "done", (body["state"], body.get("error"), body["message"], body["output"][-5:])
        assert body["message"], body
        return body


def foreign_objects(namespace: str, v1: Any, apps: Any) -> None:
    """Someone else's `app=redis` Deployment (one pod), `app=redis` Service and bare `app=redis` pod."""
    container = {"name": "redis", "image": LEADER_IMAGE, "ports": [{"containerPort": 6379}]}
    deployment = {
        "metadata": {"name": "redis-cache", "labels": FOREIGN_LABELS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": FOREIGN_LABELS},
            "template": {"metadata": {"labels": FOREIGN_LABELS}, "spec": {"containers": [container]}},
        },
    }
    apps.create_namespaced_deployment(namespace, deployment)
    service = {"metadata": {"name": "redis-cache", "labels": FOREIGN_LABELS}, "spec": {"ports": [{"port": 6379}]}}
    v1.create_namespaced_service(namespace, service)
    bare = {
        "metadata": {"name": "redis-scratch", "labels": FOREIGN_LABELS},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 1},
    }
    v1.create_namespaced_pod(namespace, bare)


def foreign_pods(lab: Lab) -> list[str]:
    pods = lab.v1.list_namespaced_pod(lab.namespace, label_selector="owner=someone-else").items
    return sorted(p.metadata.name for p in pods if p.metadata.deletion_timestamp is None)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    assert KUBECONFIG
    v1, apps = cluster_clients(KUBECONFIG, CONTEXT)
    tmp = tmp_path_factory.mktemp("k8s-cluster-lab")
    with throwaway_namespace(v1, timeout=90) as namespace:
        foreign_objects(namespace, v1, apps)
        settings = Settings(
            platform="kubernetes",
            kubeconfig=Path(KUBECONFIG),
            context=CONTEXT,
            namespace=namespace,
            redis_access="auto",  # the default: pod IPs on the kit (port-forward is covered by the other modules)
            frontend_port=0,
            step_timeout=90,
            sample_interval=0.25,
            run_dir=tmp,
        )
        with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
            yield Lab(client, namespace, v1, apps)
            if any(s["state"] == "done" for s in client.get("/api/lab").json()["steps"][:4]):
                client.post("/api/steps/cleanup", headers=HX)  # a failed test still leaves nothing running
    print("[k8s timing] " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMES.items()))


def test_preflight_says_the_admin_may_run_the_lab(lab: Lab) -> None:
    with timed("pre-flight"):
        report = lab.client.get("/api/preflight").json()
    assert report["ok"] is True and report["blocked"] == [], report
    assert report["server_version"].startswith("v1."), report
    assert report["namespace"] == {"name": lab.namespace, "exists": True, "phase": "Active", "will_create": False}
    assert {c["verb"] + " " + c["resource"] for c in report["checks"]} >= {
        "create pods/portforward",
        "patch deployments.apps",
        "watch pods",
    }
    assert all(c["allowed"] is True for c in report["checks"]), report["checks"]
    html = lab.client.get("/preflight").text
    assert lab.namespace in html and report["server_version"] in html


def test_the_four_steps_run_on_the_real_cluster(lab: Lab) -> None:
    for step in ("leader", "followers", "frontend", "expose"):
        body = lab.step(step)
        assert body["message"], body
    deployments = sorted(d.metadata.name for d in lab.apps.list_namespaced_deployment(lab.namespace).items)
    assert deployments == ["frontend", "redis-cache", "redis-follower", "redis-leader"]


def test_the_pods_board_shows_only_the_labs_pods(lab: Lab) -> None:
    pods = lab.client.get("/api/pods").json()
    assert sorted(p["component"] for p in pods) == ["frontend"] * 3 + ["redis-follower"] * 2 + ["redis-leader"]
    assert all(p["ready"] and p["phase"] == "Running" for p in pods), pods
    names = {p["name"] for p in pods}
    assert "redis-scratch" not in names and not any(n.startswith("redis-cache-") for n in names), names
    poll(lambda: len(foreign_pods(lab)) == 2, 60, "the foreign pods created", interval=0.5)


def test_replication_panel_shows_the_real_leader_and_followers(lab: Lab) -> None:
    poll(lab.in_sync, 60, "the leader and two linked followers", interval=0.5)
    replication = lab.replication()
    assert replication["leader"]["role"] == "master"
    assert replication["redis_access"]["using"] == "direct", replication["redis_access"]  # pod IPs answer on the kit
    assert all(f["role"] == "slave" or f["role"] == "replica" for f in replication["followers"]), replication


def test_events_timeline_holds_the_clusters_events(lab: Lab) -> None:
    def events() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = lab.client.get("/api/events").json()
        return rows if {"Scheduled", "ScalingReplicaSet", "Started"} <= {e["reason"] for e in rows} else []

    rows = poll(events, 30, "Scheduled, ScalingReplicaSet and Started events", interval=0.5)
    assert any(e["reason"] == "Scheduled" and "kl-node-1" in e["message"] for e in rows), rows[:5]
    assert "Scheduled" in lab.client.get("/fragments/events").text


def test_logs_are_the_pods_real_logs(lab: Lab) -> None:
    pods = lab.client.get("/api/pods").json()
    leader = next(p["name"] for p in pods if p["component"] == "redis-leader")
    with timed("logs (leader)"):
        lines = lab.client.get(f"/api/logs/{leader}").json()
    assert lines and all(abs(line["time"] - time.time()) < 900 for line in lines), lines[:3]
    assert any("Ready to accept connections" in line["text"] for line in lines), lines[-5:]

    def side_by_side() -> list[dict[str, Any]]:
        columns: list[dict[str, Any]] = lab.client.get("/api/logs-side").json()
        text = "\n".join(line["text"] for c in columns[1:] for line in c["lines"])
        return columns if "MASTER <-> REPLICA sync: Finished with success" in text else []

    columns = poll(side_by_side, 30, "both followers' logs with a finished sync", interval=0.5)
    assert [c["component"] for c in columns] == ["redis-leader", "redis-follower", "redis-follower"]
    for column in columns:
        assert all(REDIS_LINE.match(line["text"]) for line in column["lines"]), column["lines"][:3]


def test_probe_reaches_every_follower(lab: Lab) -> None:
    poll(lab.in_sync, 60, "in sync", interval=0.5)
    with timed("probe"):
        response = lab.client.post("/api/probe", headers=HX)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["all_arrived"] and result["followers"] == 2 and result["acknowledged"] == 2, result
    assert all(n["error"] is None for n in result["nodes"]), result["nodes"]
    print(f"[k8s timing] probe: max follower {result['max_follower_ms']} ms")


def test_write_load_is_accounted_for_on_every_follower(lab: Lab) -> None:
    response = lab.client.post("/api/load", json={"rate": 20, "seconds": 3}, headers=HX)
    assert response.status_code == 202, response.text

    def finished() -> dict[str, Any] | None:
        body: dict[str, Any] = lab.client.get("/api/load").json()
        return body if body["state"] not in ("running", "checking") else None

    with timed("write load 20/s for 3 s"):
        done = poll(finished, 60, "the write load to finish", interval=0.5)
    assert done is not None and done["state"] == "done", done
    assert done["ok"] == done["planned"] == 60 and done["failed"] == 0, done
    assert all(n["found"] == 60 and n["missing"] == 0 and n["error"] is None for n in done["nodes"]), done


def test_network_blip_is_a_partial_resync(lab: Lab) -> None:
    body = lab.drill("network-blip")
    assert "PARTIAL" in body["message"], body["message"]


def test_pause_replication_makes_lag_grow_then_drain(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drills, "PAUSE_SECONDS", 2.0)
    body = lab.drill("pause-replication")
    assert "gap grew to" in body["message"] and "holds every entry" in body["message"], body["message"]


def test_delete_follower_comes_back_with_a_full_resync(lab: Lab) -> None:
    before = {f["name"] for f in lab.replication()["followers"]}
    body = lab.drill("delete-follower")
    assert "FULL sync" in body["message"], body["message"]
    poll(lab.in_sync, 60, "in sync with the replacement", interval=0.5)
    assert len({f["name"] for f in lab.replication()["followers"]} - before) == 1


def test_scale_followers_to_three_and_back(lab: Lab) -> None:
    body = lab.drill("scale-followers")
    assert "Scaled to 3" in body["message"], body["message"]
    follower = lab.apps.read_namespaced_deployment("redis-follower", lab.namespace)
    assert follower.spec.replicas == 2


def test_scale_frontend_to_five_and_back(lab: Lab) -> None:
    body = lab.drill("scale-frontend")
    assert "5 frontend replicas answered" in body["message"], body["message"]


def test_delete_leader_is_shown_as_data_loss(lab: Lab) -> None:
    leader = lab.replication()["leader"]["name"]
    body = lab.drill("delete-leader")
    assert "DATA LOSS" in body["message"] and "now hold 0 entries" in body["message"], body["message"]
    poll(lab.in_sync, 60, "the followers in sync with the new leader", interval=0.5)
    assert lab.replication()["leader"]["name"] != leader


def test_cleanup_spares_the_foreign_objects(lab: Lab) -> None:
    foreign_before = foreign_pods(lab)
    assert len(foreign_before) == 2 and "redis-scratch" in foreign_before, foreign_before
    body = lab.step("cleanup")
    assert body["state"] == "done"
    assert [d.metadata.name for d in lab.apps.list_namespaced_deployment(lab.namespace).items] == ["redis-cache"]
    assert [s.metadata.name for s in lab.v1.list_namespaced_service(lab.namespace).items] == ["redis-cache"]
    assert foreign_pods(lab) == foreign_before  # the same pods: not deleted and replaced
    left = [p.metadata.name for p in lab.v1.list_namespaced_pod(lab.namespace).items]
    assert sorted(left) == foreign_before, left  # the lab's pods are gone (cleanup waited for them)
    assert lab.client.get("/api/lab").json()["frontend_url"] is None
    assert lab.client.get("/api/pods").json() == []
