"""The lab on a REAL cluster next to someone else's objects (`k8s` marker; setup in `tests/k8s_cluster.py`).

One throwaway namespace for the module, holding someone else's objects the lab did not create: an `app=redis`
Deployment with its pod, an `app=redis` Service, and a bare `app=redis` pod. Then, in file order, through the
dashboard's JSON API (in-process app, the default `--redis-access auto`): the pre-flight, the four steps
(each timed), the pods board (only the lab's pods), the events timeline (the cluster's events, and a new one
pushed by the events watch), one pod's real log, and cleanup, which must leave the foreign objects untouched.
`pytest -s` prints each step's time on this cluster. The replication panel, the probe, the write load, every
drill and the side-by-side logs run on the real cluster in the behaviour suite (`tests/test_lab.py`,
`tests/test_drills.py`, `kubernetes` parameter).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dashboard.web import create_app
from tests.k8s_cluster import (
    CLUSTER,
    CONTEXT,
    HX,
    KUBECONFIG,
    TIMES,
    cluster_clients,
    cluster_settings,
    namespace_on_cluster,
    timed,
)
from tests.k8s_helpers import poll

LEADER_IMAGE = "registry.k8s.io/redis@sha256:cb111d1bd870a6a471385a4a69ad17469d326e9dd91e0e455350cacf36e1b3ee"
FOREIGN_LABELS = {"app": "redis", "owner": "someone-else"}

pytestmark = [*CLUSTER, pytest.mark.timeout(240)]


@dataclass
class Lab:
    client: TestClient
    namespace: str
    v1: Any
    apps: Any

    def step(self, step_id: str) -> dict[str, Any]:
        with timed(f"step {step_id}"):
            response = self.client.post(f"/api/steps/{step_id}", headers=HX)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["state"] == "done", body
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
    with namespace_on_cluster() as namespace:
        foreign_objects(namespace, v1, apps)
        # redis_access auto, the default: pod IPs on the kit (port-forward is covered by the other modules)
        settings = cluster_settings(namespace, tmp, step_timeout=90, sample_interval=0.25)
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


def test_events_timeline_holds_the_clusters_events(lab: Lab) -> None:
    def events() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = lab.client.get("/api/events").json()
        return rows if {"Scheduled", "ScalingReplicaSet", "Started"} <= {e["reason"] for e in rows} else []

    rows = poll(events, 30, "Scheduled, ScalingReplicaSet and Started events", interval=0.5)
    assert any(e["reason"] == "Scheduled" and "kl-node-1" in e["message"] for e in rows), rows[:5]
    assert set(rows[0]) == {"time", "type", "reason", "object", "message", "count"}
    assert [r["time"] for r in rows] == sorted((r["time"] for r in rows), reverse=True)  # newest first
    assert len(lab.client.get("/api/events", params={"limit": 3}).json()) == 3
    fragment = lab.client.get("/fragments/events").text
    assert '<table class="events">' in fragment and "Scheduled" in fragment

    # A new Event in the namespace reaches the timeline through the events watch (the live topic moves).
    state = lab.client.app.state.labs.get("default")  # type: ignore[attr-defined]
    version = state.hub.versions["events"]
    message = f"Scaled up replica set redis-leader-abc to 1 ({lab.namespace})"
    lab.v1.create_namespaced_event(
        lab.namespace,
        {
            "metadata": {"name": "redis-leader.guestbook-lab-test"},
            "involvedObject": {"kind": "Deployment", "name": "redis-leader", "namespace": lab.namespace},
            "reason": "ScalingReplicaSet",
            "message": message,
            "type": "Normal",
            "firstTimestamp": "2099-01-01T00:00:00Z",
            "lastTimestamp": "2099-01-01T00:00:00Z",
        },
    )
    poll(lambda: state.hub.versions["events"] > version, 30, "the events topic published by the watch", interval=0.2)
    assert lab.client.get("/api/events").json()[0]["message"] == message
    assert message in lab.client.get("/fragments/events").text


def test_logs_are_the_pods_real_logs(lab: Lab) -> None:
    pods = lab.client.get("/api/pods").json()
    leader = next(p["name"] for p in pods if p["component"] == "redis-leader")
    with timed("logs (leader)"):
        lines = lab.client.get(f"/api/logs/{leader}").json()
    assert lines and all(abs(line["time"] - time.time()) < 900 for line in lines), lines[:3]
    assert any("Ready to accept connections" in line["text"] for line in lines), lines[-5:]


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
