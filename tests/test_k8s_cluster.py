"""The Kubernetes platform on a REAL cluster (`k8s` marker), and the helpers every real-cluster module shares.

Runs only when GUESTBOOK_LAB_TEST_KUBECONFIG names a kubeconfig (its current context, or
GUESTBOOK_LAB_TEST_CONTEXT); skipped with that reason otherwise. Each test creates its own throwaway namespace
`guestbook-lab-test-<random>` (refusing one that already exists) and always deletes it, waiting for it. The tests
here drive `KubernetesPlatform` itself through the real client: server-side apply (created, unchanged,
configured; our label on top of the tutorial's; a foreign object with a lab name refused; the API server's own
409 FieldManagerConflict without force), a missing namespace and `--create-namespace`, a deleted pod replaced,
endpoints, `--expose loadbalancer` left <pending>, real logs and events, and rollout status. The whole lab through
the JSON API runs on the real cluster in the behaviour suite (`tests/test_lab.py`, `tests/test_drills.py`,
parametrised over the local platform and this cluster, `tests/platform_labs.py`). It needs a conformant cluster
whose pods can pull the tutorial's images (the kit, kind, minikube, k3s, a cloud cluster), and an identity that
may create namespaces.

    GUESTBOOK_LAB_TEST_KUBECONFIG=~/.kube/config .venv/bin/python -m pytest -m k8s tests/
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from dashboard.errors import BadRequest, PlatformError, PlatformUnavailable
from dashboard.platforms.kubernetes import LAB_MANIFESTS, KubernetesPlatform
from dashboard.platforms.kubernetes.objects import LAB_LABEL_KEY, LAB_LABEL_VALUE
from dashboard.settings import Settings
from tests.k8s_helpers import poll, run
from tests.polling import until

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


# ------------------------------------------------------------------------- the platform on the real cluster


@pytest.fixture
def namespace() -> Iterator[str]:
    assert KUBECONFIG
    v1, _ = cluster_clients(KUBECONFIG, CONTEXT)
    with throwaway_namespace(v1, timeout=90) as name:
        yield name


@pytest.fixture
def core() -> tuple[Any, Any]:
    assert KUBECONFIG
    return cluster_clients(KUBECONFIG, CONTEXT)


def cluster_settings(namespace: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for the Kubernetes platform on the real cluster, in `namespace` (pod IPs dialled: auto)."""
    assert KUBECONFIG
    values: dict[str, Any] = {
        "platform": "kubernetes",
        "kubeconfig": Path(KUBECONFIG),
        "context": CONTEXT,
        "namespace": namespace,
        "redis_access": "auto",
        "frontend_port": 0,
        "step_timeout": 60,
        "run_dir": tmp_path,
    }
    values.update(overrides)
    return Settings(**values)


async def apply_all(platform: KubernetesPlatform) -> list[str]:
    lines: list[str] = []
    for manifest in LAB_MANIFESTS:
        lines += await platform.apply(manifest)
    return lines


async def ready_pods(platform: KubernetesPlatform, count: int) -> bool:
    pods = await platform.get_pods()
    return len(pods) == count and all(p.ready for p in pods)


def test_apply_creates_then_reapply_is_unchanged(core: Any, namespace: str, tmp_path: Path) -> None:
    _, apps = core
    platform = KubernetesPlatform(cluster_settings(namespace, tmp_path))

    async def body() -> None:
        with pytest.raises(BadRequest):
            await platform.apply("../../etc/passwd")
        with pytest.raises(BadRequest):
            await platform.apply("kustomization.yaml")
        assert await apply_all(platform) == [
            "deployment.apps/redis-leader created",
            "service/redis-leader created",
            "deployment.apps/redis-follower created",
            "service/redis-follower created",
            "deployment.apps/frontend created",
            "service/frontend created",
        ]
        assert all(line.endswith(" unchanged") for line in await apply_all(platform))
        await until(lambda: ready_pods(platform, 6), 60, what="six pods Ready")
        pods = await platform.get_pods()
        assert sorted(p.component for p in pods) == ["frontend"] * 3 + ["redis-follower"] * 2 + ["redis-leader"]
        assert all(p.ready and p.status == "Running" for p in pods)

    run(platform, body)
    deployments = {d.metadata.name: d for d in apps.list_namespaced_deployment(namespace).items}
    frontend = deployments["frontend"]
    assert frontend.metadata.labels == {LAB_LABEL_KEY: LAB_LABEL_VALUE}  # ours on top, nothing else
    assert frontend.spec.template.metadata.labels == {"app": "guestbook", "tier": "frontend"}
    appliers = [m.manager for m in frontend.metadata.managed_fields if m.operation == "Apply"]
    assert appliers == ["guestbook-lab"], frontend.metadata.managed_fields
    assert deployments["redis-leader"].metadata.labels == {
        "app": "redis",
        "role": "leader",
        "tier": "backend",
        LAB_LABEL_KEY: LAB_LABEL_VALUE,
    }


