"""`KubernetesPlatform`: the `Platform` protocol on a real cluster, driven with the official client as kubectl would.

Server-side apply with our field manager and label, scale, delete, label-narrowed cleanup, Redis/frontend access
(pod IPs or port-forwards, `--redis-access auto` deciding at the first ready Redis pod), expose (port-forward,
NodePort checked to answer, LoadBalancer), logs, events and the pre-flight, plus `watch_stats()` and
`expose_status()`. Its role is orchestration: requests go through `api.Api`, the pod and event caches are
`reflector.Reflector`s, forwards are `portforward.PortForward`s, how pods are reached is `access`, and what to make
of the API's JSON lives in `objects` (pure functions). A refusal that will not pass (`PlatformRefused`: a 403, a
port-forward the API server cannot open) is raised to a step's check at once. Blocking client calls run in
`asyncio.to_thread`; watch threads hand changes to the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dashboard.errors import BadRequest, DashboardError, PlatformError, PlatformRefused, PlatformUnavailable
from dashboard.models import (
    Capabilities,
    EventRow,
    Listener,
    LogLine,
    PlatformName,
    Pod,
    RedisAccess,
    RedisEndpoint,
    Timing,
)
from dashboard.platforms.base import notify
from dashboard.platforms.kubernetes import admission, namespace, objects
from dashboard.platforms.kubernetes.access import RedisAccessChoice, nodeport_fallback_note, url_answers
from dashboard.platforms.kubernetes.api import Api, api_path
from dashboard.platforms.kubernetes.config import ClusterConfig, load_cluster_config
from dashboard.platforms.kubernetes.errors import translate_status
from dashboard.platforms.kubernetes.portforward import PortForward, close_websocket
from dashboard.platforms.kubernetes.preflight import preflight, workshop_preflight
from dashboard.platforms.kubernetes.reflector import Reflector
from dashboard.platforms.kubernetes.room_watch import ROOM_WATCHES, RoomWatch
from dashboard.settings import MANIFESTS_DIR

if TYPE_CHECKING:
    from dashboard.settings import Settings

JSON = dict[str, Any]
REDIS_PORT = 6379
FRONTEND_PORT = 80
CHECK_INTERVAL = 0.25  # a step's check reads the API server: four times a second at most
STEP_TIMEOUT = 300.0  # image pulls and scheduling on a real cluster take minutes
QUOTA_GRACE = 5.0  # seconds a quota refusal may last before a step's check fails on it
# The tutorial's six manifests in its order, as `kubectl apply -k manifests/` applies them.
LAB_MANIFESTS: tuple[str, ...] = tuple(yaml.safe_load((MANIFESTS_DIR / "kustomization.yaml").read_text())["resources"])


class KubernetesPlatform:
    """The lab on a Kubernetes cluster (see the module docstring)."""

    name: PlatformName = "kubernetes"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.namespace = settings.namespace
        self.capabilities = Capabilities(
            label="Kubernetes",
            namespace=settings.namespace,
            has_events=True,
            has_access_review=True,
            expose_modes=("port-forward", "nodeport", "loadbalancer"),
            isolates_labs=True,
        )
        self.timing = Timing(CHECK_INTERVAL, settings.step_timeout or STEP_TIMEOUT)
        self._cluster: ClusterConfig | None = None
        self._api: Api | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[Listener] = []
        self._event_listeners: list[Listener] = []
        self._pods: list[Pod] = []
        self._pods_changed = asyncio.Event()
        self._pod_watch: Reflector | None = None
        self._event_watch: Reflector | None = None
        self._forwards: dict[tuple[str, int], PortForward] = {}
        self._expose_forward: PortForward | None = None
        self._frontend_url: str | None = None
        self._expose_note: str | None = None
        self._round_robin = itertools.count()
        self._access = RedisAccessChoice(settings.redis_access, REDIS_PORT)
        self._start_error: DashboardError | None = None  # why start() failed: no pod watch, so no pods to wait for
        self._room: str | None = None  # a workshop learner's lab: its room (see prepare_learner)
        self._room_watch: RoomWatch | None = None
        self._refused_since: dict[str, float] = {}  # deployment -> when a quota refusal was first seen

    # ----------------------------------------------------------------------------- lifecycle

    @property
    def api(self) -> Api:
        if self._api is None:
            self._cluster = load_cluster_config(self.settings)
            self._api = Api(self._cluster, self.namespace)
        return self._api

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._ensure_namespace)  # its first request loads the configuration
        if self._room is not None:  # a workshop learner: the room's shared watches
            room = ROOM_WATCHES.join(self.api.cluster, self._room, self.namespace)
            self._room_watch = room
            room.subscribe(self.namespace, self._on_pods, self._on_events)
            error = await _failed_first_list(room.pods)
            if error is not None:
                await self.close()
                raise error
            return
        if self._pod_watch is None:
            self._pod_watch = Reflector(
                self.api, api_path("Pod", self.namespace), "pods", self._on_pods, objects.POD_WATCH_SELECTOR
            )
            self._pod_watch.start()
            self._event_watch = Reflector(
                self.api, f"/api/v1/namespaces/{self.namespace}/events", "events", self._on_events
            )
            self._event_watch.start()
        self._start_error = await _failed_first_list(self._pod_watch)
        if self._start_error is not None:
            await self.close()
            raise self._start_error

    async def close(self) -> None:
        for forward in [*self._forwards.values(), *([self._expose_forward] if self._expose_forward else [])]:
            forward.close()
        self._forwards.clear()
        self._expose_forward = None
        room, self._room_watch = self._room_watch, None
        if room is not None:
            await asyncio.to_thread(ROOM_WATCHES.leave, room, self.namespace)
        watches = [w for w in (self._pod_watch, self._event_watch) if w is not None]
        self._pod_watch = self._event_watch = None
        for watch in watches:
            await asyncio.to_thread(watch.stop)
        if self._api is not None:
            self._api.close()
            self._api = None

    def _ensure_namespace(self) -> None:
        status, body = self.api.request(
            "GET", api_path("Namespace", "", self.namespace), verb="get", resource="namespaces", ok=(403, 404)
        )
        if status == 403:
            return  # a namespaced Role cannot read Namespaces; the watch's list tells whether we may work here
        if status == 404:
            if not self.settings.create_namespace:
                raise translate_status(404, body, namespace=self.namespace)
            namespace = {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": self.namespace, "labels": {objects.LAB_LABEL_KEY: objects.LAB_LABEL_VALUE}},
            }
            self.api.request(
                "POST",
                api_path("Namespace", ""),
                verb="create",
                resource="namespaces",
                name=self.namespace,
                body=namespace,
            )
            return
        if (body.get("status") or {}).get("phase") == "Terminating":
            raise PlatformUnavailable(
                f"Namespace {self.namespace} is being deleted.",
                "Wait until it is gone (kubectl get namespace) or choose another with -n.",
            )

    # ---------------------------------------------------------------------------- pods, watch

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def add_event_listener(self, listener: Listener) -> None:
        self._event_listeners.append(listener)

    def _to_loop(self, callback: Callable[..., None], *args: object) -> None:
        """From a watch thread: run `callback(*args)` on the event loop, unless it is gone."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(callback, *args)

    def _on_pods(self, snapshot: dict[str, JSON]) -> None:
        self._to_loop(self._set_pods, snapshot)

    def _on_events(self, _: dict[str, JSON]) -> None:
        self._to_loop(notify, self._event_listeners, "event")

    def _set_pods(self, snapshot: dict[str, JSON]) -> None:
        pods = objects.lab_pods(snapshot.values())
        if pods == self._pods:
            return
        self._pods = pods
        alive = {p.name for p in pods if not p.deleting}
        for key in [k for k in self._forwards if k[0] not in alive]:
            self._forwards.pop(key).close()
        self._pods_changed.set()
        self._pods_changed = asyncio.Event()
        notify(self._listeners, "pod")

    async def get_pods(self) -> list[Pod]:
        return list(self._pods)

    def watch_stats(self) -> dict[str, object]:
        """How the pod watch is doing (lists, watches, last error): for the page and the benchmark."""
        room = self._room_watch  # a workshop learner: the room's shared watches (lists/watches: the pods watch's)
        watch = room.pods if room is not None else self._pod_watch
        if watch is None:
            return {"running": False}
        stats = {
            "running": True,
            "lists": watch.lists,
            "watches": watch.watches,
            "resource_version": watch.resource_version,
        }
        return stats | (room.stats() if room else {"error": watch.error.to_json() if watch.error else None})

    async def events(self, limit: int = 200) -> list[EventRow]:
        """The lab's events (core/v1, from the shared events watch), oldest first."""
        if self._room_watch is not None:
            return objects.event_timeline(self._room_watch.events_of(self.namespace), limit)
        watch = self._event_watch
        if watch is None:
            return []
        if watch.error is not None and watch.lists == 0:
            raise watch.error  # never listed (e.g. 403 on events): say so rather than show an empty timeline
        return objects.event_timeline(list(watch.cache.values()), limit)

    async def _pods_gone(self, timeout: float) -> bool:
        """Wait until the lab has no pods (the watch saw them deleted); False after `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while self._pods:
                    await self._pods_changed.wait()
        except TimeoutError:
            return False
        return True

    def _check_lab_pod(self, name: str) -> None:
        if any(pod.name == name for pod in self._pods):
            return
        raise PlatformError(
            f"Pod {name} is not one of the lab's pods in namespace {self.namespace}.",
            "Pick a pod from the pods board (kubectl get pods -l 'app in (redis,guestbook)').",
        )

    # ---------------------------------------------------------------------------------- apply

    async def apply(self, manifest: str) -> list[str]:
        file = Path(manifest).name
        if file not in LAB_MANIFESTS or not (MANIFESTS_DIR / file).is_file():
            raise BadRequest(
                f"{manifest} is not one of the lab's manifests.", f"Use one of: {', '.join(LAB_MANIFESTS)}."
            )
        docs = namespace.read_manifests(MANIFESTS_DIR, (file,))
        return [await asyncio.to_thread(self._apply_one, doc) for doc in docs]

    def _apply_one(self, manifest: JSON) -> str:
        kind = str(manifest.get("kind"))
        name = str((manifest.get("metadata") or {}).get("name"))
        if kind not in ("Deployment", "Service"):
            raise BadRequest(f"The lab does not apply {kind} objects.", "Only the tutorial's manifests are applied.")
        resource = objects.RESOURCES[kind][2]
        path = api_path(kind, self.namespace, name)
        status, existing = self.api.request("GET", path, verb="get", resource=resource, name=name, ok=(404,))
        if status == 200 and not objects.is_ours(existing, self.settings.field_manager):
            raise objects.foreign_object_error(kind, name, self.namespace, existing)
        image = self.settings.image_override(name) if kind == "Deployment" else None
        room = {namespace.ROOM_LABEL_KEY: self._room} if self._room is not None else None
        doc = objects.prepare_manifest(manifest, image, room)
        field_manager = self.settings.field_manager
        code, applied = self.api.patch(path, doc, resource=resource, name=name, field_manager=field_manager, apply=True)
        before = existing if status == 200 and code != 201 else None
        return f"{objects.kubectl_name(doc)} {objects.apply_word(before, applied)}"

    # ------------------------------------------------------------------------ scale, delete

    async def scale(self, deployment: str, replicas: int) -> list[str]:
        if deployment not in objects.LAB_DEPLOYMENTS:
            raise BadRequest(
                f"{deployment} is not a lab Deployment.", f"Use one of: {', '.join(objects.LAB_DEPLOYMENTS)}."
            )
        if not 0 <= replicas <= 20:
            raise BadRequest(f"{replicas} replicas is out of range.", "Choose between 0 and 20 replicas.")
        return [await asyncio.to_thread(self._scale, deployment, replicas)]

    def _scale(self, deployment: str, replicas: int) -> str:
        path = api_path("Deployment", self.namespace, deployment)
        _, existing = self.api.request("GET", path, verb="get", resource="deployment.apps", name=deployment)
        if not objects.is_ours(existing, self.settings.field_manager):
            raise objects.foreign_object_error("Deployment", deployment, self.namespace, existing)
        body = {"spec": {"replicas": replicas}}
        field_manager = self.settings.field_manager
        self.api.patch(
            path + "/scale", body, resource="deployments.apps/scale", name=deployment, field_manager=field_manager
        )
        return f"deployment.apps/{deployment} scaled"

    async def delete_pod(self, name: str) -> list[str]:
        self._check_lab_pod(name)
        path = api_path("Pod", self.namespace, name)
        await asyncio.to_thread(self.api.request, "DELETE", path, verb="delete", resource="pods", name=name)
        return [f'pod "{name}" deleted']

    async def delete_lab(self) -> list[str]:
        lines = await asyncio.to_thread(self._delete_lab_objects)
        if self._expose_forward is not None:
            self._expose_forward.close()
            self._expose_forward = None
        self._frontend_url = None
        self._expose_note = None
        timeout = self.timing.step_timeout
        if not await self._pods_gone(timeout):
            names = ", ".join(p.name for p in self._pods)
            raise PlatformError(
                f"The lab's pods are still there after {timeout:.0f} s: {names}.",
                "Check them with kubectl get pods; a node that is down keeps pods Terminating.",
            )
        return lines or [f"No resources found in {self.namespace} namespace."]

    def _delete_lab_objects(self) -> list[str]:
        lines: list[str] = []
        for target in objects.CLEANUP_TARGETS:
            _, plural, resource = objects.RESOURCES[target.kind]
            path = api_path(target.kind, self.namespace)
            query = {"labelSelector": target.label_selector, "fieldSelector": target.field_selector}
            _, found = self.api.request("GET", path, verb="list", resource=plural, query=query)
            for item in found.get("items") or []:
                item.setdefault("kind", target.kind)
                if not objects.cleanup_selects(target, item):  # never trust a selector the server may ignore
                    continue
                name = str(item["metadata"]["name"])
                options = {
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "propagationPolicy": "Background",
                    "preconditions": {"uid": item["metadata"]["uid"]},
                }
                status, _ = self.api.request(
                    "DELETE",
                    api_path(target.kind, self.namespace, name),
                    verb="delete",
                    resource=plural,
                    name=name,
                    body=options,
                    ok=(404, 409),
                )
                if status < 300:
                    lines.append(f'{resource} "{name}" deleted')
        return lines

    async def leftovers(self) -> list[str]:
        found = await asyncio.to_thread(self._leftover_objects)
        found += [f"pod/{p.name}" + (" (Terminating)" if p.deleting else "") for p in self._pods]
        return found

    def _leftover_objects(self) -> list[str]:
        names = []
        for kind in ("Deployment", "Service"):
            _, plural, resource = objects.RESOURCES[kind]
            query = {"labelSelector": objects.LAB_LABEL_SELECTOR}
            _, body = self.api.request("GET", api_path(kind, self.namespace), verb="list", resource=plural, query=query)
            names += [f"{resource}/{item['metadata']['name']}" for item in body.get("items") or []]
        return names

    # ------------------------------------------------------------------------- access to pods

    def _in_cluster(self) -> bool:
        """In a pod (the service account), as far as known: False before the configuration is loaded."""
        return self._cluster is not None and bool(self._cluster.in_cluster)

    def redis_access(self) -> RedisAccess:
        """How Redis and the frontend pods are reached, and why: pod IPs ("direct") or the API server's
        port-forward; `using` None while --redis-access auto waits for the first ready Redis pod."""
        return self._access.status(self._in_cluster())

    async def _decide_access(self) -> RedisAccess:
        """--redis-access auto outside a cluster: decide at the first ready Redis pod (see `access`)."""
        await self._access.decide(self._pods, self._in_cluster())
        return self.redis_access()

    def _forward_checked(self, pod: str, port: int) -> PortForward:
        """The forward to pod:port; raises its refusal when the API server refused it for good (see
        `errors.portforward_refusal`), so a step's check fails at once and the Redis panel shows why."""
        forward = self._forward_to(pod, port)
        if isinstance(forward.error, PlatformRefused):
            raise forward.error
        return forward

    def _forward_to(self, pod: str, port: int) -> PortForward:
        """The forward to pod:port, opened again when it was closed (its pod went away)."""
        forward = self._forwards.get((pod, port))
        if forward is None or forward.closed:
            forward = self._forwards[(pod, port)] = PortForward(self.api, lambda: pod, port)
        return forward

    def _pods_known(self) -> None:
        """Raise why there is no pod watch when start() failed for a reason that will not pass (403 on pods): a
        step's check would otherwise wait for pods it can never see."""
        if self._pod_watch is None and isinstance(self._start_error, PlatformRefused):
            raise self._start_error

    async def rollout_status(self, deployment: str, service: str) -> str | None:
        return await asyncio.to_thread(self._rollout_status, deployment, service)

    def _rollout_status(self, deployment: str, service: str) -> str | None:
        """`kubectl rollout status deployment/<deployment>`, then the Service's EndpointSlices: any ready address?"""
        path = api_path("Deployment", self.namespace, deployment)
        status, found = self.api.request(
            "GET", path, verb="get", resource="deployment.apps", name=deployment, ok=(404,)
        )
        if status == 404:
            return f'deployment "{deployment}" does not exist'
        self._check_admission(found)
        state = objects.deployment_state(found)
        if not state.rolled_out:
            return state.message
        _, slices = self.api.request(
            "GET",
            f"/apis/discovery.k8s.io/v1/namespaces/{self.namespace}/endpointslices",
            verb="list",
            resource="endpointslices.discovery.k8s.io",
            query={"labelSelector": f"kubernetes.io/service-name={service}"},
        )
        if not objects.ready_endpoints(slices):
            return f'service "{service}" has no ready endpoints yet'
        return None

    async def _reachable(self, frontend: bool, port: int) -> list[tuple[Pod, str, int]]:
        """(pod, host, port) of each ready frontend (or Redis) pod as dialled from here: pod IP or port-forward."""
        self._pods_known()
        direct = (await self._decide_access()).using == "direct"  # port-forwards also while auto has not decided
        return [
            (pod, pod.ip, port) if direct else (pod, "127.0.0.1", self._forward_checked(pod.name, port).port)
            for pod in self._pods
            if (pod.component == "frontend") == frontend and pod.ready and not pod.deleting and pod.ip
        ]

    async def redis_endpoints(self) -> list[RedisEndpoint]:
        reachable = await self._reachable(False, REDIS_PORT)
        return [RedisEndpoint(pod.name, pod.component, host, port) for pod, host, port in reachable]

    async def frontend_endpoints(self) -> list[str]:
        return [f"http://{host}:{port}" for _, host, port in await self._reachable(True, FRONTEND_PORT)]

    def _ready_frontend_pod(self) -> str | None:
        ready = [p.name for p in self._pods if p.component == "frontend" and p.ready and not p.deleting]
        if not ready:
            return None
        return ready[next(self._round_robin) % len(ready)]

    # --------------------------------------------------------------------------------- expose

    async def expose(self) -> str:
        service = await asyncio.to_thread(self._frontend_service)
        if not objects.is_ours(service, self.settings.field_manager):
            raise objects.foreign_object_error("Service", "frontend", self.namespace, service)
        mode = self.settings.expose_mode
        self._expose_note = None
        if mode == "nodeport":
            url = await asyncio.to_thread(self._expose_nodeport)
            if url:
                answered, why = await url_answers(url)
                if answered:
                    self._frontend_url = url
                    return url
                self._expose_note = nodeport_fallback_note(self._expose_note, url, why)
        elif mode == "loadbalancer":
            url = await self._expose_loadbalancer()
            if url:
                self._frontend_url = url
                return url
        await asyncio.to_thread(self._portforward_allowed)
        if self._expose_forward is None or self._expose_forward.closed:
            port = self.settings.frontend_port
            self._expose_forward = PortForward(self.api, self._ready_frontend_pod, FRONTEND_PORT, port)
        self._frontend_url = f"http://127.0.0.1:{self._expose_forward.port}"
        return self._frontend_url

    def _portforward_allowed(self) -> None:
        """One port-forward handshake to a ready frontend pod, closed at once: raises `PlatformRefused` when the API
        server refuses it for good (403 on pods/portforward...), so the expose step fails now and says why."""
        pod = self._ready_frontend_pod()
        if pod is None:
            return
        try:
            forward = self.api.portforward(pod, FRONTEND_PORT)
        except PlatformRefused:
            raise
        except DashboardError:
            return  # may pass (the pod is being replaced, the API server restarts): the step's check tells
        close_websocket(forward)

    def _frontend_service(self, service_type: str | None = None) -> JSON:
        """Service frontend as it is, or merge-patched to `service_type` (NodePort, LoadBalancer)."""
        path = api_path("Service", self.namespace, "frontend")
        if service_type is None:
            _, service = self.api.request("GET", path, verb="get", resource="service", name="frontend")
        else:
            body = {"spec": {"type": service_type}}
            _, service = self.api.patch(
                path, body, resource="service", name="frontend", field_manager=self.settings.field_manager
            )
        return dict(service)

    def _expose_nodeport(self) -> str | None:
        service = self._frontend_service("NodePort")
        node_port = next((p.get("nodePort") for p in service["spec"].get("ports") or [] if p.get("nodePort")), None)
        _, nodes = self.api.request("GET", "/api/v1/nodes", verb="list", resource="nodes", ok=(403,))
        address = None
        for node in nodes.get("items") or []:  # none in a 403's Status
            addresses = {a.get("type"): a.get("address") for a in node.get("status", {}).get("addresses") or []}
            address = addresses.get("ExternalIP") or addresses.get("InternalIP")
            if address:
                break
        if node_port and address:
            self._expose_note = f"Service frontend is type NodePort: port {node_port} on every node."
            return f"http://{address}:{node_port}"
        self._expose_note = (
            f"Service frontend is type NodePort (port {node_port}), but no node address is readable here; "
            "using a port-forward."
        )
        return None

    async def _expose_loadbalancer(self) -> str | None:
        await asyncio.to_thread(self._frontend_service, "LoadBalancer")
        deadline = time.monotonic() + min(30.0, self.timing.step_timeout)
        while True:
            service = await asyncio.to_thread(self._frontend_service)
            ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            if ingress:
                host = ingress[0].get("ip") or ingress[0].get("hostname")
                self._expose_note = f"Service frontend is type LoadBalancer: EXTERNAL-IP {host}."
                return f"http://{host}"
            if time.monotonic() >= deadline:
                self._expose_note = (
                    "Service frontend is type LoadBalancer but EXTERNAL-IP is still <pending> "
                    "(no load-balancer provider answered, as on kind, minikube or bare metal); using a port-forward."
                )
                return None
            await asyncio.sleep(2.0)

    def frontend_url(self) -> str | None:
        return self._frontend_url

    def expose_note(self) -> str | None:
        return self._expose_note

    def expose_command(self) -> str:
        forward = self._expose_forward
        if forward is not None and self._frontend_url == f"http://127.0.0.1:{forward.port}":
            return f"kubectl port-forward -n {self.namespace} svc/frontend {forward.port}:80"
        kind = {"nodeport": "NodePort", "loadbalancer": "LoadBalancer"}.get(self.settings.expose_mode, "ClusterIP")
        return f'kubectl patch -n {self.namespace} svc frontend -p \'{{"spec":{{"type":"{kind}"}}}}\''

    def expose_status(self) -> dict[str, object]:
        """How the frontend is published: mode, URL and what the cluster said (e.g. EXTERNAL-IP <pending>)."""
        forward = self._expose_forward
        return {
            "mode": self.settings.expose_mode,
            "url": self._frontend_url,
            "note": self._expose_note,
            "port_forward_error": forward.error.to_json() if forward and forward.error else None,
        }

    # ----------------------------------------------------------------------------------- logs

    async def logs(self, pod: str, tail: int = 200) -> list[LogLine]:
        self._check_lab_pod(pod)
        path = api_path("Pod", self.namespace, pod, "log")
        query = {"tailLines": max(1, min(int(tail), 5000)), "timestamps": "true"}
        _, text = await asyncio.to_thread(
            self.api.request, "GET", path, verb="get", resource="pods/log", name=pod, query=query, raw=True
        )
        lines = []
        for raw_line in str(text).splitlines():
            stamp, _, rest = raw_line.partition(" ")
            when = objects.parse_time(stamp)  # RFC 3339 with nanoseconds, which fromisoformat truncates
            lines.append(LogLine(pod, when, rest) if when is not None else LogLine(pod, time.time(), raw_line))
        return lines

    # ------------------------------------------------------------------------------ preflight

    async def preflight(self) -> dict[str, Any]:
        """Context, server version, namespace, and for each verb the lab needs whether this identity may do it."""
        report = await preflight(
            lambda: self.api, create_namespace=self.settings.create_namespace, redis_access=self._decide_access
        )
        if self.settings.workshop and "error" not in report:
            # The ClusterRole's verbs (learner namespaces, cluster-wide watches) and the room's needs (with the
            # workshop profile a learner runs one frontend replica: 4 pods, not 6).
            profile = {"frontend": 1} if self.settings.workshop_profile else None
            requests = namespace.lab_requests(namespace.read_manifests(MANIFESTS_DIR, LAB_MANIFESTS), profile)
            report = await workshop_preflight(self.api, report, requests, self.settings.max_learners)
        return report

    # ------------------------------------------------------------------------ workshop rooms

    async def prepare_learner(self, room: str) -> list[str]:
        """Make this lab a workshop learner's own, before `start()`: server-side apply its namespace (labelled with
        the room, Pod Security labels), ResourceQuota, LimitRange, NetworkPolicy, ServiceAccount, Role and
        RoleBinding; from then on the room's label goes on what the lab applies, and pods and events are read from
        the room's shared watches."""
        self._room = room
        requests = namespace.lab_requests(namespace.read_manifests(MANIFESTS_DIR, LAB_MANIFESTS))
        docs = namespace.learner_objects(self.namespace, room, requests, self.settings.expose_mode)
        api = await asyncio.to_thread(lambda: self.api)
        return await asyncio.to_thread(
            namespace.provision, api, self.namespace, room, docs, self.settings.field_manager
        )

    async def remove_learner(self) -> list[str]:
        """Undo `prepare_learner`: delete the learner's namespace, only if the dashboard created it for this room."""
        if self._room is None:
            return []
        return await asyncio.to_thread(namespace.remove, self.api, self.namespace, self._room)

    def _check_admission(self, deployment: JSON) -> None:
        """Fail the step's check at once when admission refuses the Deployment's pods (Pod Security, LimitRange), or
        when a quota refusal outlasts QUOTA_GRACE (pods that are terminating may free the quota meanwhile)."""
        name = str((deployment.get("metadata") or {}).get("name") or "")
        refusal = admission.refusal(deployment)
        if refusal is None or refusal.kind == admission.OTHER:
            self._refused_since.pop(name, None)
            return
        if refusal.kind == admission.QUOTA:
            first = self._refused_since.setdefault(name, time.monotonic())
            if time.monotonic() - first < QUOTA_GRACE:
                return
        self._refused_since.pop(name, None)
        raise PlatformRefused(refusal.message, refusal.hint)


async def _failed_first_list(watch: Reflector) -> DashboardError | None:
    """Why a pods watch could not list at all (say a 403), once its first attempt is over; None when it listed."""
    await asyncio.to_thread(watch.first_attempt.wait, 30.0)
    return watch.error if watch.error is not None and watch.lists == 0 else None
