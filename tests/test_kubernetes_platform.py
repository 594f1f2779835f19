"""The Kubernetes platform through its real client code path (kubeconfig, ApiClient, urllib3, watch streams)
against `tests/k8s_double/`, an HTTP-level double of the API server shaped like the recorded responses.

Each test writes a kubeconfig into tmp_path that points at the double's http://127.0.0.1:PORT, builds its own
Settings and runs its body with `asyncio.run`. Pod IPs are 127.0.0.x and nothing dials them.
"""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dashboard.errors import BadRequest, PlatformError, PlatformUnavailable
from dashboard.platforms.kubernetes import LAB_MANIFESTS, KubernetesPlatform, reflector
from dashboard.platforms.kubernetes.objects import LAB_LABEL_KEY, LAB_LABEL_VALUE
from tests.k8s_double import KubernetesApiDouble
from tests.k8s_helpers import run, settings_for
from tests.polling import until


@pytest.fixture
def double() -> Any:
    with KubernetesApiDouble(pod_grace=0.1) as api:
        yield api


async def apply_all(platform: KubernetesPlatform) -> list[str]:
    lines: list[str] = []
    for manifest in LAB_MANIFESTS:
        lines += await platform.apply(manifest)
    return lines


def test_apply_creates_then_reapply_is_unchanged(double: KubernetesApiDouble, tmp_path: Path) -> None:
    platform = KubernetesPlatform(settings_for(double, tmp_path))

    async def body() -> None:
        assert await apply_all(platform) == [
            "deployment.apps/redis-leader created",
            "service/redis-leader created",
            "deployment.apps/redis-follower created",
            "service/redis-follower created",
            "deployment.apps/frontend created",
            "service/frontend created",
        ]
        assert all(line.endswith(" unchanged") for line in await apply_all(platform))
        pods = await until(lambda: len(platform._pods) == 6 and platform._pods, what="six pods")
        assert [p.component for p in pods] == ["redis-leader"] + ["redis-follower"] * 2 + ["frontend"] * 3
        assert all(p.ready and p.status == "Running" for p in pods)

    run(platform, body)
    applies = [r for r in double.requests if r[1] == "patch"]
    assert len(applies) == 12
    frontend = next(d for d in double.objects("deployments") if d["metadata"]["name"] == "frontend")
    assert frontend["metadata"]["labels"] == {LAB_LABEL_KEY: LAB_LABEL_VALUE}  # ours on top, nothing else
    assert frontend["spec"]["template"]["metadata"]["labels"] == {"app": "guestbook", "tier": "frontend"}
    assert frontend["metadata"]["managedFields"][0]["manager"] == "guestbook-lab"
    leader = next(d for d in double.objects("deployments") if d["metadata"]["name"] == "redis-leader")
    assert leader["metadata"]["labels"] == {
        "app": "redis",
        "role": "leader",
        "tier": "backend",
        LAB_LABEL_KEY: LAB_LABEL_VALUE,
    }


def test_image_override_reapply_is_configured(double: KubernetesApiDouble, tmp_path: Path) -> None:
    first = KubernetesPlatform(settings_for(double, tmp_path))

    async def create() -> None:
        assert await first.apply("redis-leader-deployment.yaml") == ["deployment.apps/redis-leader created"]

    run(first, create)
    second = KubernetesPlatform(settings_for(double, tmp_path, leader_image="mirror.example/redis:7"))

    async def override() -> None:
        assert await second.apply("redis-leader-deployment.yaml") == ["deployment.apps/redis-leader configured"]
        await until(lambda: any(p.image == "mirror.example/redis:7" for p in second._pods), what="new image")

    run(second, override)
    (leader,) = double.objects("deployments")
    assert leader["spec"]["template"]["spec"]["containers"][0]["image"] == "mirror.example/redis:7"


