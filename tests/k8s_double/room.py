"""`RoomDouble`: the API double plus what workshop mode asks of a real API server that `KubernetesApiDouble` does
not serve: server-side apply of a Namespace and of the isolation kinds (ResourceQuota, LimitRange, ServiceAccount,
NetworkPolicy, Role, RoleBinding), and cluster-wide list/watch of pods and events (`/api/v1/pods`,
`/api/v1/events`, narrowed by `labelSelector`). Used by tests/test_k8s_workshop_double.py and by
bench/bench_workshop_k8s.py; every request it serves is in `requests` as (method, verb, path), like the double's.
"""

from __future__ import annotations

import copy
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

from tests.k8s_double.fixtures import ApiError, status_body
from tests.k8s_double.server import KubernetesApiDouble

# A roomy node: 100 learners of the workshop profile (4 pods, 400m CPU, 400Mi each) fit.
ALLOCATABLE = {"cpu": "64", "memory": "256Gi", "pods": "1000"}
ISOLATION = {"resourcequotas", "limitranges", "serviceaccounts", "networkpolicies", "roles", "rolebindings"}


class RoomDouble(KubernetesApiDouble):
    """The API double plus Namespace/isolation-kind apply and cluster-wide pods and events (list and watch)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)  # the double's own options (pod_grace, kubelet, namespaces)
        self.isolation: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, namespace, name) -> object
        self.provisioned: list[tuple[float, str]] = []  # (time.time(), namespace) of each Namespace/isolation request
        self.allocatable = dict(ALLOCATABLE)  # the one node's, as `kubectl get node -o jsonpath={.status.allocatable}`

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        base = super()._handler()

        class Handler(base):  # type: ignore[misc, valid-type]
            # TCP_NODELAY, as the API server (Go's net/http) sets it: a keep-alive answer goes out as headers, then
            # body, and with Nagle on the body waits for the client's delayed ACK, 40 ms per request; a room of 100
            # learners' provisioning (14 requests each) is then the double's time, not the dashboard's.
            disable_nagle_algorithm = True

        return Handler

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(handler.path)
        parts = [p for p in url.path.split("/") if p]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
        namespace_apply = method == "PATCH" and parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 4
        isolation = len(rest) == 4 and rest[0] == "namespaces" and rest[2] in ISOLATION
        cluster_wide = method == "GET" and url.path in ("/api/v1/pods", "/api/v1/events")
        if not (namespace_apply or isolation or cluster_wide):
            return super()._serve(handler, method)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        verb = "watch" if query.get("watch") == "true" else {"GET": "get", "PATCH": "patch"}.get(method, method)
        if cluster_wide and verb == "get":
            verb = "list"
        with self.lock:
            self.requests.append((method, verb, url.path))
            if namespace_apply or isolation:
                self.provisioned.append((time.time(), parts[3] if namespace_apply else rest[1]))
        try:
            if namespace_apply:
                return self._send(handler, 200, self._apply_namespace(parts[3], yaml.safe_load(raw)))
            if isolation:
                key = (rest[2], rest[1], rest[3])
                with self.lock:
                    if method == "PATCH":
                        doc = yaml.safe_load(raw)
                        old = self.isolation.get(key)
                        rv = str(int(old["metadata"]["resourceVersion"]) + 1) if old else "1"
                        doc["metadata"] = {**doc["metadata"], "resourceVersion": rv}
                        self.isolation[key] = doc
                        return self._send(handler, 200, doc)
                    if key not in self.isolation:
                        raise ApiError(404, status_body(404, "NotFound", f'{rest[2]} "{rest[3]}" not found'))
                    return self._send(handler, 200, self.isolation[key])
            plural = parts[2]
            if verb == "watch":
                return self._watch(handler, plural, None, query)
            with self.lock:
                items = [copy.deepcopy(o) for o in self._selected(plural, None, query)]
                meta = {"resourceVersion": str(self.resource_version)}
            return self._send(handler, 200, {"kind": "List", "apiVersion": "v1", "metadata": meta, "items": items})
        except ApiError as exc:
            return self._send(handler, exc.code, exc.body)

    def _nodes(self) -> dict[str, Any]:
        nodes = super()._nodes()
        for node in nodes["items"]:
            node["status"]["allocatable"] = dict(self.allocatable)
            node["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
        return nodes

    def _apply_namespace(self, name: str, doc: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if name not in self.namespaces:
                self.add_namespace(name)
            namespace = self.namespaces[name]
            namespace["metadata"]["labels"].update(doc["metadata"].get("labels") or {})
            return dict(namespace)
