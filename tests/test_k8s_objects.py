"""Pure derivations of the Kubernetes platform, on REAL API responses recorded from a v1.36 API server.

The fixtures live in `tests/fixtures/k8s/` (see its README). Where the recording has no example (no kubelet
ran: no ImagePullBackOff, no CrashLoopBackOff), a recorded Running pod is edited to the shape a kubelet writes,
and the edit is spelled out.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from dashboard.errors import PlatformError, PlatformUnavailable
from dashboard.platforms.kubernetes import errors
from dashboard.platforms.kubernetes import objects as k

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "k8s"


def load(rel: str) -> Any:
    return json.loads((FIXTURES / rel).read_text())


def items(rel: str) -> list[dict[str, Any]]:
    return list(load(rel)["items"])


# ------------------------------------------------------------------------------------------- pods


def test_pending_pods_without_nodes_are_unschedulable_with_the_schedulers_message() -> None:
    pods = k.lab_pods(
        items("02-get/no-nodes/pods-app-redis.json") + items("02-get/no-nodes/pods-guestbook-frontend.json")
    )
    assert [p.component for p in pods] == [
        "redis-leader",
        "redis-follower",
        "redis-follower",
        "frontend",
        "frontend",
        "frontend",
    ]
    for pod in pods:
        assert (pod.phase, pod.status, pod.ready) == ("Pending", "Pending", False)
        assert pod.reason == "Unschedulable"
        assert pod.message == "no nodes available to schedule pods"
        assert pod.node is None and pod.ip is None and pod.restarts == 0


def test_running_pods_with_nodes() -> None:
    pods = k.lab_pods(items("02-get/with-nodes/pods-app-redis.json"))
    leader = next(p for p in pods if p.component == "redis-leader")
    assert leader.name == "redis-leader-5c85885985-6x4pr"
    assert (leader.phase, leader.status, leader.ready, leader.reason) == ("Running", "Running", True, None)
    assert leader.ip and leader.ip.startswith("10.244.") and leader.node and leader.node.startswith("fake-node-")
    assert leader.image and leader.image.startswith("registry.k8s.io/redis@sha256:")
    assert leader.created_at == pytest.approx(k.parse_time("2026-11-26T04:29:33Z"))


def test_terminating_pods() -> None:
    pods = k.lab_pods(items("07-delete/foreground-list-pods-app-redis-terminating.json"))
    assert pods and all(p.status == "Terminating" and p.deleting for p in pods)
    assert all(p.reason == "Terminating" and p.message == "deletion requested, grace period 30s" for p in pods)


def _running_follower() -> dict[str, Any]:
    pod = next(
        p for p in items("02-get/with-nodes/pods-app-redis.json") if p["metadata"]["labels"]["role"] == "follower"
    )
    return copy.deepcopy(pod)


def _not_ready(pod: dict[str, Any], state: dict[str, Any], **extra: Any) -> dict[str, Any]:
    status = pod["status"]
    status["containerStatuses"][0].update(state=state, ready=False, started=False, **extra)
    for cond in status["conditions"]:
        if cond["type"] in ("Ready", "ContainersReady"):
            cond.update(
                status="False", reason="ContainersNotReady", message="containers with unready status: [follower]"
            )
    return pod


def test_image_pull_backoff_names_the_image() -> None:
    # A kubelet's shape for a missing image: waiting.reason ImagePullBackOff, message 'Back-off pulling image "..."'.
    pod = _running_follower()
    pod["spec"]["containers"][0]["image"] = "gcr.io/google_samples/gb-redisslave:v1"
    _not_ready(
        pod,
        {
            "waiting": {
                "reason": "ImagePullBackOff",
                "message": 'Back-off pulling image "gcr.io/google_samples/gb-redisslave:v1"',
            }
        },
    )
    state = k.pod_state(pod)
    assert (state.status, state.reason, state.ready) == ("ImagePullBackOff", "ImagePullBackOff", False)
    assert state.image == "gcr.io/google_samples/gb-redisslave:v1"
    assert state.message and state.message.startswith("image gcr.io/google_samples/gb-redisslave:v1: Back-off pulling")


def test_crash_loop_backoff_shows_restarts_and_last_exit_code() -> None:
    pod = _not_ready(
        _running_follower(),
        {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container=follower"}},
        restartCount=3,
        lastState={"terminated": {"exitCode": 1, "reason": "Error"}},
    )
    state = k.pod_state(pod)
    assert (state.status, state.reason, state.restarts) == ("CrashLoopBackOff", "CrashLoopBackOff", 3)
    assert state.message == "container follower keeps exiting (last exit code 1, Error)"


def test_running_but_not_ready_uses_the_ready_condition() -> None:
    pod = _not_ready(_running_follower(), {"running": {"startedAt": "2026-11-26T04:39:57Z"}})
    state = k.pod_state(pod)
    assert (state.status, state.ready, state.reason) == ("Running", False, "ContainersNotReady")


def test_completed_container_and_foreign_pods() -> None:
    pod = _running_follower()
    pod["status"]["containerStatuses"][0]["state"] = {"terminated": {"exitCode": 137, "signal": 9}}
    assert k.pod_state(pod).status == "Signal:9"
    foreign = _running_follower()
    foreign["metadata"]["labels"]["role"] = "master"
    assert k.component_for(foreign["metadata"]["labels"]) is None
    with pytest.raises(ValueError):
        k.pod_state(foreign)


def test_is_lab_pod_uses_the_owner_not_only_the_labels() -> None:
    ours = _running_follower()
    assert k.owner_deployment(ours) == "redis-follower" and k.is_lab_pod(ours)
    foreign = copy.deepcopy(ours)  # same labels, but its ReplicaSet belongs to a Deployment "redis-follower-old"
    foreign["metadata"]["ownerReferences"][0]["name"] = "redis-follower-old-bd49c8f9d"
    assert not k.is_lab_pod(foreign)
    bare = copy.deepcopy(ours)
    del bare["metadata"]["ownerReferences"]
    assert not k.is_lab_pod(bare)


def test_watch_stream_objects_all_parse() -> None:
    lines = (FIXTURES / "05-watch/pods-app-redis-scale-and-delete.ndjson").read_text().splitlines()
    states = [k.pod_state(json.loads(line)["object"]) for line in lines]
    assert states[0].status == "Pending" and states[2].status == "Running" and states[3].status == "Terminating"


# ------------------------------------------------------------------------------------ deployments


@pytest.mark.parametrize(
    ("rel", "rolled_out", "deadline"),
    [
        ("03-rollout/deployment-frontend-available.json", True, False),
        ("03-rollout/deployment-frontend-no-nodes-progressing.json", False, False),
        ("03-rollout/deployment-frontend-no-nodes-progress-deadline-exceeded.json", False, True),
        ("03-rollout/deployment-frontend-rolling-update-in-progress.json", False, False),
        ("02-get/with-nodes/deployment-redis-leader.json", True, False),
        ("07-delete/foreground-get-deployment-redis-follower-deleting.json", False, False),
    ],
)
def test_deployment_state(rel: str, rolled_out: bool, deadline: bool) -> None:
    state = k.deployment_state(load(rel))
    assert state.rolled_out is rolled_out
    assert state.deadline_exceeded is deadline
    assert state.name in k.LAB_DEPLOYMENTS
    if rolled_out:
        assert state.message.endswith("successfully rolled out") and state.ready == state.desired


# ----------------------------------------------------------------------------------------- events


def test_event_timeline_from_core_v1_events() -> None:
    rows = k.event_timeline(items("04-events/with-nodes-core-v1.json"))
    assert len(rows) == 27
    assert rows == sorted(rows, key=lambda r: (r.time, r.involved))
    scheduled = [r for r in rows if r.reason == "Scheduled"]
    assert len(scheduled) == 6 and scheduled[0].message.startswith("Successfully assigned guestbook/")
    repeated = [r for r in rows if r.count == 2]
    assert repeated and all(r.reason == "FailedScheduling" and r.type == "Warning" for r in repeated)
    assert {r.involved.split("/")[0] for r in rows} == {"pod", "replicaset", "deployment"}


def test_is_lab_event_ignores_other_objects() -> None:
    event = copy.deepcopy(items("04-events/with-nodes-core-v1.json")[0])
    assert k.is_lab_event(event)
    event["involvedObject"]["name"] = "redis-leader-backup-7df5f6b54d-8fsn5"
    assert not k.is_lab_event(event)
    event["involvedObject"].update(kind="Deployment", name="my-app")
    assert not k.is_lab_event(event)


# ------------------------------------------------------------------------------ manifests, cleanup


def test_prepare_manifest_adds_only_our_label_and_the_image_override() -> None:
    import yaml

    original = yaml.safe_load((FIXTURES / "manifests/frontend-deployment.yaml").read_text())
    doc = k.prepare_manifest(original)
    assert doc["metadata"]["labels"] == {k.LAB_LABEL_KEY: k.LAB_LABEL_VALUE}
    doc["metadata"].pop("labels")
    assert doc == original
    leader = yaml.safe_load((FIXTURES / "manifests/redis-leader-deployment.yaml").read_text())
    over = k.prepare_manifest(leader, image="mirror.example/redis:7")
    assert over["spec"]["template"]["spec"]["containers"][0]["image"] == "mirror.example/redis:7"
    assert over["spec"]["template"]["metadata"]["labels"] == leader["spec"]["template"]["metadata"]["labels"]
    assert over["metadata"]["labels"] == {**leader["metadata"]["labels"], k.LAB_LABEL_KEY: k.LAB_LABEL_VALUE}
    assert "image" in leader["spec"]["template"]["spec"]["containers"][0]  # input untouched
    assert leader["spec"]["template"]["spec"]["containers"][0]["image"].startswith("registry.k8s.io/redis@")


def test_is_ours_by_label_or_field_manager() -> None:
    applied = load("01-apply/first/frontend-deployment.json")  # applied by field manager guestbook-lab, no labels
    assert k.is_ours(applied, "guestbook-lab")
    assert not k.is_ours(applied, "someone-else")
    labelled = copy.deepcopy(applied)
    labelled["metadata"]["labels"] = {k.LAB_LABEL_KEY: k.LAB_LABEL_VALUE}
    assert k.is_ours(labelled, "someone-else")
    error = k.foreign_object_error("Deployment", "frontend", "guestbook", applied)
    assert "deployment.apps/frontend already exists in namespace guestbook" in error.message
    assert "guestbook-lab" in error.message and "-n" in error.hint


def test_cleanup_selects_only_labelled_lab_objects() -> None:
    objects = [
        load(f"01-apply/first/{n}.json") for n in ("redis-leader-deployment", "frontend-deployment", "frontend-service")
    ]
    for obj in objects:  # as the recorded objects were applied without our label, nothing is selected
        assert not any(k.cleanup_selects(t, obj) for t in k.CLEANUP_TARGETS)
    labelled = [k.prepare_manifest(o) for o in objects]
    selected = [[t.kubectl for t in k.CLEANUP_TARGETS if k.cleanup_selects(t, o)] for o in labelled]
    assert selected == [
        ["kubectl delete deployment -l app=redis"],
        ["kubectl delete deployment frontend"],
        ["kubectl delete service frontend"],
    ]
    other = copy.deepcopy(labelled[1])
    other["metadata"]["name"] = "frontend-v2"
    assert not any(k.cleanup_selects(t, other) for t in k.CLEANUP_TARGETS)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app in (redis,guestbook)", {"app": "redis"}, True),
        ("app in (redis,guestbook)", {"app": "web"}, False),
        ("app=redis,role!=leader", {"app": "redis", "role": "follower"}, True),
        ("app=redis,role!=leader", {"app": "redis", "role": "leader"}, False),
        ("tier,!canary", {"tier": "x"}, True),
        ("tier,!canary", {"tier": "x", "canary": "1"}, False),
        ("app notin (redis)", {}, True),
    ],
)
def test_selector_matches(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert k.selector_matches(selector, labels) is expected


# ----------------------------------------------------------------------------------------- errors


def test_403_names_verb_resource_and_namespace() -> None:
    error = errors.translate_status(
        403, load("06-errors/403-learner-create-deployment.json"), verb="create", resource="deployments"
    )
    assert isinstance(error, PlatformError)
    assert error.message == (
        "system:serviceaccount:guestbook:learner may not create deployments.apps in namespace guestbook"
        " (403 Forbidden)."
    )
    assert "'create' on deployments.apps in namespace guestbook" in error.hint
    other = errors.translate_status(403, load("06-errors/403-learner-list-pods-other-namespace.json"))
    assert "may not list pods in namespace default" in other.message
    anonymous = errors.translate_status(403, load("06-errors/403-anonymous-list-pods.json"))
    assert "system:anonymous may not list pods" in anonymous.message


def test_401_404_409_422_504() -> None:
    unauthorized = errors.translate_status(401, load("06-errors/401-bad-token.json"))
    assert isinstance(unauthorized, PlatformUnavailable) and "credentials" in unauthorized.message
    missing_ns = errors.translate_status(
        404, load("10-cluster/namespace-guestbook-after-delete.json"), namespace="guestbook"
    )
    assert missing_ns.message == "Namespace guestbook does not exist."
    assert "--create-namespace" in missing_ns.hint
    missing = errors.translate_status(
        404,
        load("06-errors/404-get-missing-deployment.json"),
        resource="deployment.apps",
        name="redis-master",
        namespace="guestbook",
    )
    assert missing.message == "deployment.apps/redis-master was not found in namespace guestbook."
    unknown = errors.translate_status(404, load("06-errors/404-unknown-resource.json"), resource="deploymentz")
    assert "does not serve deploymentz" in unknown.message
    exists = errors.translate_status(
        409, load("06-errors/409-create-existing-deployment.json"), resource="deployment.apps", name="frontend"
    )
    assert exists.message == "deployment.apps/frontend already exists."
    conflict = errors.translate_status(
        409, load("06-errors/409-apply-conflict-without-force.json"), resource="deployment.apps", name="frontend"
    )
    assert conflict.message.startswith(
        'Another field manager ("guestbook-lab") owns .spec.replicas of deployment.apps/frontend'
    )
    stale = errors.translate_status(
        409, load("06-errors/409-update-stale-resourceversion.json"), name="frontend", resource="deployment.apps"
    )
    assert "changed by someone else" in stale.message
    invalid = errors.translate_status(
        422, load("06-errors/422-apply-bad-label.json"), resource="deployment.apps", name="frontend"
    )
    assert (
        invalid.message
        == "The API server rejected deployment.apps/frontend as invalid (metadata.labels: Invalid value)."
    )
    timeout = errors.translate_status(
        504, load("06-errors/504-list-future-resourceversion.json"), verb="list", resource="pods"
    )
    assert isinstance(timeout, PlatformUnavailable) and "Retry in 1 seconds" in timeout.hint
    for error in (unauthorized, missing_ns, missing, exists, conflict, stale, invalid, timeout):
        assert error.message.endswith(".") and error.hint.endswith(".")
        assert error.message.count(". ") == 0 or "e.g." in error.message


def test_connection_and_kubeconfig_errors() -> None:
    refused = errors.connection_error(
        "https://127.0.0.1:6443",
        "HTTPSConnectionPool(host='127.0.0.1', port=6443): Max retries exceeded (Caused by NewConnectionError("
        "'<urllib3.connection.HTTPSConnection object at 0x7f>: Failed to establish a new connection: "
        "[Errno 111] Connection refused'))",
    )
    assert refused.message == "The API server at https://127.0.0.1:6443 refused the connection."
    unreachable = errors.connection_error(
        "https://10.0.0.1:6443", "Max retries exceeded (Caused by ConnectTimeoutError(... 'timed out'))"
    )
    assert "unreachable (timed out)" in unreachable.message
    assert "--kubeconfig" in errors.kubeconfig_missing(["/root/.kube/config"]).hint
    ctx = errors.unknown_context("prod", ["kind-lab", "minikube"])
    assert ctx.message == "The kubeconfig has no context named 'prod' (available: kind-lab, minikube)."


def test_ready_endpoints_from_recorded_endpointslices() -> None:
    from dashboard.platforms.kubernetes.objects import ready_endpoints

    slices = load("02-get/with-nodes/endpointslices-frontend.json")
    assert sorted(ready_endpoints(slices)) == ["10.244.1.117", "10.244.1.7", "10.244.2.58"]
    slices["items"][0]["endpoints"][0]["conditions"]["ready"] = False
    assert len(ready_endpoints(slices)) == 2
    assert ready_endpoints({"items": []}) == []
