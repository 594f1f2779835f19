"""The Kubernetes pre-flight: can the lab run here, with this identity, in this namespace?

Context, API server and its version, the namespace, and for each verb the lab needs the SelfSubjectAccessReview
answer and what a "no" would block. Only asked when a user asks for it (the /preflight page, GET /api/preflight).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from dashboard.errors import DashboardError
from dashboard.models import RedisAccess
from dashboard.platforms.kubernetes.api import Api, api_path
from dashboard.platforms.kubernetes.namespace import LEARNER_RULES, LabRequests, cpu_millis, memory_bytes, show_memory

# What the lab needs, for the pre-flight: (verb, group, resource, subresource, what it is needed for).
ACCESS_NEEDED: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("get", "apps", "deployments", "", ("leader", "followers", "frontend")),
    ("create", "apps", "deployments", "", ("leader", "followers", "frontend")),
    ("patch", "apps", "deployments", "", ("leader", "followers", "frontend")),
    ("get", "", "services", "", ("leader", "followers", "frontend", "expose")),
    ("create", "", "services", "", ("leader", "followers", "frontend")),
    ("patch", "", "services", "", ("leader", "followers", "frontend", "expose")),
    ("list", "", "pods", "", ("pods board", "every step's check")),
    ("watch", "", "pods", "", ("pods board", "every step's check")),
    # A websocket port-forward is a GET upgrade: `get` on pods/portforward, plus `create` since Kubernetes 1.35
    # (AuthorizePodWebsocketUpgradeCreatePermission); SPDY clients such as kubectl need `create`.
    ("get", "", "pods", "portforward", ("replication panel (port-forward)", "frontend check", "expose")),
    ("create", "", "pods", "portforward", ("replication panel (port-forward)", "frontend check", "expose")),
    ("get", "", "pods", "log", ("pod logs",)),
    ("patch", "apps", "deployments", "scale", ("scale (optional)",)),
    ("delete", "", "pods", "", ("delete a pod (failure drill)",)),
    ("list", "apps", "deployments", "", ("cleanup",)),
    ("delete", "apps", "deployments", "", ("cleanup",)),
    ("list", "", "services", "", ("cleanup",)),
    ("delete", "", "services", "", ("cleanup",)),
    ("list", "discovery.k8s.io", "endpointslices", "", ("leader", "followers", "frontend")),
    ("list", "", "events", "", ("events timeline",)),
    ("watch", "", "events", "", ("events timeline",)),
)


async def preflight(
    load_api: Callable[[], Api], *, create_namespace: bool, redis_access: Callable[[], Awaitable[RedisAccess]]
) -> dict[str, Any]:
    """The report of `KubernetesPlatform.preflight` (JSON of GET /api/preflight); `load_api` may raise the
    kubeconfig's error, which the report then carries. `redis_access()` (asked once the API is loaded) says how
    pods are reached: `redis_access` is "direct", "port-forward" or "auto" (not decided yet), with its reason."""
    try:
        api = await asyncio.to_thread(load_api)
    except DashboardError as exc:
        return _report({"ok": False, "error": exc.to_json(), "checks": []})
    namespace = api.namespace
    result: dict[str, Any] = {
        "context": api.cluster.context,
        "server": api.cluster.server,
        "in_cluster": api.cluster.in_cluster,
        "config": api.cluster.source,
        "namespace": {"name": namespace},
    }
    access = await redis_access()
    result["redis_access"] = access.using or "auto"
    result["redis_access_reason"] = access.reason
    try:
        _, version = await asyncio.to_thread(api.request, "GET", "/version", verb="get", resource="version")
        result["server_version"] = version.get("gitVersion")
    except DashboardError as exc:
        return _report({**result, "ok": False, "error": exc.to_json(), "checks": []})
    status, found = await asyncio.to_thread(
        api.request, "GET", api_path("Namespace", "", namespace), verb="get", resource="namespaces", ok=(403, 404)
    )
    result["namespace"] = {
        "name": namespace,
        "exists": {200: True, 404: False}.get(status),
        "phase": (found.get("status") or {}).get("phase") if status == 200 else None,
        "will_create": status == 404 and create_namespace,
    }
    checks = await asyncio.gather(*(asyncio.to_thread(access_review, api, *need) for need in ACCESS_NEEDED))
    result["checks"] = checks
    report = _report(result)
    report["ok"] = not report["blocked"] and (status != 404 or create_namespace)
    return report


def _report(result: dict[str, Any]) -> dict[str, Any]:
    """Each check gets `blocks` (what its denial blocks), the report `blocked` (their union) and `platform`."""
    checks = [
        {**check, "blocks": list(check["needed_for"]) if check.get("allowed") is False else []}
        for check in result.get("checks") or []
    ]
    blocked = sorted({step for check in checks for step in check["blocks"]})
    return {**result, "checks": checks, "blocked": blocked, "platform": "kubernetes"}


def access_review(
    api: Api,
    verb: str,
    group: str,
    resource: str,
    subresource: str,
    needed_for: tuple[str, ...],
    namespace: str | None = None,
) -> dict[str, object]:
    """`kubectl auth can-i <verb> <resource>` as a SelfSubjectAccessReview; allowed None when it cannot be asked.
    `namespace=""` asks about every namespace (`--all-namespaces`)."""
    scope = api.namespace if namespace is None else namespace
    attributes = {"namespace": scope, "verb": verb, "group": group, "resource": resource}
    if subresource:
        attributes["subresource"] = subresource
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes},
    }
    shown = f"{resource}/{subresource}" if subresource else resource
    shown = f"{shown}.{group}" if group else shown
    check: dict[str, object] = {"verb": verb, "resource": shown, "needed_for": list(needed_for)}
    try:
        _, body = api.request(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            verb="create",
            resource="selfsubjectaccessreviews",
            body=review,
        )
    except DashboardError as exc:
        return {**check, "allowed": None, "reason": exc.message}
    status = body.get("status") or {}
    return {**check, "allowed": bool(status.get("allowed")), "reason": status.get("reason") or ""}


# Workshop mode: what the dashboard's ClusterRole (manifests/dashboard/workshop/) must allow, cluster-wide.
WORKSHOP_ACCESS: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    *((verb, "", "namespaces", "", ("learner namespaces",)) for verb in ("get", "create", "patch", "delete")),
    *(
        (verb, group, resource, "", ("learner namespaces",))
        for group, resource in (
            ("", "resourcequotas"),
            ("", "limitranges"),
            ("", "serviceaccounts"),
            ("networking.k8s.io", "networkpolicies"),
            ("rbac.authorization.k8s.io", "roles"),
            ("rbac.authorization.k8s.io", "rolebindings"),
        )
        for verb in ("get", "create", "patch")
    ),
    ("list", "", "pods", "", ("the room's pods watch",)),
    ("watch", "", "pods", "", ("the room's pods watch",)),
    ("list", "", "events", "", ("the room's events watch",)),
    ("watch", "", "events", "", ("the room's events watch",)),
    ("list", "", "nodes", "", ("room pre-flight (allocatable)",)),
)


def learner_role_access() -> list[tuple[str, str, str, str, tuple[str, ...]]]:
    """Every verb the learner's Role grants: the dashboard must hold each one (the RBAC escalation rule)."""
    return [
        (verb, group, resource, sub, ("learner Role (grant what it holds)",))
        for rule in LEARNER_RULES
        for group in rule["apiGroups"]
        for resource, _, sub in (full.partition("/") for full in rule["resources"])
        for verb in rule["verbs"]
    ]


