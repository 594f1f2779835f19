"""The Kubernetes platform on a REAL cluster (`k8s` marker; the shared setup is `tests/k8s_cluster.py`).

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
import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from dashboard.errors import BadRequest, PlatformError, PlatformUnavailable
from dashboard.platforms.kubernetes import KubernetesPlatform
from dashboard.platforms.kubernetes.objects import LAB_LABEL_KEY, LAB_LABEL_VALUE
from tests.k8s_cluster import CLUSTER, CONTEXT, KUBECONFIG, cluster_clients, cluster_settings, ignore_404, ready_pods
from tests.k8s_helpers import apply_all, run
from tests.polling import until

pytestmark = [*CLUSTER, pytest.mark.timeout(1200)]


@pytest.fixture
def core() -> tuple[Any, Any]:
    assert KUBECONFIG
    return cluster_clients(KUBECONFIG, CONTEXT)


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
        ignore_404(lambda: v1.delete_namespace(name))


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
