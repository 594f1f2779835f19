"""The whole lab against a REAL Kubernetes cluster, through the dashboard's JSON API (`k8s` marker).

Runs only when GUESTBOOK_LAB_TEST_KUBECONFIG names a kubeconfig (its current context, or
GUESTBOOK_LAB_TEST_CONTEXT). It creates its own throwaway namespace `guestbook-lab-test-<random>` (and refuses
one that already exists), clicks the five steps through `POST /api/steps/{id}`, checks what the cluster holds
against the tutorial (names, labels, selectors, images, replicas), and always deletes the namespace at the end.
It needs a conformant cluster whose pods can pull the tutorial's images (kind, minikube, k3s, a cloud cluster).

    GUESTBOOK_LAB_TEST_KUBECONFIG=~/.kube/config .venv/bin/python -m pytest -m k8s tests/test_k8s_cluster.py
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

KUBECONFIG = os.environ.get("GUESTBOOK_LAB_TEST_KUBECONFIG")
CONTEXT = os.environ.get("GUESTBOOK_LAB_TEST_CONTEXT") or None
HX = {"HX-Request": "true"}

pytestmark = [
    pytest.mark.k8s,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(
        not KUBECONFIG, reason="set GUESTBOOK_LAB_TEST_KUBECONFIG to a kubeconfig to run the lab on a real cluster"
    ),
]


@pytest.fixture(scope="module")
def core() -> Any:
    from kubernetes import client, config

    assert KUBECONFIG
    api_client = config.new_client_from_config(config_file=str(Path(KUBECONFIG).expanduser()), context=CONTEXT)
    return client.CoreV1Api(api_client), client.AppsV1Api(api_client)


@pytest.fixture(scope="module")
def namespace(core: Any) -> Iterator[str]:
    from kubernetes.client.exceptions import ApiException

    v1, _ = core
    name = f"guestbook-lab-test-{secrets.token_hex(3)}"
    try:
        v1.read_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise
    else:
        pytest.fail(f"namespace {name} already exists; this suite only uses a namespace it creates itself")
    body = {"metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "guestbook-lab-test"}}}
    v1.create_namespace(body)
    try:
        yield name
    finally:
        v1.delete_namespace(name)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                v1.read_namespace(name)
            except ApiException as exc:
                if exc.status == 404:
                    break
            time.sleep(1)


def test_the_whole_lab_on_a_real_cluster(core: Any, namespace: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from dashboard.settings import Settings
    from dashboard.web import create_app

    v1, apps = core
    assert KUBECONFIG
    settings = Settings(
        platform="kubernetes",
        kubeconfig=Path(KUBECONFIG).expanduser(),
        context=CONTEXT,
        namespace=namespace,
        frontend_port=0,
        run_dir=tmp_path,
    )
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        lab = client.get("/api/lab").json()
        assert lab["platform"] == "kubernetes"
        for step in ("leader", "followers", "frontend", "expose"):
            response = client.post(f"/api/steps/{step}", headers=HX)
            assert response.status_code == 200, response.text
            assert response.json()["state"] == "done", response.json()

        deployments = {d.metadata.name: d for d in apps.list_namespaced_deployment(namespace).items}
        assert sorted(deployments) == ["frontend", "redis-follower", "redis-leader"]
        assert deployments["redis-leader"].spec.replicas == 1
        assert deployments["redis-follower"].spec.replicas == 2
        assert deployments["frontend"].spec.replicas == 3
        assert deployments["redis-follower"].spec.selector.match_labels == {"app": "redis"}
        assert deployments["frontend"].spec.template.spec.containers[0].image.endswith("gb-frontend:v5")
        for deployment in deployments.values():
            assert deployment.metadata.labels["app.kubernetes.io/managed-by"] == "guestbook-lab"
        services = {s.metadata.name: s for s in v1.list_namespaced_service(namespace).items}
        assert sorted(services) == ["frontend", "redis-follower", "redis-leader"]
        assert services["frontend"].spec.selector == {"app": "guestbook", "tier": "frontend"}

        pods = client.get("/api/pods").json()
        assert sorted(p["component"] for p in pods) == ["frontend"] * 3 + ["redis-follower"] * 2 + ["redis-leader"]
        assert all(p["ready"] for p in pods)
        replication = client.get("/api/replication").json()
        assert replication["leader"] and replication["leader"]["role"] == "master"
        assert [f["link"] for f in replication["followers"]] == ["up", "up"]
        assert client.get("/api/lab").json()["frontend_url"]

        response = client.post("/api/steps/cleanup", headers=HX)
        assert response.status_code == 200 and response.json()["state"] == "done", response.text
        assert apps.list_namespaced_deployment(namespace).items == []
        assert v1.list_namespaced_service(namespace).items == []
        assert [p for p in v1.list_namespaced_pod(namespace).items if p.metadata.deletion_timestamp is None] == []