def test_unknown_manifest_is_refused(double: KubernetesApiDouble, tmp_path: Path) -> None:
    platform = KubernetesPlatform(settings_for(double, tmp_path))

    async def body() -> None:
        with pytest.raises(BadRequest):
            await platform.apply("../../etc/passwd")
        with pytest.raises(BadRequest):
            await platform.apply("kustomization.yaml")

    run(platform, body)


def test_watch_relists_after_410_gone_and_listeners_hear_every_change(
    double: KubernetesApiDouble, tmp_path: Path
) -> None:
    platform = KubernetesPlatform(settings_for(double, tmp_path))
    calls: list[float] = []
    platform.add_listener(lambda: calls.append(time.monotonic()))

    async def body() -> None:
        await platform.apply("redis-leader-deployment.yaml")
        await platform.apply("redis-follower-deployment.yaml")
        await until(lambda: len(platform._pods) == 3, what="three redis pods")
        assert platform.watch_stats()["lists"] == 1
        heard = len(calls)
        assert heard >= 1
        double.expire_watches()  # every open watch gets the recorded 410 Gone ERROR event
        await until(lambda: platform.watch_stats()["lists"] == 2, what="relist after 410")
        await platform.scale("redis-follower", 3)
        await until(lambda: len(platform._pods) == 4, what="the third follower, seen through the new watch")
        assert len(calls) > heard
        assert platform.watch_stats()["error"] is None

    run(platform, body)
    assert double.count("list", "pods") == 2


def test_watch_resumes_from_resource_version_without_relisting(
    double: KubernetesApiDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reflector, "WATCH_TIMEOUT_SECONDS", 1)  # the server ends each watch after 1 s
    platform = KubernetesPlatform(settings_for(double, tmp_path))

    async def body() -> None:
        await until(lambda: int(str(platform.watch_stats()["watches"])) >= 3, timeout=8, what="three watches")
        await platform.apply("redis-leader-deployment.yaml")
        await until(lambda: len(platform._pods) == 1, what="leader pod")
        assert platform.watch_stats()["lists"] == 1

    run(platform, body)
    assert double.count("list", "pods") == 1


def test_cleanup_deletes_only_the_labelled_lab_objects(double: KubernetesApiDouble, tmp_path: Path) -> None:
    # Someone else's objects with the tutorial's labels: an old `redis-master` Deployment (and its pod),
    # a Service `redis-cache` with app=redis, and a bare pod with app=guestbook. None carries our label.
    foreign = {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {"name": "redis-master", "labels": {"app": "redis"}, "managedFields": [{"manager": "kubectl"}]},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "redis"}}},
    }
    double.put(foreign)
    double.put({"kind": "Service", "apiVersion": "v1", "metadata": {"name": "redis-cache", "labels": {"app": "redis"}}})
    double.put(
        {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": "redis-master-6f8d9c7b5-abcde",
                "labels": {"app": "redis", "role": "master", "pod-template-hash": "6f8d9c7b5"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "redis-master-6f8d9c7b5", "controller": True}],
            },
            "status": {"phase": "Running"},
        }
    )
    double.put({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "debug", "labels": {"app": "guestbook"}}})
    platform = KubernetesPlatform(settings_for(double, tmp_path))

    async def body() -> None:
        await apply_all(platform)
        await until(lambda: len(platform._pods) == 6, what="six lab pods")
        assert all(p.name not in ("debug", "redis-master-6f8d9c7b5-abcde") for p in platform._pods)
        lines = await platform.delete_lab()
        assert sorted(lines) == sorted(
            [
                'deployment.apps "redis-leader" deleted',
                'deployment.apps "redis-follower" deleted',
                'service "redis-leader" deleted',
                'service "redis-follower" deleted',
                'deployment.apps "frontend" deleted',
                'service "frontend" deleted',
            ]
        )
        assert await platform.get_pods() == []  # delete_lab waited for the pods to go
        assert await platform.leftovers() == []
        assert await platform.delete_lab() == ["No resources found in guestbook namespace."]

    run(platform, body)
    assert [d["metadata"]["name"] for d in double.objects("deployments")] == ["redis-master"]
    assert [s["metadata"]["name"] for s in double.objects("services")] == ["redis-cache"]
    assert sorted(p["metadata"]["name"] for p in double.objects("pods")) == ["debug", "redis-master-6f8d9c7b5-abcde"]
    assert double.count("deletecollection") == 0  # one DELETE per selected object, with a uid precondition


