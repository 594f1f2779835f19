"""A workshop learner's namespace on Kubernetes: what it holds, sized from the lab's own manifests, and its removal.

`learner_objects()` builds (pure, no I/O) the Namespace `<room>-<learner>` labelled with the room and Pod Security
labels (`enforce=baseline`: the tutorial's images fail `restricted`, which is only warned about), a ResourceQuota
sized from the six manifests (`lab_requests()`: their pods' requests plus a rolling-update surge), a LimitRange
(the manifests set requests only, so it gives default limits), a default-deny NetworkPolicy that still lets the
lab's pods talk to each other and to DNS, and a ServiceAccount with a Role + RoleBinding limited to what the lab
does. `provision()` server-side applies them (idempotent, with our field manager and label); `remove()` deletes
the namespace only when the dashboard created it for this room.

Design choice: the Role is bound to a ServiceAccount of the learner's namespace (`guestbook-lab-learner`), not
to the dashboard's identity and not to a user. The dashboard acts with its own identity (the ClusterRole of
`manifests/dashboard/workshop/`); the learner's ServiceAccount is what an instructor hands a learner who wants
their own `kubectl` (a token from `kubectl create token -n <ns> guestbook-lab-learner`): it can do exactly the
lab, in that namespace only. The dashboard may grant it because it holds every verb the Role grants (the RBAC
escalation rule), so it needs neither `bind` nor `escalate`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from kubernetes.utils import quantity

from dashboard.errors import PlatformError, PlatformUnavailable
from dashboard.platforms.kubernetes.api import Api, api_path
from dashboard.platforms.kubernetes.objects import LAB_LABEL_KEY, LAB_LABEL_VALUE, RESOURCES, apply_word

JSON = dict[str, Any]
ROOM_LABEL_KEY = "guestbook-lab/room"
LEARNER_ACCOUNT = "guestbook-lab-learner"  # ServiceAccount, Role and RoleBinding of a learner's namespace
ISOLATION_NAME = "guestbook-lab"  # ResourceQuota, LimitRange and NetworkPolicy of a learner's namespace
DEFAULT_SURGE = "25%"  # a Deployment's default rollingUpdate.maxSurge
DEFAULT_LIMITS = {"cpu": "500m", "memory": "256Mi"}  # LimitRange default limits per container
DEFAULT_REQUESTS = {"cpu": "100m", "memory": "100Mi"}  # LimitRange default requests (the manifests' own values)
POD_SECURITY = {"enforce": "baseline", "warn": "restricted", "audit": "restricted"}
parse_quantity: Callable[[str | int | float], Decimal] = quantity.parse_quantity  # the client's, untyped

# What the lab does, and nothing else (the learner's Role; the dashboard's ClusterRole holds all of it too).
LEARNER_RULES: tuple[JSON, ...] = (
    {
        "apiGroups": ["apps"],
        "resources": ["deployments"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get", "patch"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "delete"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["get", "create"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
)


def cpu_millis(quantity: str | int | float) -> int:
    """`100m` -> 100, `1` -> 1000, `0.5` -> 500 (a Kubernetes CPU quantity in millicores); ValueError if it is none."""
    return math.ceil(parse_quantity(quantity) * 1000)


def memory_bytes(quantity: str | int | float) -> int:
    """`100Mi` -> 104857600, `1G` -> 10**9 (a Kubernetes memory quantity in bytes); ValueError if it is none."""
    return math.ceil(parse_quantity(quantity))


def show_memory(value: int) -> str:
    """Bytes as a quantity in Mi (rounded down when not whole): `943718400` -> `900Mi`."""
    return f"{value // 2**20}Mi" if value >= 2**20 else str(value)


def _surge(deployment: JSON, replicas: int) -> int:
    rolling = ((deployment.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    surge = rolling.get("maxSurge", DEFAULT_SURGE)
    if isinstance(surge, str) and surge.endswith("%"):
        return math.ceil(replicas * int(surge[:-1]) / 100)
    return int(surge)


@dataclass(frozen=True)
class LabRequests:
    """What the lab's manifests ask of a cluster: pods and their requests, with and without a rolling-update surge."""

    pods: int
    cpu_millis: int
    memory_bytes: int
    quota_pods: int  # with the pods added while every Deployment rolls at once (maxSurge, 25 % rounded up by default)
    quota_cpu_millis: int
    quota_memory_bytes: int
    services: int

    def to_json(self) -> JSON:
        return {
            "pods": self.pods,
            "requests.cpu": f"{self.cpu_millis}m",
            "requests.memory": show_memory(self.memory_bytes),
            "with_surge": {
                "pods": self.quota_pods,
                "requests.cpu": f"{self.quota_cpu_millis}m",
                "requests.memory": show_memory(self.quota_memory_bytes),
            },
            "services": self.services,
        }


