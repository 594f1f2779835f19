"""The pre-flight page and API, and the events timeline, in the web app (`dashboard.preflight`).

Kubernetes: the app runs the real Kubernetes platform against `tests/k8s_double/` (SelfSubjectAccessReview
answers, the recorded core/v1 Events, the shared events watch). Local: the app runs the real local platform
(no lab applied), and its pre-flight looks at this machine (redis-server, run dir, frontend port).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dashboard.settings import Settings
from dashboard.web import create_app
from tests.k8s_double import KubernetesApiDouble
from tests.polling import wait_until


@pytest.fixture
def double() -> Iterator[KubernetesApiDouble]:
    with KubernetesApiDouble(pod_grace=0.1) as api:
        yield api


def kube_client(double: KubernetesApiDouble, tmp_path: Path) -> TestClient:
    settings = Settings(
        platform="kubernetes",
        kubeconfig=double.write_kubeconfig(tmp_path / "kubeconfig"),
        namespace="guestbook",
        redis_access="auto",
        frontend_port=0,
        run_dir=tmp_path,
    )
    return TestClient(create_app(settings), base_url="http://127.0.0.1:8000")


def test_preflight_api_and_page_on_kubernetes(double: KubernetesApiDouble, tmp_path: Path) -> None:
    double.forbid("create", "pods/portforward")
    double.forbid("delete", "services")
    with kube_client(double, tmp_path) as client:
        report = client.get("/api/preflight").json()
        assert report["platform"] == "kubernetes"
        assert report["context"] == "double" and report["server_version"] == "v1.36.2"
        assert report["server"] == double.url
        assert report["namespace"] == {"name": "guestbook", "exists": True, "phase": "Active", "will_create": False}
        assert report["ok"] is False
        denied = {(c["verb"], c["resource"]): c["blocks"] for c in report["checks"] if c["allowed"] is False}
        assert denied == {
            ("create", "pods/portforward"): ["replication panel (port-forward)", "frontend check", "expose"],
            ("delete", "services"): ["cleanup"],
        }
        assert all(c["blocks"] == [] for c in report["checks"] if c["allowed"])
        assert ("get", "pods/portforward") in {(c["verb"], c["resource"]) for c in report["checks"]}
        assert set(report["blocked"]) == {"replication panel (port-forward)", "frontend check", "expose", "cleanup"}

        page = client.get("/preflight")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        html = page.text
        assert 'href="/static/kubernetes.css"' in html and "v1.36.2" in html and "✗ not ready" in html
        assert "pods/portforward" in html and "✗ no" in html and "Blocked:" in html
        assert client.get("/static/kubernetes.css").status_code == 200

        index = client.get("/").text
        assert 'href="/preflight"' in index and 'id="panel-events"' in index and 'sse-swap="events"' in index


def test_preflight_when_the_cluster_is_gone_is_one_sentence(double: KubernetesApiDouble, tmp_path: Path) -> None:
    with kube_client(double, tmp_path) as client:
        double.close()
        report = client.get("/api/preflight").json()
        assert report["ok"] is False and report["checks"] == []
        assert report["error"]["error"].startswith(f"The API server at {double.url}")
        assert "Traceback" not in client.get("/preflight").text


def test_events_api_fragment_and_live_topic(double: KubernetesApiDouble, tmp_path: Path) -> None:
    with kube_client(double, tmp_path) as client:
        state = client.app.state.labs.get("default")  # type: ignore[attr-defined]
        rows = client.get("/api/events").json()
        assert rows and set(rows[0]) == {"time", "type", "reason", "object", "message", "count"}
        assert [r["time"] for r in rows] == sorted((r["time"] for r in rows), reverse=True)  # newest first
        assert len(client.get("/api/events", params={"limit": 3}).json()) == 3
        fragment = client.get("/fragments/events").text
        assert '<table class="events">' in fragment and rows[0]["reason"] in fragment

        version = state.hub.versions["events"]
        double.put(
            {
                "kind": "Event",
                "apiVersion": "v1",
                "metadata": {"name": "redis-leader.new"},
                "involvedObject": {"kind": "Deployment", "name": "redis-leader", "namespace": "guestbook"},
                "reason": "ScalingReplicaSet",
                "message": "Scaled up replica set redis-leader-abc to 1",
                "type": "Normal",
                "lastTimestamp": "2099-01-01T00:00:00Z",
            }
        )
        wait_until(lambda: state.hub.versions["events"] > version, what="the events topic published by the watch")
        newest = client.get("/api/events").json()[0]
        assert newest["message"] == "Scaled up replica set redis-leader-abc to 1"
        assert "Scaled up replica set redis-leader-abc to 1" in client.get("/fragments/events").text
    assert double.count("list", "events") == 1  # the timeline is read from the watch, not re-listed per viewer


@pytest.fixture
def local_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(run_dir=tmp_path / "run", frontend_port=0)
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        yield client


def test_local_preflight_and_no_events(local_client: TestClient) -> None:
    report = local_client.get("/api/preflight").json()
    assert report["platform"] == "local" and "needs no cluster" in report["message"]
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) == {"redis-server", "run directory", "frontend port"}
    assert checks["run directory"]["ok"] and "will be created" in checks["run directory"]["detail"]
    assert checks["frontend port"]["ok"]
    redis = checks["redis-server"]
    if redis["ok"]:
        assert redis["version"] and redis["path"] and report["ok"] is True
    else:
        assert redis["blocks"] == ["leader", "followers"]
    assert local_client.get("/api/events").json() == []
    assert 'id="panel-events"' not in local_client.get("/").text
    assert 'href="/preflight"' not in local_client.get("/").text
    page = local_client.get("/preflight")
    assert page.status_code == 200 and "redis-server" in page.text and "This machine" in page.text


def test_local_preflight_reports_what_blocks(tmp_path: Path) -> None:
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o500)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        settings = Settings(
            run_dir=readonly / "run", frontend_port=busy.getsockname()[1], redis_server="no-such-redis-server"
        )
        try:
            with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
                report = client.get("/api/preflight").json()
        finally:
            readonly.chmod(0o700)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"] is False
    assert checks["redis-server"]["blocks"] == ["leader", "followers"]
    assert "no-such-redis-server was not found" in checks["redis-server"]["detail"]
    assert checks["frontend port"]["blocks"] == ["expose"] and "in use" in checks["frontend port"]["detail"]
    if os.geteuid() != 0:  # root writes anywhere
        assert checks["run directory"]["blocks"] == ["leader"]
    assert set(report["blocked"]) >= {"leader", "followers", "expose"}