def test_apply_refuses_a_foreign_object_using_a_lab_name(double: KubernetesApiDouble, tmp_path: Path) -> None:
    theirs = {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {
            "name": "frontend",
            "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update"}],
        },
        "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "shop"}}, "spec": {"containers": []}}},
    }
    double.put(theirs)
    platform = KubernetesPlatform(settings_for(double, tmp_path))

    async def body() -> None:
        with pytest.raises(PlatformError) as caught:
            await platform.apply("frontend-deployment.yaml")
        assert caught.value.message == (
            "deployment.apps/frontend already exists in namespace guestbook and was not created by this dashboard "
            "(managed by: kubectl-client-side-apply)."
        )
        assert "kubectl delete deployment frontend -n guestbook" in caught.value.hint
        with pytest.raises(PlatformError):
            await platform.scale("frontend", 2)

    run(platform, body)
    (frontend,) = double.objects("deployments")
    assert frontend["spec"]["replicas"] == 1 and "labels" not in frontend["metadata"]
    assert double.count("patch") == 0


def test_apply_conflict_409_is_translated(double: KubernetesApiDouble, tmp_path: Path) -> None:
    first = KubernetesPlatform(settings_for(double, tmp_path, field_manager="other-tool"))

    async def create() -> None:
        await first.apply("redis-leader-deployment.yaml")

    run(first, create)

    # Our label is on it (applied by a dashboard with another field manager): same lab. Without force,
    # the API server reports the FieldManagerConflict; the platform always forces, so it applies.
    second = KubernetesPlatform(settings_for(double, tmp_path, leader_image="mirror.example/redis:7"))

    async def force() -> None:
        assert await second.apply("redis-leader-deployment.yaml") == ["deployment.apps/redis-leader configured"]

    run(second, force)
    status, body = asyncio.run(_raw_apply_without_force(double, tmp_path))
    assert status == 409 and body["details"]["causes"][0]["reason"] == "FieldManagerConflict"


async def _raw_apply_without_force(double: KubernetesApiDouble, tmp_path: Path) -> tuple[int, Any]:
    import json
    import urllib.request

    request = urllib.request.Request(
        f"{double.url}/apis/apps/v1/namespaces/guestbook/deployments/redis-leader?fieldManager=third",
        data=json.dumps(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "redis-leader"},
                "spec": {"replicas": 5},
            }
        ).encode(),
        method="PATCH",
        headers={"Content-Type": "application/apply-patch+yaml", "Authorization": f"Bearer {double.token}"},
    )
    try:
        urllib.request.urlopen(request)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    return 200, None


def test_403_names_verb_resource_and_namespace(double: KubernetesApiDouble, tmp_path: Path) -> None:
    double.forbid("patch", "deployments")
    platform = KubernetesPlatform(settings_for(double, tmp_path))

    async def body() -> None:
        with pytest.raises(PlatformError) as caught:
            await platform.apply("redis-leader-deployment.yaml")
        assert caught.value.message == (
            "system:serviceaccount:guestbook:learner may not patch deployments.apps in namespace guestbook"
            " (403 Forbidden)."
        )
        assert "manifests/dashboard/role.yaml" in caught.value.hint

    run(platform, body)


def test_403_on_the_pod_watch_fails_start_with_the_verb(double: KubernetesApiDouble, tmp_path: Path) -> None:
    double.forbid("list", "pods")
    platform = KubernetesPlatform(settings_for(double, tmp_path))
    with pytest.raises(PlatformError, match="may not list pods in namespace guestbook"):
        asyncio.run(platform.start())


