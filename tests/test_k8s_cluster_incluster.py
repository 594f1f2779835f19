"""The in-cluster identity on a REAL cluster (`k8s` marker; setup in `tests/k8s_cluster.py`).

The dashboard runs with the in-cluster configuration exactly as in a pod of `manifests/dashboard/`: no kubeconfig,
`KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT` pointing at the API server, and the ServiceAccount's token
(from the TokenRequest API) and the cluster's CA where the client reads them (the official client's
`SERVICE_TOKEN_FILENAME` / `SERVICE_CERT_FILENAME`, pointed at files of the test; in a pod they are the mounted
`/var/run/secrets/kubernetes.io/serviceaccount/` files). The ServiceAccount is bound to a Role with exactly the
rules of `manifests/dashboard/role.yaml`.

With that Role the whole lab passes (pre-flight: every check allowed), and without any one of its rules the step
or panel that needs the rule fails with one sentence naming the verb and the resource (a test per rule). One
namespace for the module: the lab deployed by the first test stays for the rule tests; the last test cleans up.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
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
    dashboard_role_rules,
    identity_kubeconfig,
    namespace_on_cluster,
    timed,
)
from tests.k8s_helpers import poll

pytestmark = [*CLUSTER, pytest.mark.timeout(180)]
LAB_STEPS = ("leader", "followers", "frontend", "expose")


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:  # one for the module (the conftest's is one per test)
    with namespace_on_cluster() as name:
        yield name


def in_cluster_app(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, namespace: str, account: str, rules: list[dict[str, Any]]
) -> TestClient:
    """The dashboard app as in a pod: ServiceAccount `account` bound to `rules`, in-cluster configuration only."""
    assert KUBECONFIG
    from kubernetes.config import incluster_config

    admin = admin_api_client(KUBECONFIG, CONTEXT)
    written = identity_kubeconfig(admin, KUBECONFIG, CONTEXT, namespace, account, rules, tmp_path / "kubeconfig")
    config = yaml.safe_load(written.read_text())
    written.unlink()  # nothing but the in-cluster files may be used
    server = urlparse(config["clusters"][0]["cluster"]["server"])
    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text(config["users"][0]["user"]["token"])
    ca.write_bytes(base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]))
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", str(server.hostname))
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(server.port or 443))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config either
    settings = Settings(
        platform="kubernetes",
        namespace=namespace,  # GUESTBOOK_LAB_NAMESPACE from the downward API in manifests/dashboard/
        frontend_port=0,
        step_timeout=60,
        sample_interval=0.25,
        run_dir=tmp_path / "run",
    )
    return TestClient(create_app(settings), base_url="http://127.0.0.1:8000")


def run_step(client: TestClient, step: str) -> dict[str, Any]:
    response = client.post(f"/api/steps/{step}", headers=HX)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_whole_lab_with_exactly_the_dashboards_role(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, namespace: str
) -> None:
    rules = dashboard_role_rules()
    with in_cluster_app(monkeypatch, tmp_path, namespace, "guestbook-lab-dashboard", rules) as client:
        report = client.get("/api/preflight").json()
        assert report["in_cluster"] is True and report["config"] == "in-cluster service account", report
        assert report["ok"] is True and report["blocked"] == [], report
        assert all(c["allowed"] is True for c in report["checks"]), [c for c in report["checks"] if not c["allowed"]]
        assert report["namespace"]["exists"] is None  # a namespaced Role cannot read Namespaces: "unknown"
        assert report["redis_access"] == "direct" and "in a pod" in report["redis_access_reason"], report
        for step in LAB_STEPS:
            with timed(f"in-cluster identity: step {step}"):
                body = run_step(client, step)
            assert body["state"] == "done", (step, body["message"], body["hint"])
        poll(lambda: client.get("/api/replication").json()["in_sync"], 60, "in sync", interval=0.5)
        probe = client.post("/api/probe", headers=HX).json()
        assert probe["all_arrived"] and probe["acknowledged"] == 2, probe
        leader = next(p["name"] for p in client.get("/api/pods").json() if p["component"] == "redis-leader")
        assert client.get(f"/api/logs/{leader}").json(), "the leader's log"
        poll(lambda: client.get("/api/events").json(), 30, "the namespace's events", interval=0.5)
        for drill in ("scale-followers", "delete-follower"):
            with timed(f"in-cluster identity: drill {drill}"):
                response = client.post(f"/api/drills/{drill}", headers=HX)
            assert response.status_code == 200 and response.json()["state"] == "done", response.text


# Each rule of role.yaml, by its resources, and what fails without it: the steps to run first, then the request
# that needs the rule, and the verb and resource its one sentence must name.
RULE_NEEDS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "deployments": ((), "POST /api/steps/leader", "get deployments.apps"),
    "deployments/scale": (("leader", "followers"), "POST /api/drills/scale-followers", "patch deployments/scale.apps"),
    "services": ((), "POST /api/steps/leader", "get services"),
    "pods": ((), "POST /api/steps/leader", "list pods"),
    "pods/log": (("leader",), "GET /api/logs/{leader}", "get pods/log"),
    "pods/portforward": (("leader", "followers", "frontend"), "POST /api/steps/expose", "get pods/portforward"),
    "endpointslices": ((), "POST /api/steps/leader", "list endpointslices.discovery.k8s.io"),
    "events": ((), "GET /api/events", "list events"),
}


def test_every_rule_of_the_role_is_checked_here() -> None:
    assert sorted(",".join(r["resources"]) for r in dashboard_role_rules()) == sorted(RULE_NEEDS)


@pytest.mark.parametrize("rule", list(RULE_NEEDS))
def test_without_one_rule_the_step_that_needs_it_names_verb_and_resource(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, namespace: str, rule: str
) -> None:
    before, request, named = RULE_NEEDS[rule]
    rules = [r for r in dashboard_role_rules() if ",".join(r["resources"]) != rule]
    account = "without-" + rule.replace("/", "-")
    with in_cluster_app(monkeypatch, tmp_path, namespace, account, rules) as client:
        for step in before:
            body = run_step(client, step)
            assert body["state"] == "done", (step, body["message"], body["hint"])
        method, path = request.split(" ")
        if "{leader}" in path:
            leader = next(p["name"] for p in client.get("/api/pods").json() if p["component"] == "redis-leader")
            path = path.format(leader=leader)
        with timed(f"without the {rule} rule: {request}"):
            response = client.request(method, path, headers=HX)
        body = response.json()
        message = str(body.get("message") or body.get("error") or "") if isinstance(body, dict) else ""
        hint = str(body.get("hint") or "") if isinstance(body, dict) else ""
        if path.startswith("/api/steps/") or path.startswith("/api/drills/"):
            assert body.get("state") == "failed", body
        else:
            assert response.status_code >= 400, body
        user = f"system:serviceaccount:{namespace}:{account}"
        assert message == f"{user} may not {named} in namespace {namespace} (403 Forbidden).", (message, hint)
        assert f"'{named.split()[0]}'" in hint and "role.yaml" in hint, hint


def test_cleanup_with_exactly_the_dashboards_role(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, namespace: str
) -> None:
    assert KUBECONFIG
    rules = dashboard_role_rules()
    with in_cluster_app(monkeypatch, tmp_path, namespace, "cleanup", rules) as client:
        with timed("in-cluster identity: cleanup"):
            body = run_step(client, "cleanup")
        assert body["state"] == "done", (body["message"], body["hint"])
    v1, apps = cluster_clients(KUBECONFIG, CONTEXT)
    assert apps.list_namespaced_deployment(namespace).items == []
    assert v1.list_namespaced_service(namespace).items == []
