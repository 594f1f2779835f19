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
from dashboard.platforms.kubernetes.api import Api

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
        api.request, "GET", f"/api/v1/namespaces/{namespace}", verb="get", resource="namespaces", ok=(403, 404)
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
    api: Api, verb: str, group: str, resource: str, subresource: str, needed_for: tuple[str, ...]
) -> dict[str, object]:
    """`kubectl auth can-i <verb> <resource>` as a SelfSubjectAccessReview; allowed None when it cannot be asked."""
    attributes = {"namespace": api.namespace, "verb": verb, "group": group, "resource": resource}
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