def test_preflight_reports_access_reviews_and_blocked_steps(double: KubernetesApiDouble, tmp_path: Path) -> None:
    double.forbid("create", "pods/portforward")
    double.forbid("delete", "services")
    platform = KubernetesPlatform(settings_for(double, tmp_path, redis_access="auto"))
    report: dict[str, Any] = asyncio.run(platform.preflight())
    assert report["context"] == "double" and report["server_version"] == "v1.36.2"
    assert report["namespace"] == {"name": "guestbook", "exists": True, "phase": "Active", "will_create": False}
    assert report["redis_access"] == "auto"  # outside a cluster, decided at the first ready Redis pod
    assert "TCP connect to its pod IP" in report["redis_access_reason"]
    denied = [(c["verb"], c["resource"]) for c in report["checks"] if c["allowed"] is False]
    assert denied == [("create", "pods/portforward"), ("delete", "services")]
    assert "cleanup" in report["blocked"] and "expose" in report["blocked"]
    assert report["ok"] is False


def test_namespace_missing_and_create_namespace(double: KubernetesApiDouble, tmp_path: Path) -> None:
    missing = KubernetesPlatform(settings_for(double, tmp_path, namespace="lab-42"))
    with pytest.raises(PlatformUnavailable) as caught:
        asyncio.run(missing.start())
    assert caught.value.message == "Namespace lab-42 does not exist."
    created = KubernetesPlatform(settings_for(double, tmp_path, namespace="lab-42", create_namespace=True))

    async def body() -> None:
        assert await created.apply("redis-leader-service.yaml") == ["service/redis-leader created"]

    run(created, body)
    assert double.namespaces["lab-42"]["metadata"]["labels"][LAB_LABEL_KEY] == LAB_LABEL_VALUE