def test_image_override_reapply_is_configured_and_a_third_manager_meets_a_409(
    core: Any, namespace: str, tmp_path: Path
) -> None:
    from kubernetes.client.exceptions import ApiException

    _, apps = core
    first = KubernetesPlatform(cluster_settings(namespace, tmp_path, field_manager="other-tool"))

    async def create() -> None:
        assert await first.apply("redis-leader-deployment.yaml") == ["deployment.apps/redis-leader created"]

    run(first, create)
    # Our label is on it (applied by a dashboard with another field manager): same lab. The platform always
    # forces, so a new image applies; the image does not exist (no registry on the kit), the pod is still made.
    second = KubernetesPlatform(cluster_settings(namespace, tmp_path, leader_image="mirror.example/redis:7"))

    async def override() -> None:
        assert await second.apply("redis-leader-deployment.yaml") == ["deployment.apps/redis-leader configured"]
        await until(lambda: any(p.image == "mirror.example/redis:7" for p in second._pods), 30, what="new image")

    run(second, override)
    leader = apps.read_namespaced_deployment("redis-leader", namespace)
    assert leader.spec.template.spec.containers[0].image == "mirror.example/redis:7"
    # Without force, the API server itself reports the conflict with the managers that own .spec.replicas.
    doc = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "redis-leader"}, "spec": {"replicas": 5}}
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment(
            "redis-leader", namespace, doc, field_manager="third", _content_type="application/apply-patch+yaml"
        )
    assert caught.value.status == 409, caught.value
    assert json.loads(caught.value.body)["details"]["causes"][0]["reason"] == "FieldManagerConflict"
    assert apps.read_namespaced_deployment("redis-leader", namespace).spec.replicas == 1