def lab_requests(manifests: list[JSON], replicas: dict[str, int] | None = None) -> LabRequests:
    """Sum the Deployments' replicas × their containers' requests, and each Deployment's surge, from the manifests
    (`replicas` overrides a Deployment's count, e.g. the workshop profile's frontend at 1)."""
    pods = cpu = memory = quota_pods = quota_cpu = quota_memory = services = 0
    for doc in manifests:
        if doc.get("kind") == "Service":
            services += 1
        if doc.get("kind") != "Deployment":
            continue
        spec = doc.get("spec") or {}
        name = str((doc.get("metadata") or {}).get("name") or "")
        count = int((replicas or {}).get(name, spec.get("replicas", 1)))
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
        requests = [(c.get("resources") or {}).get("requests") or {} for c in containers]
        pod_cpu = sum(cpu_millis(r.get("cpu", DEFAULT_REQUESTS["cpu"])) for r in requests)
        pod_memory = sum(memory_bytes(r.get("memory", DEFAULT_REQUESTS["memory"])) for r in requests)
        with_surge = count + _surge(doc, count)
        pods += count
        cpu += count * pod_cpu
        memory += count * pod_memory
        quota_pods += with_surge
        quota_cpu += with_surge * pod_cpu
        quota_memory += with_surge * pod_memory
    return LabRequests(pods, cpu, memory, quota_pods, quota_cpu, quota_memory, services)


def read_manifests(manifests_dir: Path, names: tuple[str, ...]) -> list[JSON]:
    docs: list[JSON] = []
    for name in names:
        docs += [d for d in yaml.safe_load_all((manifests_dir / name).read_text()) if d]
    return docs


def quota_hard(requests: LabRequests, expose_mode: str) -> dict[str, str]:
    """The learner's ResourceQuota `spec.hard`: the lab's pods and requests with the surge; its Services, one more
    when the expose step may publish through node ports (NodePort, LoadBalancer)."""
    node_ports = expose_mode in ("nodeport", "loadbalancer")
    return {
        "pods": str(requests.quota_pods),
        "requests.cpu": f"{requests.quota_cpu_millis}m",
        "requests.memory": show_memory(requests.quota_memory_bytes),
        "services": str(requests.services + (1 if node_ports else 0)),
        "services.nodeports": "1" if node_ports else "0",
        "services.loadbalancers": "1" if expose_mode == "loadbalancer" else "0",
    }