def test_configuration_errors(double: KubernetesApiDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    nowhere = KubernetesPlatform(settings_for(double, tmp_path, kubeconfig=tmp_path / "absent"))
    with pytest.raises(PlatformUnavailable, match="No kubeconfig was found"):
        asyncio.run(nowhere.start())
    context = KubernetesPlatform(settings_for(double, tmp_path, context="prod"))
    with pytest.raises(PlatformUnavailable, match=r"no context named 'prod' \(available: double\)"):
        asyncio.run(context.start())
    bad_token = tmp_path / "bad"
    double.write_kubeconfig(bad_token, token="wrong")
    with pytest.raises(PlatformUnavailable, match="rejected the credentials"):
        asyncio.run(KubernetesPlatform(settings_for(double, tmp_path, kubeconfig=bad_token)).start())
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = tmp_path / "closed"
    closed.write_text(bad_token.read_text().replace(double.url, f"http://127.0.0.1:{port}"))
    with pytest.raises(PlatformUnavailable, match=f"The API server at http://127.0.0.1:{port} refused the connection"):
        asyncio.run(KubernetesPlatform(settings_for(double, tmp_path, kubeconfig=closed)).start())


def test_delete_pod_is_replaced_and_only_lab_pods_can_be_deleted(double: KubernetesApiDouble, tmp_path: Path) -> None:
    platform = KubernetesPlatform(settings_for(double, tmp_path))

    async def body() -> None:
        await platform.apply("redis-follower-deployment.yaml")
        pods = await until(lambda: len(platform._pods) == 2 and platform._pods, what="two followers")
        victim = pods[0].name
        assert await platform.delete_pod(victim) == [f'pod "{victim}" deleted']
        await until(
            lambda: victim not in {p.name for p in platform._pods} and len(platform._pods) == 2, what="replacement"
        )
        with pytest.raises(PlatformError, match="not one of the lab's pods"):
            await platform.delete_pod("kube-apiserver")

    run(platform, body)


def test_endpoints_expose_logs_and_events(double: KubernetesApiDouble, tmp_path: Path) -> None:
    platform = KubernetesPlatform(settings_for(double, tmp_path, expose_mode="loadbalancer", step_timeout=1))

    async def body() -> None:
        await apply_all(platform)
        await until(lambda: len(platform._pods) == 6, what="six pods")
        endpoints = await platform.redis_endpoints()
        assert [e.component for e in endpoints] == ["redis-leader", "redis-follower", "redis-follower"]
        assert all(e.host.startswith("127.0.0.") and e.port == 6379 for e in endpoints)
        assert len(await platform.frontend_endpoints()) == 3
        url = await platform.expose()  # no load-balancer provider: <pending>, then a port-forward
        assert url.startswith("http://127.0.0.1:") and platform.frontend_url() == url
        note = str(platform.expose_status()["note"])
        assert "EXTERNAL-IP is still <pending>" in note
        (service,) = [s for s in double.objects("services") if s["metadata"]["name"] == "frontend"]
        assert service["spec"]["type"] == "LoadBalancer"
        logs = await platform.logs(endpoints[0].name, tail=3)
        assert [line.text for line in logs] == [f"line {i} of {endpoints[0].name}" for i in range(3)]
        rows = await platform.events()
        # the 27 recorded events, then what the double's scheduler and deployment controller recorded: 6 + 3
        assert len(rows) == 27 + 9 and rows[-1].time >= rows[0].time
        assert sum(1 for r in rows if r.reason == "Scheduled" and r.involved.startswith("pod/frontend-")) >= 3

    run(platform, body)


def test_nodeport_expose_uses_a_node_address(double: KubernetesApiDouble, tmp_path: Path) -> None:
    """The node address + nodePort, once it answers (here a server on the double's node port plays kube-proxy)."""
    platform = KubernetesPlatform(settings_for(double, tmp_path, expose_mode="nodeport"))
    try:
        node_port = http.server.ThreadingHTTPServer(("127.0.0.1", 30303), http.server.BaseHTTPRequestHandler)
    except OSError:
        pytest.skip("127.0.0.1:30303 (the double's nodePort) is in use")
    threading.Thread(target=node_port.serve_forever, daemon=True).start()

    async def body() -> None:
        await platform.apply("frontend-service.yaml")
        assert await platform.expose() == "http://127.0.0.1:30303"
        assert platform.expose_note() == "Service frontend is type NodePort: port 30303 on every node."

    try:
        run(platform, body)
    finally:
        node_port.shutdown()
        node_port.server_close()


def test_many_viewers_cost_no_requests(double: KubernetesApiDouble, tmp_path: Path) -> None:
    platform = KubernetesPlatform(settings_for(double, tmp_path))

    async def body() -> None:
        await apply_all(platform)
        await until(lambda: len(platform._pods) == 6, what="six pods")
        before = len(double.requests)
        for _ in range(3):
            await asyncio.gather(
                *(platform.get_pods() for _ in range(50)), *(platform.redis_endpoints() for _ in range(50))
            )
        assert len(double.requests) == before

    run(platform, body)


def test_rollout_status_waits_for_the_deployment_then_the_service_endpoints(
    double: KubernetesApiDouble, tmp_path: Path
) -> None:
    platform = KubernetesPlatform(settings_for(double, tmp_path))

    async def status_becomes(expected: str | None) -> None:
        deadline = time.monotonic() + 5
        while (got := await platform.rollout_status("redis-leader", "redis-leader")) != expected:
            assert time.monotonic() < deadline, f"rollout status stayed {got!r}, expected {expected!r}"
            await asyncio.sleep(0.02)

    async def body() -> None:
        await status_becomes('deployment "redis-leader" does not exist')
        await platform.apply("redis-leader-deployment.yaml")
        await status_becomes('service "redis-leader" has no ready endpoints yet')  # rolled out, no Service yet
        await platform.apply("redis-leader-service.yaml")
        await status_becomes(None)

    run(platform, body)