def allocatable(nodes: dict[str, Any]) -> dict[str, int]:
    """The sum of the schedulable nodes' allocatable CPU (millicores), memory (bytes) and pods."""
    total = {"nodes": 0, "cpu_millis": 0, "memory_bytes": 0, "pods": 0}
    for node in nodes.get("items") or []:
        if (node.get("spec") or {}).get("unschedulable"):
            continue
        conditions = {c.get("type"): c.get("status") for c in (node.get("status") or {}).get("conditions") or []}
        if conditions.get("Ready") != "True":
            continue
        free = (node.get("status") or {}).get("allocatable") or {}
        total["nodes"] += 1
        total["cpu_millis"] += cpu_millis(free.get("cpu", "0"))
        total["memory_bytes"] += memory_bytes(free.get("memory", "0"))
        total["pods"] += int(free.get("pods", 0))
    return total


def room_fit(learners: int, requests: LabRequests, free: dict[str, int]) -> dict[str, Any]:
    """N learners × the lab's requests against the cluster's allocatable: does the room fit, and if not, why."""
    keys = ("cpu_millis", "memory_bytes", "pods")
    need = {key: learners * getattr(requests, key) for key in keys}
    short = [
        f"{what} ({shown(need[key])} needed, {shown(free[key])} allocatable)"
        for key, what, shown in (
            ("cpu_millis", "CPU", lambda v: f"{v}m"),
            ("memory_bytes", "memory", show_memory),
            ("pods", "pods", str),
        )
        if need[key] > free[key]
    ]
    fits = not short
    most = min(free[key] // max(1, getattr(requests, key)) for key in keys)
    message = (
        f"{learners} learners fit: they request {need['cpu_millis']}m CPU, {show_memory(need['memory_bytes'])} and "
        f"{need['pods']} pods of {free['cpu_millis']}m, {show_memory(free['memory_bytes'])} and {free['pods']} pods "
        f"allocatable on {free['nodes']} node(s)."
        if fits
        else f"{learners} learners do not fit the cluster: too little {', '.join(short)}; at most {most} fit."
    )
    return {
        "learners": learners,
        "per_learner": requests.to_json(),
        "needed": {
            "pods": need["pods"],
            "requests.cpu": f"{need['cpu_millis']}m",
            "requests.memory": show_memory(need["memory_bytes"]),
        },
        "allocatable": {
            "nodes": free["nodes"],
            "pods": free["pods"],
            "cpu": f"{free['cpu_millis']}m",
            "memory": show_memory(free["memory_bytes"]),
        },
        "fits": fits,
        "most_learners": most,
        "message": message,
        "hint": "" if fits else "Lower --max-learners, use --workshop-profile (4 pods a learner), or add nodes.",
    }


async def workshop_preflight(api: Api, report: dict[str, Any], requests: LabRequests, learners: int) -> dict[str, Any]:
    """The pre-flight of a workshop room: the ClusterRole's verbs (cluster-wide access reviews, `scope: cluster`),
    added to `checks`, and `room`: `learners` × the lab's requests against the nodes' allocatable."""
    needs = [*WORKSHOP_ACCESS, *learner_role_access()]  # `kubectl auth can-i ... --all-namespaces`: no namespace
    reviews = await asyncio.gather(*(asyncio.to_thread(access_review, api, *need, namespace="") for need in needs))
    checks = [{**check, "scope": "cluster"} for check in reviews]
    status, nodes = await asyncio.to_thread(
        api.request, "GET", "/api/v1/nodes", verb="list", resource="nodes", ok=(403,)
    )
    if status == 200:
        room = room_fit(learners, requests, allocatable(nodes))
    else:
        room = {
            "learners": learners,
            "per_learner": requests.to_json(),
            "fits": None,
            "message": "The nodes' allocatable is not readable with this identity (list nodes is forbidden).",
            "hint": "Apply manifests/dashboard/workshop/ (its ClusterRole lists nodes).",
        }
    merged = _report({**report, "checks": [*report.get("checks", []), *checks]})
    merged["room"] = room
    merged["ok"] = bool(report.get("ok")) and not merged["blocked"] and room.get("fits") is not False
    return merged
