"""The whole lab against a REAL Kubernetes cluster, through the dashboard's JSON API (`k8s` marker).

Runs only when GUESTBOOK_LAB_TEST_KUBECONFIG names a kubeconfig (its current context, or
GUESTBOOK_LAB_TEST_CONTEXT). It creates its own throwaway namespace `guestbook-lab-test-<random>` (and refuses
one that already exists), checks the pre-flight, clicks the five steps through `POST /api/steps/{id}` (with
`HX-Request: true`, as the page sends), checks what the cluster holds against the tutorial (names, labels,
selectors, images, replicas), that the replication panel shows the real leader and linked followers, that the
guestbook answers at the exposed port-forward (a write read back from a follower), and that cleanup deletes
only the lab's objects (a foreign `app=redis` Service survives). It always deletes the namespace at the end.
It needs a conformant cluster whose pods can pull the tutorial's images (kind, minikube, k3s, a cloud cluster),
and an identity that may create namespaces. The same flow runs in CI against the API double:
`tests/test_lab.py`.

    GUESTBOOK_LAB_TEST_KUBECONFIG=~/.kube/config .venv/bin/python -m pytest -m k8s tests/test_k8s_cluster.py
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest
import yaml

from tests.k8s_helpers import poll

KUBECONFIG = os.environ.get("GUESTBOOK_LAB_TEST_KUBECONFIG")
CONTEXT = os.environ.get("GUESTBOOK_LAB_TEST_CONTEXT") or None
HX = {"HX-Request": "true"}  # the dashboard refuses a state change without it (or a bearer token)
T = TypeVar("T")

pytestmark = [
    pytest.mark.k8s,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(
        not KUBECONFIG, reason="set GUESTBOOK_LAB_TEST_KUBECONFIG to a kubeconfig to run the lab on a real cluster"
    ),
]


def cluster_clients(kubeconfig: str, context: str | None) -> tuple[Any, Any]:
    """CoreV1Api and AppsV1Api for the test's own checks (independent of the dashboard's client)."""
    from kubernetes import client, config

    kube_config: Any = config
    api_client = kube_config.new_client_from_config(config_file=str(Path(kubeconfig).expanduser()), context=context)
    return client.CoreV1Api(api_client), client.AppsV1Api(api_client)


@contextmanager
def throwaway_namespace(v1: Any, timeout: float = 180) -> Iterator[str]:
    """A namespace this suite creates for itself (refusing one that exists) and always deletes, waiting for it."""
    from kubernetes.client.exceptions import ApiException

    name = f"guestbook-lab-test-{secrets.token_hex(3)}"
    try:
        v1.read_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise
    else:
        pytest.fail(f"namespace {name} already exists; this suite only uses a namespace it creates itself")
    body = {"metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "guestbook-lab-test"}}}
    v1.create_namespace(body)  # 409 if it appeared meanwhile: then it is not ours, and nothing deletes it
    try:
        yield name
    finally:
        v1.delete_namespace(name)

        def gone() -> bool:
            try:
                v1.read_namespace(name)
            except ApiException as exc:
                return bool(exc.status == 404)
            return False

        poll(gone, timeout, f"namespace {name} to be deleted", interval=0.5)


def admin_api_client(kubeconfig: str, context: str | None) -> Any:
    """A kubernetes ApiClient with the admin kubeconfig (the test's own, never the dashboard's)."""
    from kubernetes import config

    kube_config: Any = config
    return kube_config.new_client_from_config(config_file=str(Path(kubeconfig).expanduser()), context=context)


TIMES: dict[str, float] = {}  # what took how long on the real cluster, printed for the note (pytest -s shows it)


@contextmanager
def timed(what: str) -> Iterator[None]:
    """Measure `what` and print it (to the captured output; `pytest -s` shows it live)."""
    started = time.monotonic()
    try:
        yield
    finally:
        TIMES[what] = time.monotonic() - started
        print(f"[k8s timing] {what}: {TIMES[what]:.2f} s", file=sys.stderr)


def identity_kubeconfig(
    api_client: Any,
    kubeconfig: str,
    context: str | None,
    namespace: str,
    name: str,
    rules: list[dict[str, Any]],
    path: Path,
) -> Path:
    """A ServiceAccount `name` in `namespace` bound to a Role with exactly `rules`, and a kubeconfig at `path` that
    authenticates as it with a token from the TokenRequest API (10 minutes). Everything lives in `namespace`."""
    from kubernetes import client

    v1 = client.CoreV1Api(api_client)
    rbac = client.RbacAuthorizationV1Api(api_client)
    labels = {"app.kubernetes.io/managed-by": "guestbook-lab-test"}
    v1.create_namespaced_service_account(namespace, {"metadata": {"name": name, "labels": labels}})
    rbac.create_namespaced_role(namespace, {"metadata": {"name": name, "labels": labels}, "rules": rules})
    binding = {
        "metadata": {"name": name, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }
    rbac.create_namespaced_role_binding(namespace, binding)
    request = {"spec": {"audiences": [], "expirationSeconds": 600}}
    token = v1.create_namespaced_service_account_token(name, namespace, request).status.token
    server, ca = cluster_endpoint(kubeconfig, context)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "cluster", "user": name, "namespace": namespace}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def cluster_endpoint(kubeconfig: str, context: str | None) -> tuple[str, str]:
    """(server URL, base64 CA bundle) of the kubeconfig's context, for a kubeconfig of another identity."""
    config = yaml.safe_load(Path(kubeconfig).expanduser().read_text())
    ctx_name = context or config["current-context"]
    ctx = next(c["context"] for c in config["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == ctx["cluster"])
    ca = cluster.get("certificate-authority-data")
    if not ca and cluster.get("certificate-authority"):
        ca = base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
    return str(cluster["server"]), str(ca or "")


def apiserver_counter(api_client: Any, metric: str, **labels: str) -> float:
    """The sum of the API server's `metric` (from GET /metrics, as the admin) over series with these labels."""
    response = api_client.call_api(
        *api_client.param_serialize(
            method="GET",
            resource_path="/metrics",
            header_params={"Accept": "text/plain"},
            auth_settings=["BearerToken"],
        ),
        _request_timeout=(5, 30),
    )
    text = response.read().decode()
    total = 0.0
    pattern = re.compile(rf"^{re.escape(metric)}\{{(?P<labels>[^}}]*)\}} (?P<value>\S+)$")
    for line in text.splitlines():
        match = pattern.match(line)
        if not match:
            continue
        series = dict(re.findall(r'(\w+)="([^"]*)"', match.group("labels")))
        if all(series.get(k) == v for k, v in labels.items()):
            total += float(match.group("value"))
    return total


@pytest.fixture(scope="module")
def core() -> Any:
    assert KUBECONFIG
    return cluster_clients(KUBECONFIG, CONTEXT)


@pytest.fixture(scope="module")
def namespace(core: Any) -> Iterator[str]:
    with throwaway_namespace(core[0]) as name:
        yield name


def test_the_whole_lab_on_a_real_cluster(core: Any, namespace: str, tmp_path: Path) -> None:
    assert KUBECONFIG
    run_whole_lab(core, namespace, Path(KUBECONFIG), CONTEXT, tmp_path)


def run_whole_lab(
    core: Any,
    namespace: str,
    kubeconfig: Path,
    context: str | None,
    tmp_path: Path,
    redis_access: Literal["auto", "direct", "port-forward"] = "auto",
) -> None:
    """The five steps through the JSON API, then what the cluster holds; also run on the API double in CI (with
    port-forward: the double's pod IPs are stand-ins)."""
    import httpx
    from fastapi.testclient import TestClient

    from dashboard.settings import Settings
    from dashboard.web import create_app

    v1, apps = core
    # Someone else's object with the tutorial's labels (no lab label): cleanup must leave it alone.
    foreign = {
        "metadata": {"name": "redis-cache", "labels": {"app": "redis"}},
        "spec": {"ports": [{"port": 6379}]},
    }
    v1.create_namespaced_service(namespace, foreign)
    settings = Settings(
        platform="kubernetes",
        kubeconfig=kubeconfig.expanduser(),
        context=context,
        namespace=namespace,
        redis_access=redis_access,
        frontend_port=0,
        run_dir=tmp_path,
    )
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        lab = client.get("/api/lab").json()
        assert lab["platform"] == "kubernetes"
        preflight = client.get("/api/preflight").json()
        assert preflight["ok"] is True, preflight  # an identity that may run the lab in its own namespace
        assert preflight["server_version"] and preflight["namespace"]["exists"] is True
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
        assert sorted(services) == ["frontend", "redis-cache", "redis-follower", "redis-leader"]
        assert services["frontend"].spec.selector == {"app": "guestbook", "tier": "frontend"}

        pods = client.get("/api/pods").json()
        assert sorted(p["component"] for p in pods) == ["frontend"] * 3 + ["redis-follower"] * 2 + ["redis-leader"]
        assert all(p["ready"] for p in pods)

        def replicated() -> dict[str, Any] | None:
            rep: dict[str, Any] = client.get("/api/replication").json()
            links = [f["link"] for f in rep["followers"]]
            return rep if rep["leader"] and rep["leader"]["role"] == "master" and links == ["up", "up"] else None

        replication = poll(replicated, 60, "the replication panel: the leader and two linked followers", interval=0.5)
        assert replication is not None
        redis_pods = {p["name"] for p in pods if p["component"] != "frontend"}
        assert {replication["leader"]["name"], *(f["name"] for f in replication["followers"])} == redis_pods

        # The guestbook answers at the exposed URL (a port-forward): a write to the leader is read from a follower.
        url = client.get("/api/lab").json()["frontend_url"]
        assert url
        marker = f"hello-{secrets.token_hex(4)}"
        written = httpx.get(f"{url}/guestbook.php", params={"cmd": "set", "key": "messages", "value": marker})
        assert written.status_code == 200, written.text

        def read_back() -> bool:
            answer = httpx.get(f"{url}/guestbook.php", params={"cmd": "get", "key": "messages"}, timeout=10)
            return answer.status_code == 200 and marker in answer.text

        poll(read_back, 60, "the entry read back through the frontend (from a follower)", interval=0.5)
        events = client.get("/api/events").json()
        assert {"Scheduled", "ScalingReplicaSet"} & {e["reason"] for e in events}, events[:5]

        response = client.post("/api/steps/cleanup", headers=HX)
        assert response.status_code == 200 and response.json()["state"] == "done", response.text
        assert apps.list_namespaced_deployment(namespace).items == []
        assert [s.metadata.name for s in v1.list_namespaced_service(namespace).items] == ["redis-cache"]
        assert [p for p in v1.list_namespaced_pod(namespace).items if p.metadata.deletion_timestamp is None] == []
        assert client.get("/api/lab").json()["frontend_url"] is None
