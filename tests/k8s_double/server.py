"""The double's API server: a real HTTP/1.1 server on 127.0.0.1 in a thread, with its store, a tiny controller,
REST verbs, watches, auth and access reviews (see the package docstring for what it does, and only that)."""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import json
import logging
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlparse

import yaml

from dashboard.platforms.kubernetes.objects import owner_deployment, selector_matches
from dashboard.platforms.local.objects import pod_suffix, pod_template_hash
from tests.k8s_double.fixtures import (
    FIXTURES,
    JSON,
    RESOURCES,
    TOKEN,
    ApiError,
    fixture,
    merge,
    no_namespace,
    now,
    status_body,
)
from tests.k8s_double.kubelet import Kubelet
from tests.k8s_double.portforward import PORTFORWARD_PROTOCOL, WS_GUID, Address, PortForwardSession

log = logging.getLogger(__name__)
KUBELET_ATTEMPTS = 3  # starts of a pod's process before the kubelet gives up (RunContainerError)


class KubernetesApiDouble:
    """The API server double; use `with KubernetesApiDouble() as api:` or start()/close()."""

    def __init__(
        self, namespaces: tuple[str, ...] = ("guestbook",), pod_grace: float = 0.2, kubelet: Kubelet | None = None
    ) -> None:
        self.namespaces: dict[str, JSON] = {}
        self.store: dict[tuple[str, str, str], JSON] = {}  # (plural, namespace, name) -> object
        self.history: list[tuple[int, str, str, str, JSON]] = []  # (rv, type, plural, namespace, object)
        self.requests: list[tuple[str, str, str]] = []
        self.faults: dict[tuple[str, str], tuple[int, str | None]] = {}  # (verb, plural) -> (code, Retry-After)
        self.token = TOKEN
        self.pod_grace = pod_grace
        self.compacted = 0
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._rv = itertools.count(1000)
        self.resource_version = 999
        self._ip = itertools.count(10)
        self._expired = 0  # generation of expire_watches()
        self._closing = False
        self.kubelet = kubelet
        self.routes: dict[tuple[str, str, int], Address] = {}  # (namespace, pod, containerPort) -> real address
        self._sessions: dict[tuple[str, str], set[PortForwardSession]] = {}
        template = fixture("10-cluster/namespace-guestbook.json")
        for name in namespaces:
            self.add_namespace(name, template)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="k8s-api-double", daemon=True)

    # ---------------------------------------------------------------------------------- control

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        with self.lock:
            self._closing = True
            self.changed.notify_all()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write_kubeconfig(self, path: Path, namespace: str = "guestbook", token: str | None = None) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "double", "cluster": {"server": self.url}}],
            "users": [{"name": "learner", "user": {"token": token or self.token}}],
            "contexts": [
                {"name": "double", "context": {"cluster": "double", "user": "learner", "namespace": namespace}}
            ],
            "current-context": "double",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def fail(self, verb: str, plural: str, code: int, retry_after: str | None = None) -> None:
        """Answer `verb` on `plural` with `code` (429, 5xx: the recorded Status shape), Retry-After if given, until
        `heal()`; as an overloaded or restarting API server does."""
        with self.lock:
            self.faults[(verb, plural)] = (code, retry_after)

    def heal(self) -> None:
        with self.lock:
            self.faults.clear()

    def delete_namespace(self, name: str) -> None:
        """The namespace and everything in it gone at once (someone ran `kubectl delete namespace` meanwhile)."""
        with self.lock:
            del self.namespaces[name]
            for key in [k for k in self.store if k[1] == name]:
                self._remove(*key)

    def expire_watches(self) -> None:
        """Send every open watch the recorded 410 Gone ERROR event and close it (as after an API server restart)."""
        with self.lock:
            self.compacted = self.resource_version  # a watch from an older resourceVersion gets 410 Gone
            self._expired += 1
            self.changed.notify_all()

    def count(self, verb: str, resource: str | None = None) -> int:
        return sum(1 for _, v, path in self.requests if v == verb and (resource is None or f"/{resource}" in path))

    def objects(self, plural: str, namespace: str = "guestbook") -> list[JSON]:
        with self.lock:
            return [copy.deepcopy(o) for (p, ns, _), o in sorted(self.store.items()) if p == plural and ns == namespace]

    def add_namespace(self, name: str, template: JSON | None = None) -> None:
        ns = copy.deepcopy(template or fixture("10-cluster/namespace-guestbook.json"))
        ns["metadata"].update(name=name, uid=str(uuid.uuid4()), labels={"kubernetes.io/metadata.name": name})
        self.namespaces[name] = ns

    def put(self, obj: JSON, event: str = "ADDED") -> JSON:
        """Store an object as a controller or another tool would (no apply semantics); records a watch event."""
        with self.lock:
            obj = copy.deepcopy(obj)
            kind = obj["kind"]
            plural = next(p for p, r in RESOURCES.items() if r[1] == kind)
            meta = obj.setdefault("metadata", {})
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now())
            meta.setdefault("namespace", "guestbook")
            self._bump(meta)
            self.store[(plural, meta["namespace"], meta["name"])] = obj
            self._record(event, plural, obj)
            return obj

    # ------------------------------------------------------------------------------------ state

    def _bump(self, meta: JSON) -> None:
        self.resource_version = next(self._rv)
        meta["resourceVersion"] = str(self.resource_version)

    def _record(self, event: str, plural: str, obj: JSON) -> None:
        self.history.append((self.resource_version, event, plural, obj["metadata"]["namespace"], copy.deepcopy(obj)))
        self.changed.notify_all()

    def _remove(self, plural: str, namespace: str, name: str) -> JSON | None:
        obj = self.store.pop((plural, namespace, name), None)
        if obj is not None:
            self._bump(obj["metadata"])
            self._record("DELETED", plural, obj)
        return obj

    # the controller: Deployments -> pods ----------------------------------------------------

    def _reconcile(self, namespace: str, name: str) -> None:
        deployment = self.store.get(("deployments", namespace, name))
        if deployment is None:
            return
        spec = deployment["spec"]
        template_hash = pod_template_hash(spec["template"])
        rs_name = f"{name}-{template_hash}"
        pods = [
            p
            for (plural, ns, _), p in self.store.items()
            if plural == "pods" and ns == namespace and p["metadata"].get("deletionTimestamp") is None
            if any(r.get("name", "").startswith(f"{name}-") for r in p["metadata"].get("ownerReferences") or [])
        ]
        for pod in [p for p in pods if p["metadata"]["labels"].get("pod-template-hash") != template_hash]:
            self._terminate(pod)  # a new template: replace the old pods (all at once, no surge)
        pods = [p for p in pods if p["metadata"]["labels"].get("pod-template-hash") == template_hash]
        desired = int(spec.get("replicas", 1))
        for pod in pods[desired:]:
            self._terminate(pod)
        for _ in range(desired - len(pods)):
            self._create_pod(namespace, rs_name, template_hash, spec["template"])
        pods = [
            p
            for (plural, ns, _), p in self.store.items()
            if plural == "pods" and ns == namespace and p["metadata"].get("deletionTimestamp") is None
            if p["metadata"]["labels"].get("pod-template-hash") == template_hash and owner_deployment(p) == name
        ]
        ready = sum(
            1
            for p in pods
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
        )
        status = {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": desired,
            "updatedReplicas": desired,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [{"type": "Available", "status": "True" if ready >= desired else "False"}],
        }
        if deployment.get("status") != status:
            deployment["status"] = status
            self._bump(deployment["metadata"])
            self._record("MODIFIED", "deployments", deployment)

    def _create_pod(self, namespace: str, rs_name: str, template_hash: str, template: JSON) -> None:
        suffix = pod_suffix()
        containers = template["spec"]["containers"]
        ip = f"127.0.0.{next(self._ip) % 250 + 2}"
        ready = "True" if self.kubelet is None else "False"
        pod: JSON = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": f"{rs_name}-{suffix}",
                "generateName": f"{rs_name}-",
                "namespace": namespace,
                "labels": {**template["metadata"]["labels"], "pod-template-hash": template_hash},
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name, "controller": True}
                ],
            },
            "spec": {**copy.deepcopy(template["spec"]), "nodeName": "fake-node-1"},
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": t, "status": ready} for t in ("Initialized", "ContainersReady", "Ready", "PodScheduled")
                ],
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "startTime": now(),
                "containerStatuses": [
                    {
                        "name": c["name"],
                        "state": {"running": {"startedAt": now()}},
                        "ready": ready == "True",
                        "restartCount": 0,
                        "image": c["image"],
                        "imageID": "",
                    }
                    for c in containers
                ],
            },
        }
        if self.kubelet is None:
            self.put(pod)
            return
        pending: JSON = pod["status"]
        pending["phase"] = "Pending"
        del pending["podIP"], pending["podIPs"]
        for container in pending["containerStatuses"]:
            container["state"] = {"waiting": {"reason": "ContainerCreating"}}
        stored = self.put(pod)
        threading.Thread(target=self._kubelet_start, args=(stored, ip), daemon=True).start()

    def _kubelet_start(self, pod: JSON, ip: str) -> None:
        """Run the pod's process(es) through the kubelet, then mark it Running and Ready (or say why not)."""
        assert self.kubelet is not None
        meta = pod["metadata"]
        key = ("pods", meta["namespace"], meta["name"])

        def deleted() -> bool:
            with self.lock:
                current = self.store.get(key)
                return current is None or bool(current["metadata"].get("deletionTimestamp"))

        routes: dict[int, Address] = {}
        failure: str | None = None
        for attempt in range(KUBELET_ATTEMPTS):  # a container that fails to start is restarted, as a kubelet does
            if deleted():  # deleted before its containers (re)started (a scale-down right after an apply)
                return
            try:
                routes, failure = self.kubelet.run_pod(copy.deepcopy(pod)), None
                break
            except Exception as exc:
                # A pod deleted while it started had its process stopped under it (`_kill`): no warning for that.
                last = attempt == KUBELET_ATTEMPTS - 1 or deleted()
                say = log.warning if last and not deleted() else log.debug
                say("kubelet could not start %s: %s", meta["name"], exc)
                failure = str(exc)
                if last:
                    break
                time.sleep(attempt + 1)
        with self.lock:
            current = self.store.get(key)
            if current is None or current["metadata"].get("deletionTimestamp"):
                stopped = True
            else:
                stopped = False
                status = current["status"]
                for container in status["containerStatuses"]:
                    if failure is None:
                        container.update(state={"running": {"startedAt": now()}}, ready=True)
                    else:
                        container["state"] = {"waiting": {"reason": "RunContainerError", "message": failure}}
                if failure is None:
                    status.update(phase="Running", podIP=ip, podIPs=[{"ip": ip}])
                    for condition in status["conditions"]:
                        condition["status"] = "True"
                    for port, address in routes.items():
                        self.routes[(meta["namespace"], meta["name"], port)] = address
                self._bump(current["metadata"])
                self._record("MODIFIED", "pods", current)
                owner = owner_deployment(current)
                if owner:
                    self._reconcile(meta["namespace"], owner)
        if stopped and failure is None:  # deleted while starting: stop what was started
            self.kubelet.stop_pod(copy.deepcopy(pod))

    def _terminate(self, pod: JSON) -> None:
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            return
        meta["deletionTimestamp"] = now()
        meta["deletionGracePeriodSeconds"] = 30
        self._bump(meta)
        self._record("MODIFIED", "pods", pod)
        key = ("pods", meta["namespace"], meta["name"])
        # The kubelet kills the containers: nothing listens behind the pod any more, open forwards break.
        for route in [r for r in self.routes if r[:2] == (meta["namespace"], meta["name"])]:
            del self.routes[route]
        sessions = list(self._sessions.pop((meta["namespace"], meta["name"]), set()))
        kubelet = self.kubelet
        if sessions or kubelet is not None:
            threading.Thread(target=self._kill, args=(sessions, copy.deepcopy(pod)), daemon=True).start()

        def finish() -> None:
            with self.lock:
                if self.store.get(key) is pod:
                    self._remove(*key)

        timer = threading.Timer(self.pod_grace, finish)
        timer.daemon = True
        timer.start()

    def _kill(self, sessions: list[PortForwardSession], pod: JSON) -> None:
        for session in sessions:
            session.cut()
        if self.kubelet is not None and pod["status"].get("phase") in ("Running", "Pending"):
            self.kubelet.stop_pod(pod)  # a Pending pod's process may be starting: stopped now, not once it is up

    # ---------------------------------------------------------------------------- HTTP plumbing

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

        for method in ("GET", "POST", "PATCH", "DELETE", "PUT"):  # do_GET ... do_PUT: every verb to _serve
            setattr(Handler, f"do_{method}", lambda handler, method=method: double._serve(handler, method))
        return Handler

    def _send(
        self, handler: BaseHTTPRequestHandler, code: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        for header, value in (headers or {}).items():
            handler.send_header(header, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(handler.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        parts = [p for p in url.path.split("/") if p]
        verb = self._verb(method, parts, query)
        with self.lock:
            self.requests.append((method, verb, url.path))
        try:
            if handler.headers.get("Authorization") != f"Bearer {self.token}":
                raise ApiError(401, status_body(401, "Unauthorized", "Unauthorized"))
            if url.path == "/version":
                return self._send(handler, 200, fixture("10-cluster/version.json"))
            if parts[:2] == ["api", "v1"] and len(parts) >= 3 and parts[2] == "namespaces" and len(parts) <= 4:
                return self._send(handler, *self._namespaces(method, parts, raw))
            if parts[:2] == ["api", "v1"] and parts[2:3] == ["nodes"]:
                return self._send(handler, 200, self._nodes())
            if url.path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews":
                return self._send(handler, 201, self._access_review(json.loads(raw)))
            if parts[:3] == ["apis", "discovery.k8s.io", "v1"] and parts[3:4] == ["namespaces"] and len(parts) == 6:
                if parts[5] != "endpointslices" or verb != "list":
                    raise ApiError(404, status_body(404, "NotFound", "the server could not find the resource", {}))
                return self._send(handler, 200, self._endpoint_slices(parts[4], query))
            prefix_len = 2 if parts[0] == "api" else 3
            rest = parts[prefix_len:]
            if len(rest) < 3 or rest[0] != "namespaces" or rest[2] not in RESOURCES:
                raise ApiError(
                    404, status_body(404, "NotFound", "the server could not find the requested resource", {})
                )
            namespace, plural = rest[1], rest[2]
            name = rest[3] if len(rest) > 3 else ""
            sub = rest[4] if len(rest) > 4 else ""
            if namespace not in self.namespaces:
                raise no_namespace(namespace)
            with self.lock:
                fault = self.faults.get((verb, plural))
            if fault is not None:
                code, retry_after = fault
                reason = {429: "TooManyRequests", 503: "ServiceUnavailable"}.get(code, "InternalError")
                body = status_body(code, reason, f"the server is {reason}", {"retryAfterSeconds": 1})
                headers = {"Retry-After": retry_after} if retry_after is not None else None
                return self._send(handler, code, body, headers=headers)
            if plural == "pods" and sub == "portforward":
                return self._portforward(handler, namespace, name, query)
            if verb == "watch":
                return self._watch(handler, plural, namespace, query)
            return self._send(handler, *self._resource(method, verb, plural, namespace, name, sub, query, raw, handler))
        except ApiError as exc:
            return self._send(handler, exc.code, exc.body)

    def _endpoint_slices(self, namespace: str, query: dict[str, str]) -> JSON:
        """What the EndpointSlice controller keeps: per Service, its selected pods with an IP, ready or not."""
        selector = query.get("labelSelector", "")
        wanted = selector.split("=", 1)[1] if selector.startswith("kubernetes.io/service-name=") else None
        with self.lock:
            services = [o for (plural, ns, _), o in self.store.items() if plural == "services" and ns == namespace]
            pods = [o for (plural, ns, _), o in self.store.items() if plural == "pods" and ns == namespace]
            items = []
            for service in services:
                name = service["metadata"]["name"]
                selected = service["spec"].get("selector") or {}
                if (wanted is not None and name != wanted) or not selected:
                    continue
                endpoints = []
                for pod in pods:
                    labels = pod["metadata"].get("labels") or {}
                    ip = pod.get("status", {}).get("podIP")
                    if not ip or any(labels.get(k) != v for k, v in selected.items()):
                        continue
                    terminating = pod["metadata"].get("deletionTimestamp") is not None
                    conditions = pod["status"].get("conditions") or []
                    ready = not terminating and any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
                    endpoints.append(
                        {
                            "addresses": [ip],
                            "conditions": {"ready": ready, "serving": ready, "terminating": terminating},
                            "targetRef": {"kind": "Pod", "namespace": namespace, "name": pod["metadata"]["name"]},
                        }
                    )
                items.append(
                    {
                        "metadata": {
                            "name": f"{name}-slice",
                            "namespace": namespace,
                            "labels": {**service["metadata"].get("labels", {}), "kubernetes.io/service-name": name},
                        },
                        "addressType": "IPv4",
                        "endpoints": endpoints,
                        "ports": [
                            {"name": "", "protocol": "TCP", "port": p.get("targetPort", p["port"])}
                            for p in service["spec"].get("ports", [])
                        ],
                    }
                )
            return {
                "kind": "EndpointSliceList",
                "apiVersion": "discovery.k8s.io/v1",
                "metadata": {"resourceVersion": str(self.resource_version)},
                "items": items,
            }

    @staticmethod
    def _verb(method: str, parts: list[str], query: dict[str, str]) -> str:
        if len(parts) == 4 and parts[2] == "namespaces":
            named = True
        else:
            named = len(parts) >= 7 if parts and parts[0] == "apis" else len(parts) >= 6
        if method == "GET":
            if query.get("watch") in ("1", "true"):
                return "watch"
            return "get" if named else "list"
        if method == "DELETE":
            return "delete" if named else "deletecollection"
        return {"POST": "create", "PATCH": "patch", "PUT": "update"}[method]

    def _access_review(self, review: JSON) -> JSON:
        out = fixture("08-access-review/admin-list-pods.json")  # the double's identity may do everything
        out["spec"] = review["spec"]
        out["status"] = {"allowed": True}
        return dict(out)

    def _nodes(self) -> JSON:
        node = {
            "kind": "Node",
            "metadata": {"name": "fake-node-1"},
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": "fake-node-1"},
                ]
            },
        }
        return {
            "kind": "NodeList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(self.resource_version)},
            "items": [node],
        }

    def _namespaces(self, method: str, parts: list[str], raw: bytes) -> tuple[int, JSON]:
        with self.lock:
            if method == "POST" and len(parts) == 3:
                body = json.loads(raw)
                name = body["metadata"]["name"]
                if name in self.namespaces:
                    message, details = f'namespaces "{name}" already exists', {"name": name, "kind": "namespaces"}
                    raise ApiError(409, status_body(409, "AlreadyExists", message, details))
                self.add_namespace(name)
                self.namespaces[name]["metadata"]["labels"].update(body["metadata"].get("labels") or {})
                return 201, self.namespaces[name]
            name = parts[3]
            if name not in self.namespaces:
                raise no_namespace(name)
            if method == "DELETE":
                ns = self.namespaces[name]
                self.delete_namespace(name)
                return 200, ns
            return 200, self.namespaces[name]

    def _find(self, plural: str, namespace: str, name: str) -> JSON:
        obj = self.store.get((plural, namespace, name))
        if obj is None:
            group, _, _ = RESOURCES[plural]
            qualified = f"{plural}.{group}" if group else plural
            details = {"name": name, "kind": plural, **({"group": group} if group else {})}
            raise ApiError(404, status_body(404, "NotFound", f'{qualified} "{name}" not found', details))
        return obj

    def _selected(self, plural: str, namespace: str | None, query: dict[str, str]) -> list[JSON]:
        """The stored `plural` in `namespace` (None: in every namespace), narrowed by the query's selectors."""
        items = [o for (p, ns, _), o in sorted(self.store.items()) if p == plural and namespace in (None, ns)]
        if query.get("labelSelector"):
            items = [o for o in items if selector_matches(query["labelSelector"], o["metadata"].get("labels"))]
        if query.get("fieldSelector"):
            field, _, value = query["fieldSelector"].partition("=")
            if field != "metadata.name":
                raise ApiError(400, status_body(400, "BadRequest", f"field label not supported: {field}"))
            items = [o for o in items if o["metadata"]["name"] == value]
        return items

    def _resource(
        self,
        method: str,
        verb: str,
        plural: str,
        namespace: str,
        name: str,
        sub: str,
        query: dict[str, str],
        raw: bytes,
        handler: BaseHTTPRequestHandler,
    ) -> tuple[int, Any]:
        group, kind, _ = RESOURCES[plural]
        api_version = f"{group}/v1" if group else "v1"
        with self.lock:
            if verb == "list":
                items = [copy.deepcopy(o) for o in self._selected(plural, namespace, query)]
                for item in items:
                    item.pop("kind", None)
                    item.pop("apiVersion", None)
                meta = {"resourceVersion": str(self.resource_version)}
                return 200, {"kind": f"{kind}List", "apiVersion": api_version, "metadata": meta, "items": items}
            if verb == "get" and sub == "scale":
                dep = self._find(plural, namespace, name)
                return 200, self._scale_body(dep)
            if verb == "get":
                return 200, self._find(plural, namespace, name)
            if verb == "patch" and handler.headers.get("Content-Type") == "application/apply-patch+yaml":
                return self._apply(plural, namespace, name, query, yaml.safe_load(raw))
            if verb == "patch" and sub == "scale":
                dep = self._find(plural, namespace, name)
                replicas = json.loads(raw)["spec"]["replicas"]
                if dep["spec"].get("replicas") != replicas:
                    dep["spec"]["replicas"] = replicas
                    dep["metadata"]["generation"] = dep["metadata"].get("generation", 1) + 1
                    self._bump(dep["metadata"])
                    self._record("MODIFIED", plural, dep)
                    self._reconcile(namespace, name)
                return 200, self._scale_body(dep)
            if verb == "patch":
                obj = self._find(plural, namespace, name)
                patched = merge(obj, json.loads(raw))
                if plural == "services":
                    self._default_service(patched)
                if patched != obj:
                    self._bump(patched["metadata"])
                    self.store[(plural, namespace, name)] = patched
                    self._record("MODIFIED", plural, patched)
                return 200, patched
            if verb == "delete":
                obj = self._find(plural, namespace, name)
                options = json.loads(raw) if raw else {}
                uid = (options.get("preconditions") or {}).get("uid")
                if uid and uid != obj["metadata"]["uid"]:
                    message = (
                        f"Precondition failed: UID in precondition: {uid}, UID in object meta: {obj['metadata']['uid']}"
                    )
                    raise ApiError(409, status_body(409, "Conflict", message, {"name": name, "kind": plural}))
                return 200, self._delete(plural, namespace, name)
        raise ApiError(405, status_body(405, "MethodNotAllowed", f"{method} is not supported here"))

    def _scale_body(self, dep: JSON) -> JSON:
        body = fixture("05-watch/scale-get-redis-follower.json")
        body["metadata"].update(name=dep["metadata"]["name"], namespace=dep["metadata"]["namespace"])
        body["metadata"]["resourceVersion"] = dep["metadata"]["resourceVersion"]
        body["spec"] = {"replicas": dep["spec"].get("replicas", 1)}
        body["status"] = {"replicas": dep.get("status", {}).get("replicas", 0), "selector": "app=redis"}
        return dict(body)

    def _delete(self, plural: str, namespace: str, name: str) -> JSON:
        obj = self._find(plural, namespace, name)
        if plural == "pods":
            self._terminate(obj)
            owner = next((r["name"] for r in obj["metadata"].get("ownerReferences") or []), "")
            deployment = owner.rsplit("-", 1)[0]
            self._reconcile(namespace, deployment)
            return copy.deepcopy(obj)
        removed = self._remove(plural, namespace, name) or obj
        if plural == "deployments":
            for (p, ns, _), pod in list(self.store.items()):
                if p == "pods" and ns == namespace and owner_deployment(pod) == name:
                    self._terminate(pod)
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "group": "apps", "kind": plural, "uid": removed["metadata"]["uid"]},
            }
        return copy.deepcopy(removed)

    @staticmethod
    def _default_service(service: JSON) -> None:
        spec = service.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("clusterIP", "10.96.98.234")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
            if spec["type"] in ("NodePort", "LoadBalancer"):
                port.setdefault("nodePort", 30303)
            else:
                port.pop("nodePort", None)
        service.setdefault("status", {"loadBalancer": {}})

    def _apply(self, plural: str, namespace: str, name: str, query: dict[str, str], doc: JSON) -> tuple[int, JSON]:
        manager = query.get("fieldManager")
        if not manager:
            raise ApiError(422, fixture("06-errors/422-apply-without-fieldmanager.json"))
        existing = self.store.get((plural, namespace, name))
        if existing is None:
            obj = copy.deepcopy(doc)
            obj["metadata"].update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
            obj["metadata"]["managedFields"] = [
                {"manager": manager, "operation": "Apply", "apiVersion": doc["apiVersion"], "time": now()}
            ]
            if plural == "services":
                self._default_service(obj)
            if plural == "deployments":
                obj["status"] = {}
            self._bump(obj["metadata"])
            self.store[(plural, namespace, name)] = obj
            self._record("ADDED", plural, obj)
            if plural == "deployments":
                self._reconcile(namespace, name)
            return 201, copy.deepcopy(self.store[(plural, namespace, name)])
        updated = copy.deepcopy(existing)
        updated["metadata"]["labels"] = {
            **(existing["metadata"].get("labels") or {}),
            **(doc["metadata"].get("labels") or {}),
        }
        updated["spec"] = merge(existing.get("spec"), doc.get("spec") or {})
        if plural == "services":
            self._default_service(updated)
        managers = updated["metadata"].setdefault("managedFields", [])
        if not any(m["manager"] == manager and m.get("operation") == "Apply" for m in managers):
            managers.append({"manager": manager, "operation": "Apply", "apiVersion": doc["apiVersion"], "time": now()})
        if updated == existing:
            return 200, copy.deepcopy(existing)
        if updated["spec"] != existing.get("spec"):
            updated["metadata"]["generation"] = existing["metadata"].get("generation", 1) + 1
        self._bump(updated["metadata"])
        self.store[(plural, namespace, name)] = updated
        self._record("MODIFIED", plural, updated)
        if plural == "deployments":
            self._reconcile(namespace, name)
        return 200, copy.deepcopy(updated)

    # ----------------------------------------------------------------------------- port-forward

    def _portforward(self, handler: BaseHTTPRequestHandler, namespace: str, name: str, query: dict[str, str]) -> None:
        """GET .../pods/NAME/portforward?ports=P upgraded to a WebSocket, as the API server proxies the kubelet's."""
        headers = handler.headers
        if "websocket" not in (headers.get("Upgrade") or "").lower():
            raise ApiError(400, status_body(400, "BadRequest", "Upgrade request required"))
        try:
            ports = [int(p) for p in query.get("ports", "").split(",") if p.strip()]
        except ValueError as exc:
            raise ApiError(400, status_body(400, "BadRequest", f"invalid port: {query.get('ports')}")) from exc
        if not ports or any(not 0 < p < 65536 for p in ports):
            raise ApiError(400, status_body(400, "BadRequest", "at least one valid port is required"))
        with self.lock:
            pod = self._find("pods", namespace, name)
            phase = pod.get("status", {}).get("phase")
            if phase != "Running":
                message = f"unable to upgrade connection: pod {name} is not running (phase {phase})"
                raise ApiError(400, status_body(400, "BadRequest", message))
            uid = pod["metadata"]["uid"]
            targets = [self.routes.get((namespace, name, p)) for p in ports]
        offered = [p.strip() for p in (headers.get("Sec-WebSocket-Protocol") or "").split(",")]
        key = headers.get("Sec-WebSocket-Key")
        if PORTFORWARD_PROTOCOL not in offered or not key:
            raise ApiError(400, status_body(400, "BadRequest", "unable to upgrade connection: bad handshake"))
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        handler.send_response(101, "Switching Protocols")
        handler.send_header("Upgrade", "websocket")
        handler.send_header("Connection", "Upgrade")
        handler.send_header("Sec-WebSocket-Accept", accept)
        handler.send_header("Sec-WebSocket-Protocol", PORTFORWARD_PROTOCOL)
        handler.end_headers()
        handler.wfile.flush()
        handler.close_connection = True
        session = PortForwardSession(handler, name, uid, ports, targets)
        with self.lock:
            self._sessions.setdefault((namespace, name), set()).add(session)
        try:
            session.run()
        finally:
            with self.lock:
                self._sessions.get((namespace, name), set()).discard(session)

    # ------------------------------------------------------------------------------------ watch

    def _gone(self, start_rv: int) -> bytes:
        """The recorded 410 Gone ERROR event (`too old resource version`), for this resourceVersion."""
        event = json.loads((FIXTURES / "05-watch/pods-too-old-resourceversion.ndjson").read_text().strip())
        event["object"]["message"] = f"too old resource version: {start_rv} ({self.compacted})"
        return json.dumps(event, separators=(",", ":")).encode() + b"\n"

    def _watch(
        self, handler: BaseHTTPRequestHandler, plural: str, namespace: str | None, query: dict[str, str]
    ) -> None:
        """A watch of `plural` in `namespace` (None: in every namespace), from `resourceVersion`, narrowed by
        `labelSelector`, ended after `timeoutSeconds`."""
        start_rv = int(query.get("resourceVersion") or 0)
        timeout = float(query.get("timeoutSeconds") or 1800)
        selector = query.get("labelSelector")
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

        def chunk(data: bytes) -> None:
            handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            handler.wfile.flush()

        deadline = time.monotonic() + timeout
        try:
            with self.lock:
                expired_at_start = self._expired
                if start_rv and start_rv < self.compacted:
                    chunk(self._gone(start_rv))
                    chunk(b"")
                    return
                position = next((i for i, h in enumerate(self.history) if h[0] > start_rv), len(self.history))
            while True:
                with self.lock:
                    while (
                        position >= len(self.history)
                        and self._expired == expired_at_start
                        and not self._closing
                        and time.monotonic() < deadline
                    ):
                        self.changed.wait(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
                    if self._closing or time.monotonic() >= deadline:
                        break
                    if self._expired != expired_at_start:
                        chunk(self._gone(start_rv))
                        break
                    pending = self.history[position:]
                    position = len(self.history)
                for rv, kind, p, ns, obj in pending:
                    if p != plural or namespace not in (None, ns):
                        continue
                    if selector and not selector_matches(selector, obj["metadata"].get("labels")):
                        continue
                    chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
                    start_rv = rv
            chunk(b"")
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        handler.close_connection = True
