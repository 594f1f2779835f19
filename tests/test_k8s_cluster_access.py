"""How the dashboard reaches Redis on a REAL cluster (`k8s` marker; setup in `tests/k8s_cluster.py`).

`--redis-access auto` from outside the cluster tries the first ready Redis pod's IP (a TCP connect with a short
deadline) and uses port-forward only when pod IPs do not answer. On the kit pod IPs answer from this machine, so
auto dials them, and says so with its reason in the pre-flight, `/api/replication` (`redis_access`) and the Redis
panel; it then needs no `pods/portforward` rights at all. A port-forward the API server refuses for good (403 on
`pods/portforward`) fails the step within 10 s with one sentence and the fix, instead of retrying until the step
timeout. `--expose nodeport` on the kit (no kube-proxy): the NodePort URL does not answer, so the expose step
falls back to a port-forward within a few seconds and says so. Each test has its own namespace.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from dashboard.settings import Settings
from dashboard.web import create_app
from tests.k8s_cluster import (
    CLUSTER,
    CONTEXT,
    HX,
    KUBECONFIG,
    admin_api_client,
    cluster_clients,
    cluster_settings,
    dashboard_role_rules,
    identity_kubeconfig,
    timed,
)

pytestmark = [*CLUSTER, pytest.mark.timeout(180)]


def rules_without_portforward() -> list[dict[str, Any]]:
    """manifests/dashboard/role.yaml's rules minus the pods/portforward rule."""
    return [r for r in dashboard_role_rules() if "pods/portforward" not in r["resources"]]


def no_portforward_kubeconfig(namespace: str, path: Path) -> Path:
    assert KUBECONFIG
    admin = admin_api_client(KUBECONFIG, CONTEXT)
    rules = rules_without_portforward()
    return identity_kubeconfig(admin, KUBECONFIG, CONTEXT, namespace, "no-portforward", rules, path)


def lab_settings(kubeconfig: Path, namespace: str, tmp_path: Path, **overrides: Any) -> Settings:
    """The dashboard as the identity of `kubeconfig` (its own current context)."""
    values = {"context": None, "step_timeout": 90, "sample_interval": 0.25, "run_dir": tmp_path / "run"}
    return cluster_settings(namespace, tmp_path, kubeconfig=kubeconfig, **{**values, **overrides})


def test_auto_dials_pod_ips_when_they_answer_and_says_why(namespace: str, tmp_path: Path) -> None:
    """With the Role minus pods/portforward: auto dials the pod IPs, so the leader step passes without it."""
    kubeconfig = no_portforward_kubeconfig(namespace, tmp_path / "kubeconfig")
    settings = lab_settings(kubeconfig, namespace, tmp_path, redis_access="auto")
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        before = client.get("/api/preflight").json()
        assert before["redis_access"] == "auto" and "first ready Redis pod" in before["redis_access_reason"]
        with timed("leader step, redis-access auto (pod IPs)"):
            step = client.post("/api/steps/leader", headers=HX).json()
        assert step["state"] == "done", (step["message"], step["hint"])
        access = client.get("/api/replication").json()["redis_access"]
        assert access["mode"] == "auto" and access["using"] == "direct", access
        assert "answers from here" in access["reason"] and ":6379 of redis-leader-" in access["reason"], access
        pod_ip = next(p["ip"] for p in client.get("/api/pods").json() if p["component"] == "redis-leader")
        assert pod_ip and f"pod IP {pod_ip}:6379" in access["reason"], (pod_ip, access)
        report = client.get("/api/preflight").json()
        assert report["redis_access"] == "direct" and report["redis_access_reason"] == access["reason"]
        assert access["reason"] in client.get("/preflight").text
        assert "Redis reached by direct" in client.get("/fragments/replication").text


def test_a_port_forward_refused_for_good_fails_the_step_within_10_s(namespace: str, tmp_path: Path) -> None:
    kubeconfig = no_portforward_kubeconfig(namespace, tmp_path / "kubeconfig")
    settings = lab_settings(kubeconfig, namespace, tmp_path, redis_access="port-forward", step_timeout=300)
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        started = time.monotonic()
        with timed("leader step, port-forward refused (403)"):
            step = client.post("/api/steps/leader", headers=HX).json()
        took = time.monotonic() - started
        assert step["state"] == "failed", step
        assert took < 10, f"the refused port-forward failed the step only after {took:.1f} s"
        user = f"system:serviceaccount:{namespace}:no-portforward"
        assert step["message"].startswith(f"{user} may not "), step["message"]
        assert "pods/portforward" in step["message"] and "403 Forbidden" in step["message"], step["message"]
        assert "'get' and 'create' on pods/portforward" in step["hint"], step["hint"]
        assert "--redis-access direct" in step["hint"], step["hint"]
        access = client.get("/api/replication").json()["redis_access"]
        assert access["using"] == "port-forward" and access["reason"].startswith("--redis-access port-forward")


