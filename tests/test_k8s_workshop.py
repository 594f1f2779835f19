"""Workshop mode on a REAL Kubernetes cluster (`k8s` marker): learner namespaces and admission, for real.

Runs only when GUESTBOOK_LAB_TEST_KUBECONFIG names a kubeconfig with an identity that may create namespaces. A
dashboard in workshop mode opens a room; learners join through the HTTP API; the test reads what the API server
holds for each: the namespace `<room>-<learner>` with the room's label and Pod Security labels, the ResourceQuota
sized from the manifests, the LimitRange, the NetworkPolicy, the ServiceAccount with its Role and RoleBinding.
One learner runs the lab to done (its pods carry the room's label, so the room's one pods watch sees them). The
real API server's admission refuses the other learner's pods — Pod Security `restricted` enforced, then a quota
made too small — and the step fails at once with one sentence naming the reason and the fix. Reset deletes the
lab's objects and keeps the namespace; remove deletes the namespace the dashboard created and never one it did
not create. Every namespace of the room is deleted at the end, whatever happens.

    bash .ci/run -m k8s tests/test_k8s_workshop.py   # brings the cluster kit up when it sits beside the checkout
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.k8s_cluster import CLUSTER, CONTEXT, KUBECONFIG, admin_api_client, ignore_404, namespace_gone
from tests.k8s_helpers import poll
from tests.test_workshop import INSTRUCTOR, TOKEN, join, row  # the same room API as on the local platform

ROOM_LABEL = "guestbook-lab/room"
FAST = 30.0  # an admission refusal must reach the step well before the 300 s step timeout

pytestmark = [*CLUSTER, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def kube() -> dict[str, Any]:
    from kubernetes import client

    assert KUBECONFIG
    api_client = admin_api_client(KUBECONFIG, CONTEXT)
    return {
        "v1": client.CoreV1Api(api_client),
        "apps": client.AppsV1Api(api_client),
        "net": client.NetworkingV1Api(api_client),
        "rbac": client.RbacAuthorizationV1Api(api_client),
    }


@pytest.fixture
def dashboard(kube: Any, tmp_path: Path) -> Iterator[Any]:
    """A workshop dashboard whose own (instructor's) lab runs in a throwaway namespace; deletes the room's
    namespaces and that one at the end."""
    from fastapi.testclient import TestClient

    from dashboard.settings import Settings
    from dashboard.web import create_app

    assert KUBECONFIG
    v1 = kube["v1"]
    own = f"guestbook-lab-test-ws-{secrets.token_hex(3)}"
    v1.create_namespace({"metadata": {"name": own, "labels": {"app.kubernetes.io/managed-by": "guestbook-lab-test"}}})
    settings = Settings(
        platform="kubernetes",
        kubeconfig=Path(KUBECONFIG).expanduser(),
        context=CONTEXT,
        namespace=own,
        workshop=True,
        token=TOKEN,
        data_dir=tmp_path / "data",
        run_dir=tmp_path / "run",
        frontend_port=0,
        max_learners=4,
        workshop_profile=True,
        step_timeout=120,
    )
    rooms: list[str] = []
    try:
        with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
            client.rooms = rooms
            yield client
    finally:
        names = [own]
        for room in rooms:
            found = v1.list_namespace(label_selector=f"{ROOM_LABEL}={room}").items
            names += [ns.metadata.name for ns in found]
            names += [ns.metadata.name for ns in v1.list_namespace().items if ns.metadata.name.startswith(f"{room}-")]
        for name in sorted(set(names)):
            if not namespace_gone(v1, name):
                v1.delete_collection_namespaced_pod(name, grace_period_seconds=0)  # a bounded teardown
                v1.delete_namespace(name)
        for name in sorted(set(names)):
            poll(lambda n=name: namespace_gone(v1, n), 120, f"namespace {name} to be deleted", interval=0.5)


def open_room(client: Any) -> dict[str, Any]:
    response = client.post("/api/rooms", headers=INSTRUCTOR, json={"title": "k8s"})
    assert response.status_code == 201, response.text
    room: dict[str, Any] = response.json()
    client.rooms.append(room["id"])
    return room


def provisioned(client: Any, room: dict[str, Any], lab: str) -> str:
    def settled() -> str | None:
        state = str(row(client, room, lab)["provisioning"])
        return None if state == "queued" else state

    return poll(settled, 60, f"lab {lab} to be provisioned", interval=0.3)


def run_step(client: Any, headers: dict[str, str], lab: str, step: str) -> dict[str, Any]:
    response = client.post(f"/labs/{lab}/api/steps/{step}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def check_learner_namespace(kube: Any, namespace: str, room: str) -> None:
    """What the API server holds for one learner: labels, quota, limits, network policy, Role and RoleBinding."""
    v1, net, rbac = kube["v1"], kube["net"], kube["rbac"]
    labels = v1.read_namespace(namespace).metadata.labels
    assert labels[ROOM_LABEL] == room and labels["app.kubernetes.io/managed-by"] == "guestbook-lab"
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    quota = v1.read_namespaced_resource_quota("guestbook-lab", namespace)
    # 6 pods at 100m/100Mi, plus each Deployment's 25 % surge (1 + 1 + 1): 9 pods, 900m, 900Mi; 3 Services.
    assert quota.spec.hard == {
        "pods": "9",
        "requests.cpu": "900m",
        "requests.memory": "900Mi",
        "services": "3",
        "services.nodeports": "0",
        "services.loadbalancers": "0",
    }
    assert quota.metadata.labels[ROOM_LABEL] == room
    limits = v1.read_namespaced_limit_range("guestbook-lab", namespace).spec.limits[0]
    assert limits.type == "Container" and limits.default == {"cpu": "500m", "memory": "256Mi"}
    assert limits.default_request == {"cpu": "100m", "memory": "100Mi"}
    policy = net.read_namespaced_network_policy("guestbook-lab", namespace).spec
    assert sorted(policy.policy_types) == ["Egress", "Ingress"] and policy.pod_selector.match_labels is None
    dns = [p for rule in policy.egress for p in rule.ports or []]
    assert sorted((p.protocol, p.port) for p in dns) == [("TCP", 53), ("UDP", 53)]
    lab_peer = policy.egress[0].to[0].pod_selector.match_expressions[0]
    assert (lab_peer.key, lab_peer.operator, sorted(lab_peer.values)) == ("app", "In", ["guestbook", "redis"])
    assert policy.ingress[0]._from[0].pod_selector.match_expressions[0].key == "app"
    v1.read_namespaced_service_account("guestbook-lab-learner", namespace)
    role = rbac.read_namespaced_role("guestbook-lab-learner", namespace)
    granted = {(r.resources[0], verb) for r in role.rules for verb in r.verbs}
    assert {("pods/portforward", "get"), ("pods/portforward", "create"), ("pods/log", "get")} <= granted
    assert {
        ("deployments", "create"),
        ("services", "create"),
        ("events", "watch"),
        ("endpointslices", "list"),
    } <= granted
    assert not any(verb == "*" or "secrets" in r.resources for r in role.rules for verb in r.verbs)
    binding = rbac.read_namespaced_role_binding("guestbook-lab-learner", namespace)
    assert binding.role_ref.kind == "Role" and binding.role_ref.name == "guestbook-lab-learner"
    assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [
        ("ServiceAccount", "guestbook-lab-learner", namespace)
    ]


def test_a_room_on_a_real_cluster(dashboard: Any, kube: Any) -> None:
    client, v1, apps = dashboard, kube["v1"], kube["apps"]
    room = open_room(client)
    ada, ada_h = join(client, room, "Ada")
    bob, bob_h = join(client, room, "Bob")
    assert provisioned(client, room, ada["lab"]) == "ready"
    assert provisioned(client, room, bob["lab"]) == "ready"
    for learner in (ada, bob):
        assert learner["lab"].startswith(f"{room['id']}-")
        check_learner_namespace(kube, learner["lab"], room["id"])

    preflight = client.get("/api/preflight", headers=INSTRUCTOR).json()
    assert preflight["room"]["fits"] is True, preflight["room"]
    assert preflight["room"]["per_learner"]["requests.cpu"] == "400m"  # workshop profile: 4 pods a learner
    assert preflight["room"]["needed"] == {"pods": 16, "requests.cpu": "1600m", "requests.memory": "1600Mi"}
    cluster = [c for c in preflight["checks"] if c.get("scope") == "cluster"]
    assert {"namespaces", "roles.rbac.authorization.k8s.io", "pods/portforward"} <= {c["resource"] for c in cluster}
    assert all(c["allowed"] for c in cluster) and preflight["ok"] is True, preflight["blocked"]

    # Ada runs the lab to done; her pods carry the room's label (the room's one pods watch selects them).
    started = time.monotonic()
    for step in ("leader", "followers", "frontend", "expose"):
        body = run_step(client, ada_h, ada["lab"], step)
        assert body["state"] == "done", body
    lab_seconds = time.monotonic() - started
    pods = [p for p in v1.list_namespaced_pod(ada["lab"]).items if p.metadata.deletion_timestamp is None]
    assert len(pods) == 4 and all(p.metadata.labels[ROOM_LABEL] == room["id"] for p in pods)  # workshop profile
    on_board = {p["name"] for p in client.get(f"/labs/{ada['lab']}/api/pods", headers=ada_h).json()}
    assert {p.metadata.name for p in pods} <= on_board  # read from the room's shared pods watch
    events = client.get(f"/labs/{ada['lab']}/api/events", headers=ada_h).json()
    assert {"Scheduled", "ScalingReplicaSet"} & {e["reason"] for e in events}, events[:5]
    assert not any(e["reason"] == "FailedCreate" for e in events)  # Bob's refusals are not in Ada's timeline
    assert lab_seconds < 90

    # Pod Security `restricted` enforced on Bob's namespace: the upstream images fail it, the step says so at once.
    v1.patch_namespace(bob["lab"], {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    started = time.monotonic()
    body = run_step(client, bob_h, bob["lab"], "leader")
    refused_in = time.monotonic() - started
    assert body["state"] == "failed", body
    assert "violate the namespace's Pod Security level 'restricted'" in body["message"], body
    assert "pod-security.kubernetes.io/enforce=baseline" in body["hint"]
    assert refused_in < FAST, refused_in
    assert row(client, room, bob["lab"])["cells"]["leader"]["state"] == "failed"

    # Back to baseline and a quota too small for the followers: the quota refusal reaches the step in one sentence.
    v1.patch_namespace(bob["lab"], {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}})
    v1.patch_namespaced_resource_quota("guestbook-lab", bob["lab"], {"spec": {"hard": {"pods": "2"}}})
    body = poll(
        lambda: (b := run_step(client, bob_h, bob["lab"], "leader"))["state"] == "done" and b,
        60,
        "Bob's leader once the namespace is baseline again",
        interval=1.0,
    )
    started = time.monotonic()
    body = run_step(client, bob_h, bob["lab"], "followers")
    refused_in = time.monotonic() - started
    assert body["state"] == "failed", body
    assert "ResourceQuota is used up" in body["message"] and "exceeded quota" in body["message"], body
    assert f"kubectl describe resourcequota -n {bob['lab']}" in body["hint"]
    assert refused_in < FAST, refused_in

    # Reset deletes the lab's objects and keeps the learner's namespace and its isolation (and a foreign object).
    v1.create_namespaced_config_map(bob["lab"], {"metadata": {"name": "bobs-notes"}, "data": {"a": "b"}})
    assert client.post(f"/api/rooms/{room['id']}/learners/{bob['lab']}/reset", headers=INSTRUCTOR).status_code == 200
    poll(lambda: not apps.list_namespaced_deployment(bob["lab"]).items, 30, "Bob's Deployments to be deleted")
    assert v1.list_namespaced_service(bob["lab"]).items == []
    assert v1.read_namespaced_config_map("bobs-notes", bob["lab"]).data == {"a": "b"}
    v1.read_namespaced_resource_quota("guestbook-lab", bob["lab"])
    assert not namespace_gone(v1, bob["lab"])

    # Remove deletes the namespace the dashboard created for the room.
    assert client.delete(f"/api/rooms/{room['id']}/learners/{ada['lab']}", headers=INSTRUCTOR).status_code == 200
    poll(lambda: namespace_gone(v1, ada["lab"]), 90, f"namespace {ada['lab']} to be deleted", interval=0.5)
    assert not namespace_gone(v1, bob["lab"])


def test_a_namespace_the_dashboard_did_not_create_is_never_taken_or_deleted(dashboard: Any, kube: Any) -> None:
    client, v1 = dashboard, kube["v1"]
    room = open_room(client)
    foreign = f"{room['id']}-cy"
    v1.create_namespace({"metadata": {"name": foreign, "labels": {"team": "someone-else"}}})
    cy, _ = join(client, room, "Cy")
    assert cy["lab"] == foreign
    state = provisioned(client, room, cy["lab"])
    assert state.startswith(f"failed: Namespace {foreign} already exists and was not created by the dashboard"), state
    labels = v1.read_namespace(foreign).metadata.labels
    assert ROOM_LABEL not in labels and "pod-security.kubernetes.io/enforce" not in labels
    assert v1.list_namespaced_resource_quota(foreign).items == []
    assert client.delete(f"/api/rooms/{room['id']}/learners/{foreign}", headers=INSTRUCTOR).status_code == 200
    time.sleep(1.0)
    assert not namespace_gone(v1, foreign) and v1.read_namespace(foreign).status.phase == "Active"


def test_the_workshop_cluster_role_is_enough_for_the_dashboard(kube: Any, tmp_path: Path) -> None:
    """A ServiceAccount bound to manifests/dashboard/workshop/clusterrole.yaml (renamed for this test) passes the
    workshop pre-flight, provisions a learner's namespace (so it holds every verb the learner's Role grants: the
    RBAC escalation rule), runs the leader in it from the room's shared watch, and removes the namespace."""
    import asyncio

    import yaml

    from dashboard.platforms.kubernetes import KubernetesPlatform
    from dashboard.settings import Settings

    assert KUBECONFIG
    v1, rbac = kube["v1"], kube["rbac"]
    suffix = secrets.token_hex(3)
    home, name = f"guestbook-lab-test-wsrbac-{suffix}", f"guestbook-lab-test-workshop-{suffix}"
    room = f"wsr{suffix[:3]}"
    learner = f"{room}-ada"
    manifests = Path(__file__).resolve().parent.parent / "manifests/dashboard/workshop"
    role = yaml.safe_load((manifests / "clusterrole.yaml").read_text())
    binding = yaml.safe_load((manifests / "clusterrolebinding.yaml").read_text())
    role["metadata"]["name"] = binding["metadata"]["name"] = binding["roleRef"]["name"] = name
    binding["subjects"][0]["namespace"] = home
    v1.create_namespace({"metadata": {"name": home, "labels": {"app.kubernetes.io/managed-by": "guestbook-lab-test"}}})
    try:
        v1.create_namespaced_service_account(home, {"metadata": {"name": "guestbook-lab-dashboard"}})
        rbac.create_cluster_role(role)
        rbac.create_cluster_role_binding(binding)
        token = v1.create_namespaced_service_account_token(
            "guestbook-lab-dashboard", home, {"spec": {"expirationSeconds": 600}}
        ).status.token
        admin = yaml.safe_load(Path(KUBECONFIG).expanduser().read_text())
        context = next(c for c in admin["contexts"] if c["name"] == (CONTEXT or admin["current-context"]))
        cluster = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [cluster],
            "users": [{"name": "dashboard", "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": "dashboard"}}],
            "current-context": "sa",
        }
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(config))
        settings = Settings(
            platform="kubernetes",
            kubeconfig=kubeconfig,
            namespace=learner,
            create_namespace=True,
            workshop=True,
            workshop_profile=True,
            max_learners=2,
            run_dir=tmp_path / "run",
            frontend_port=0,
            step_timeout=60,
        )

        async def main() -> dict[str, Any]:
            platform = KubernetesPlatform(settings)
            lines = await platform.prepare_learner(room)
            await platform.start()
            try:
                report = await platform.preflight()
                await platform.apply("redis-leader-deployment.yaml")
                await platform.apply("redis-leader-service.yaml")
                deadline = time.monotonic() + 60
                while (reason := await platform.rollout_status("redis-leader", "redis-leader")) is not None:
                    assert time.monotonic() < deadline, reason
                    await asyncio.sleep(0.5)
                pods = await platform.get_pods()
                removed = await platform.remove_learner()
            finally:
                await platform.close()
            return {"lines": lines, "report": report, "pods": pods, "removed": removed}

        result = asyncio.run(main())
        assert "role.rbac.authorization.k8s.io/guestbook-lab-learner created" in result["lines"], result["lines"]
        report = result["report"]
        denied = [c for c in report["checks"] if c["allowed"] is not True]
        assert denied == [] and report["room"]["fits"] is True and report["ok"] is True, (denied, report["room"])
        assert [p.component for p in result["pods"]] == ["redis-leader"]
        assert result["removed"] == [f'namespace "{learner}" deleted']
        poll(lambda: namespace_gone(v1, learner), 90, f"namespace {learner} to be deleted", interval=0.5)
    finally:
        for delete in (
            lambda: rbac.delete_cluster_role_binding(name),
            lambda: rbac.delete_cluster_role(name),
            lambda: v1.delete_namespace(learner),
            lambda: v1.delete_namespace(home),
        ):
            ignore_404(delete)