def test_apply_refuses_a_foreign_object_using_a_lab_name(core: Any, namespace: str, tmp_path: Path) -> None:
    _, apps = core
    labels = {"app": "shop"}
    container = {"name": "shop", "image": "registry.k8s.io/pause:3.10"}
    theirs = {
        "metadata": {"name": "frontend"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }
    apps.create_namespaced_deployment(namespace, theirs, field_manager="kubectl-client-side-apply")
    platform = KubernetesPlatform(cluster_settings(namespace, tmp_path))

    async def body() -> None:
        with pytest.raises(PlatformError) as caught:
            await platform.apply("frontend-deployment.yaml")
        assert caught.value.message.startswith(
            f"deployment.apps/frontend already exists in namespace {namespace} and was not created by this dashboard "
            "(managed by: "
        ), caught.value.message
        assert "kubectl-client-side-apply" in caught.value.message
        assert f"kubectl delete deployment frontend -n {namespace}" in caught.value.hint
        with pytest.raises(PlatformError):
            await platform.scale("frontend", 2)

    run(platform, body)
    frontend = apps.read_namespaced_deployment("frontend", namespace)
    assert frontend.spec.replicas == 1 and frontend.metadata.generation == 1  # never patched, nor scaled
    assert LAB_LABEL_KEY not in (frontend.metadata.labels or {})


def test_namespace_missing_and_create_namespace(core: Any, tmp_path: Path) -> None:
    from kubernetes.client.exceptions import ApiException

    v1, _ = core
    name = f"guestbook-lab-test-{secrets.token_hex(3)}"
    missing = KubernetesPlatform(cluster_settings(name, tmp_path))
    with pytest.raises(PlatformUnavailable) as caught:
        asyncio.run(missing.start())
    assert caught.value.message == f"Namespace {name} does not exist."
    created = KubernetesPlatform(cluster_settings(name, tmp_path, create_namespace=True))

    async def body() -> None:
        assert await created.apply("redis-leader-service.yaml") == ["service/redis-leader created"]

    try:
        run(created, body)
        assert v1.read_namespace(name).metadata.labels[LAB_LABEL_KEY] == LAB_LABEL_VALUE
    finally:
        try:
            v1.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def test_delete_pod_is_replaced_and_only_lab_pods_can_be_deleted(namespace: str, tmp_path: Path) -> None:
    platform = KubernetesPlatform(cluster_settings(namespace, tmp_path))

    async def body() -> None:
        await platform.apply("redis-leader-deployment.yaml")
        await until(lambda: ready_pods(platform, 1), 60, what="the leader")
        (victim,) = [p.name for p in await platform.get_pods()]
        assert await platform.delete_pod(victim) == [f'pod "{victim}" deleted']
        await until(
            lambda: victim not in {p.name for p in platform._pods} and len(platform._pods) == 1, 60, what="replacement"
        )
        with pytest.raises(PlatformError, match="not one of the lab's pods"):
            await platform.delete_pod("kube-apiserver")

    run(platform, body)


def test_endpoints_expose_logs_and_events(core: Any, namespace: str, tmp_path: Path) -> None:
    v1, _ = core
    platform = KubernetesPlatform(cluster_settings(namespace, tmp_path, expose_mode="loadbalancer", step_timeout=2))

    async def body() -> None:
        await apply_all(platform)
        await until(lambda: ready_pods(platform, 6), 60, what="six pods Ready")
        pods = {p.name: p for p in await platform.get_pods()}
        endpoints = await platform.redis_endpoints()
        assert [e.component for e in endpoints] == ["redis-leader", "redis-follower", "redis-follower"]
        assert all(e.port == 6379 and e.host == pods[e.name].ip for e in endpoints), endpoints
        assert len(await platform.frontend_endpoints()) == 3
        url = await platform.expose()  # no load-balancer provider on the kit: <pending>, then a port-forward
        assert url.startswith("http://127.0.0.1:") and platform.frontend_url() == url
        note = str(platform.expose_status()["note"])
        assert "EXTERNAL-IP is still <pending>" in note
        logs = await platform.logs(endpoints[0].name, tail=3)
        assert len(logs) == 3 and all(line.text and line.pod == endpoints[0].name for line in logs), logs

        async def scheduled() -> bool:
            rows = await platform.events()
            return sum(1 for r in rows if r.reason == "Scheduled" and r.involved.startswith("pod/frontend-")) >= 3

        await until(scheduled, 30, what="the scheduler's events for the three frontends")
        rows = await platform.events()
        assert rows[-1].time >= rows[0].time

    run(platform, body)
    assert v1.read_namespaced_service("frontend", namespace).spec.type == "LoadBalancer"


def test_rollout_status_waits_for_the_deployment_then_the_service_endpoints(namespace: str, tmp_path: Path) -> None:
    platform = KubernetesPlatform(cluster_settings(namespace, tmp_path))

    async def status_becomes(expected: str | None) -> None:
        deadline = time.monotonic() + 60
        while (got := await platform.rollout_status("redis-leader", "redis-leader")) != expected:
            assert time.monotonic() < deadline, f"rollout status stayed {got!r}, expected {expected!r}"
            await asyncio.sleep(0.1)

    async def body() -> None:
        await status_becomes('deployment "redis-leader" does not exist')
        await platform.apply("redis-leader-deployment.yaml")
        await status_becomes('service "redis-leader" has no ready endpoints yet')  # rolled out, no Service yet
        await platform.apply("redis-leader-service.yaml")
        await status_becomes(None)

    run(platform, body)
