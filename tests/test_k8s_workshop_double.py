"""Workshop mode on the Kubernetes API double: the room's watches do not grow with its learners.

What only a double can count exactly: the watch requests the API server sees. A room of 1 learner and a room of
10 learners each open the same two cluster-wide watches (pods by the room's label, events), never one per
learner namespace; each learner's lab still sees its own pods (and only its own) from the shared cache. The
double here (`RoomDouble`, tests/k8s_double/room.py) is the project's API double plus what workshop mode asks of a
real API server that the double does not serve: server-side apply of a Namespace and of the isolation kinds
(ResourceQuota, LimitRange, ServiceAccount, NetworkPolicy, Role, RoleBinding), and cluster-wide list/watch of pods
and events. The objects themselves are checked on the real cluster (tests/test_k8s_workshop.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

from dashboard.platforms import create_platform
from dashboard.platforms.kubernetes.room_watch import ROOM_WATCHES
from dashboard.session import LabRegistry
from tests.k8s_double.room import RoomDouble
from tests.k8s_helpers import settings_for
from tests.polling import until


def watches(double: RoomDouble) -> list[str]:
    with double.lock:
        return [path for _, verb, path in double.requests if verb == "watch"]


async def open_room(double: RoomDouble, tmp_path: Path, room: str, learners: int) -> tuple[LabRegistry, list[str]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    settings = settings_for(double, tmp_path, workshop=True, namespace="guestbook")
    labs = LabRegistry(settings, create_platform)
    ids = [f"{room}-learner{i}" for i in range(learners)]
    for lab_id in ids:
        await labs.open(lab_id, room=room)
    return labs, ids


def test_the_room_opens_the_same_two_watches_for_1_and_for_10_learners(tmp_path: Path) -> None:
    async def main(double: RoomDouble) -> dict[str, Any]:
        counts: dict[str, Any] = {}
        for room, learners in (("wsa001", 1), ("wsb010", 10)):
            before = len(watches(double))
            labs, ids = await open_room(double, tmp_path / room, room, learners)
            try:
                await until(lambda n=before: len(watches(double)) >= n + 2, 10, "the room's two watches")
                await asyncio.sleep(0.5)  # room for any further watch a learner would (wrongly) open
                opened = watches(double)[before:]
                counts[room] = sorted(opened)
                for lab_id in ids:  # each learner's namespace and its isolation, applied server-side
                    assert double.namespaces[lab_id]["metadata"]["labels"]["guestbook-lab/room"] == room
                    assert ("resourcequotas", lab_id, "guestbook-lab") in double.isolation
                    assert ("rolebindings", lab_id, "guestbook-lab-learner") in double.isolation
                # The first learner applies the leader: its pod reaches that learner's lab through the shared watch,
                # with the room's label on top of the tutorial's, and no other learner sees it.
                first = labs.get(ids[0])
                await first.platform.apply("redis-leader-deployment.yaml")
                await until(first.platform.get_pods, 10, "the leader pod on the board")
                pods = double.objects("pods", ids[0])
                assert pods[0]["metadata"]["labels"]["guestbook-lab/room"] == room
                assert pods[0]["metadata"]["labels"]["app"] == "redis"
                for other in ids[1:]:
                    assert await labs.get(other).platform.get_pods() == []
                stats = first.platform.watch_stats()  # type: ignore[attr-defined]
                assert stats["learners"] == learners and stats["watches_open"] == 2
                counts[f"{room}-lists"] = len([1 for _, v, p in double.requests if v == "list" and p == "/api/v1/pods"])
            finally:
                await labs.close_all()
            assert ROOM_WATCHES.count() == 0  # the last learner to leave stopped the room's watches
        return counts

    with RoomDouble() as double:
        counts = asyncio.run(main(double))
    assert counts["wsa001"] == counts["wsb010"] == ["/api/v1/events", "/api/v1/pods"], counts
    assert counts["wsa001-lists"] == 1 and counts["wsb010-lists"] == 2  # one list per room, not per learner
    namespaced = [p for p in watches(double) if "/namespaces/" in p]
    assert namespaced == [], namespaced  # never a watch per learner namespace


def test_the_quota_and_the_room_pre_flight_are_computed_from_the_manifests() -> None:
    from dashboard.platforms.kubernetes.namespace import lab_requests, quota_hard, read_manifests
    from dashboard.platforms.kubernetes.platform import LAB_MANIFESTS
    from dashboard.platforms.kubernetes.preflight import room_fit
    from dashboard.settings import MANIFESTS_DIR

    docs = read_manifests(MANIFESTS_DIR, LAB_MANIFESTS)
    requests = lab_requests(docs)
    assert (requests.pods, requests.cpu_millis, requests.memory_bytes) == (6, 600, 600 * 2**20)
    assert requests.quota_pods == 9 and requests.services == 3  # 25 % surge of 1, 2 and 3 replicas: 1 each
    assert quota_hard(requests, "nodeport")["services"] == "4" and quota_hard(requests, "nodeport")["pods"] == "9"
    doubled = [{**d, "spec": {**d["spec"], "replicas": 6}} if d["metadata"]["name"] == "frontend" else d for d in docs]
    assert lab_requests(doubled).cpu_millis == 900  # computed, not hard-coded
    profile = lab_requests(docs, {"frontend": 1})
    free = {"nodes": 1, "cpu_millis": 2000, "memory_bytes": 8 * 2**30, "pods": 110}
    fits = room_fit(5, profile, free)
    assert fits["fits"] is True and fits["needed"]["requests.cpu"] == "2000m"
    full = room_fit(30, profile, free)
    assert full["fits"] is False and full["most_learners"] == 5
    assert full["message"] == (
        "30 learners do not fit the cluster: too little CPU (12000m needed, 2000m allocatable), memory (12000Mi "
        "needed, 8192Mi allocatable), pods (120 needed, 110 allocatable); at most 5 fit."
    )


def test_an_admission_refusal_reads_as_one_sentence_with_the_fix() -> None:
    from dashboard.platforms.kubernetes.admission import POD_SECURITY, QUOTA, refusal

    def deployment(message: str) -> dict[str, Any]:
        condition = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": message}
        return {"metadata": {"name": "frontend", "namespace": "ws1-ada"}, "status": {"conditions": [condition]}}

    quota = refusal(
        deployment(
            'pods "frontend-7d9-x" is forbidden: exceeded quota: guestbook-lab, requested: pods=1, used: pods=9, '
            "limited: pods=9"
        )
    )
    assert quota is not None and quota.kind == QUOTA
    assert quota.message == (
        "Kubernetes refused to create the pods of deployment frontend: the namespace's ResourceQuota is used up "
        "(exceeded quota: guestbook-lab, requested: pods=1, used: pods=9, limited: pods=9)."
    )
    security = refusal(deployment('pods "x" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot'))
    assert security is not None and security.kind == POD_SECURITY and "'restricted'" in security.message
    assert "pod-security.kubernetes.io/enforce=baseline" in security.hint
    assert refusal({"metadata": {"name": "frontend"}, "status": {"conditions": []}}) is None


def test_the_workshop_cluster_role_grants_what_the_pre_flight_checks() -> None:
    from dashboard.platforms.kubernetes.preflight import ACCESS_NEEDED, WORKSHOP_ACCESS, learner_role_access

    manifest = Path(__file__).resolve().parent.parent / "manifests/dashboard/workshop/clusterrole.yaml"
    rules = yaml.safe_load(manifest.read_text())["rules"]
    granted = {
        (verb, group, resource)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    for verb, group, resource, sub, _ in (*ACCESS_NEEDED, *WORKSHOP_ACCESS, *learner_role_access()):
        assert (verb, group, f"{resource}/{sub}" if sub else resource) in granted, (verb, group, resource, sub)
    assert not any("*" in rule["verbs"] or {"bind", "escalate"} & set(rule["verbs"]) for rule in rules)