def test_a_nodeport_nobody_serves_falls_back_to_a_port_forward(namespace: str, tmp_path: Path) -> None:
    """The kit runs no kube-proxy: the NodePort URL does not answer, so expose uses a port-forward and says so."""
    assert KUBECONFIG
    v1, _ = cluster_clients(KUBECONFIG, CONTEXT)
    settings = lab_settings(Path(KUBECONFIG), namespace, tmp_path, context=CONTEXT, expose_mode="nodeport")
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        for step in ("leader", "followers", "frontend"):
            assert client.post(f"/api/steps/{step}", headers=HX).json()["state"] == "done"
        with timed("expose step, NodePort not answering -> port-forward"):
            step = client.post("/api/steps/expose", headers=HX).json()
        assert step["state"] == "done", (step["message"], step["hint"])
        print(f"[k8s] expose --expose nodeport on the kit: {step['message']}")
        service = v1.read_namespaced_service("frontend", namespace)
        node_port = service.spec.ports[0].node_port
        assert service.spec.type == "NodePort" and node_port, service.spec
        lab = client.get("/api/lab").json()
        url = lab["frontend_url"]
        assert url and url.startswith("http://127.0.0.1:"), lab
        assert f":{node_port} does not answer within 3 s" in step["message"], step["message"]
        assert "using a port-forward to a ready frontend pod instead" in step["message"], step["message"]
        answer = httpx.get(f"{url}/guestbook.php", params={"cmd": "get", "key": "messages"}, timeout=10)
        assert answer.status_code == 200 and "data" in answer.json(), answer.text
        assert client.post("/api/steps/cleanup", headers=HX).json()["state"] == "done"


def test_the_preflight_page_says_what_a_missing_right_blocks(namespace: str, tmp_path: Path) -> None:
    """The Role minus pods/portforward and minus `delete` on Services: which checks fail, and what they block."""
    assert KUBECONFIG
    admin = admin_api_client(KUBECONFIG, CONTEXT)
    rules = [
        {**r, "verbs": [v for v in r["verbs"] if v != "delete"]} if r["resources"] == ["services"] else r
        for r in rules_without_portforward()
    ]
    kubeconfig = identity_kubeconfig(
        admin, KUBECONFIG, CONTEXT, namespace, "no-cleanup", rules, tmp_path / "kubeconfig"
    )
    settings = lab_settings(kubeconfig, namespace, tmp_path, redis_access="auto")
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        report = client.get("/api/preflight").json()
        assert report["platform"] == "kubernetes" and report["server_version"].startswith("v1."), report
        # a Role cannot grant `get` on the (cluster-scoped) Namespace: its state is unknown, not "missing"
        assert report["namespace"]["name"] == namespace and report["namespace"]["will_create"] is False, report
        assert report["ok"] is False
        denied = {(c["verb"], c["resource"]): c["blocks"] for c in report["checks"] if c["allowed"] is False}
        assert denied == {
            ("get", "pods/portforward"): ["replication panel (port-forward)", "frontend check", "expose"],
            ("create", "pods/portforward"): ["replication panel (port-forward)", "frontend check", "expose"],
            ("delete", "services"): ["cleanup"],
        }, denied
        assert all(c["blocks"] == [] for c in report["checks"] if c["allowed"])
        assert set(report["blocked"]) == {"replication panel (port-forward)", "frontend check", "expose", "cleanup"}

        page = client.get("/preflight")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        html = page.text
        assert 'href="/static/kubernetes.css"' in html and report["server_version"] in html and "✗ not ready" in html
        assert "pods/portforward" in html and "✗ no" in html and "Blocked:" in html
        assert client.get("/static/kubernetes.css").status_code == 200
        index = client.get("/").text
        assert 'href="/preflight"' in index and 'id="panel-events"' in index and 'sse-swap="events"' in index