def _meta(name: str, room: str, namespace: str | None = None) -> JSON:
    meta: JSON = {"name": name, "labels": {LAB_LABEL_KEY: LAB_LABEL_VALUE, ROOM_LABEL_KEY: room}}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def learner_objects(namespace: str, room: str, requests: LabRequests, expose_mode: str) -> list[JSON]:
    """Every object of a learner's namespace, in the order they are applied (the Namespace first)."""
    ns_meta = _meta(namespace, room)
    ns_meta["labels"].update({f"pod-security.kubernetes.io/{mode}": level for mode, level in POD_SECURITY.items()})
    lab_pods = {"matchExpressions": [{"key": "app", "operator": "In", "values": ["redis", "guestbook"]}]}
    dashboard = {"app.kubernetes.io/name": "guestbook-lab-dashboard"}
    dns = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    limits = [{"type": "Container", "default": DEFAULT_LIMITS, "defaultRequest": DEFAULT_REQUESTS}]
    rbac = "rbac.authorization.k8s.io"

    def held(api_version: str, kind: str, name: str, **fields: Any) -> JSON:
        return {"apiVersion": api_version, "kind": kind, "metadata": _meta(name, room, namespace), **fields}

    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": ns_meta},
        held("v1", "ResourceQuota", ISOLATION_NAME, spec={"hard": quota_hard(requests, expose_mode)}),
        held("v1", "LimitRange", ISOLATION_NAME, spec={"limits": limits}),
        held(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            ISOLATION_NAME,
            spec={
                "podSelector": {},  # every pod of the namespace: whatever is not allowed below is denied
                "policyTypes": ["Ingress", "Egress"],
                # the lab's pods, and the dashboard in the cluster reaching pods by IP (--redis-access direct)
                "ingress": [
                    {"from": [{"podSelector": lab_pods}]},
                    {"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": dashboard}}]},
                ],
                "egress": [{"to": [{"podSelector": lab_pods}]}, {"ports": dns}],
            },
        ),
        held("v1", "ServiceAccount", LEARNER_ACCOUNT),
        held(f"{rbac}/v1", "Role", LEARNER_ACCOUNT, rules=[dict(rule) for rule in LEARNER_RULES]),
        held(
            f"{rbac}/v1",
            "RoleBinding",
            LEARNER_ACCOUNT,
            roleRef={"apiGroup": rbac, "kind": "Role", "name": LEARNER_ACCOUNT},
            subjects=[{"kind": "ServiceAccount", "name": LEARNER_ACCOUNT, "namespace": namespace}],
        ),
    ]


def is_room_namespace(namespace: JSON, room: str) -> bool:
    """True when the dashboard created this namespace for room `room` (our label and the room's)."""
    labels = (namespace.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(LAB_LABEL_KEY) == LAB_LABEL_VALUE and labels.get(ROOM_LABEL_KEY) == room)


def provision(api: Api, namespace: str, room: str, objects: list[JSON], field_manager: str) -> list[str]:
    """Server-side apply the learner's objects (idempotent); refuses a namespace that exists and is not this room's.

    Returns kubectl-like lines (`namespace/ws-ada created`, `resourcequota/guestbook-lab unchanged`)."""
    path = api_path("Namespace", "", namespace)
    status, found = api.request("GET", path, verb="get", resource="namespaces", ok=(404,))
    if status == 200:
        if not is_room_namespace(found, room):
            raise PlatformError(
                f"Namespace {namespace} already exists and was not created by the dashboard for room {room}.",
                "Delete it (kubectl delete namespace) or have the learner join with another name.",
            )
        if (found.get("status") or {}).get("phase") == "Terminating":
            raise PlatformUnavailable(
                f"Namespace {namespace} is still being deleted.", "Wait until it is gone, then join again."
            )
    lines = []
    for doc in objects:
        kind, name = str(doc["kind"]), str(doc["metadata"]["name"])
        _, plural, shown = RESOURCES[kind]
        path = api_path(kind, "" if kind == "Namespace" else namespace, name)
        before = found if kind == "Namespace" and status == 200 else None
        if kind != "Namespace":
            code, existing = api.request("GET", path, verb="get", resource=plural, name=name, ok=(404,))
            before = existing if code == 200 else None
        _, applied = api.patch(path, doc, resource=plural, name=name, field_manager=field_manager, apply=True)
        lines.append(f"{shown}/{name} {apply_word(before, applied)}")
    return lines


def remove(api: Api, namespace: str, room: str) -> list[str]:
    """Delete the learner's namespace (and so all in it) when the dashboard created it for `room`; else nothing."""
    path = api_path("Namespace", "", namespace)
    status, found = api.request("GET", path, verb="get", resource="namespaces", ok=(404,))
    if status == 404:
        return [f'namespace "{namespace}" is already gone']
    if not is_room_namespace(found, room):
        return [f"namespace {namespace} was not created by the dashboard for room {room}: left as it is"]
    uid = (found.get("metadata") or {}).get("uid")
    options = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
    api.request("DELETE", path, verb="delete", resource="namespaces", name=namespace, body=options, ok=(404, 409))
    return [f'namespace "{namespace}" deleted']
