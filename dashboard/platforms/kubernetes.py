"""The Kubernetes platform: the lab on a real cluster, driven with the official client as kubectl would drive it.

The only module of the package that imports `kubernetes`. Its role is I/O and nothing else: what to make of the
API's JSON lives in `k8s_objects` (pure functions). Shape:

- `_Api`: raw JSON requests through the client's `ApiClient` (kubeconfig/in-cluster auth, TLS, proxies), every
  library or HTTP error translated once into a `DashboardError` (`raise ... from exc`).
- `_Reflector`: list, then watch from that resourceVersion (bookmarks on); re-watch from the last resourceVersion
  when the server ends a watch, relist on 410 Gone or a broken watch. One per namespace and resource, in a thread,
  shared by every viewer: `get_pods()` reads its cache, never the API server.
- `_Forward`: a local listener on 127.0.0.1 whose connections go through the API server's pod port-forward
  (`kubectl port-forward`), either to one pod or to whichever matching pod is ready when a connection arrives.
- `KubernetesPlatform`: the `Platform` protocol (server-side apply with field manager and our label, scale,
  delete, label-narrowed cleanup, Redis/frontend access, expose), plus `events()`, `preflight()`, `expose_status()`.

Blocking client calls run in `asyncio.to_thread`; watch threads hand changes to the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import urllib3
import yaml
from kubernetes import client as k8s_client
from kubernetes import config as _kube_config
from kubernetes.config.config_exception import ConfigException
from kubernetes.stream import ws_client as _ws_client
from websocket import WebSocketBadStatusException, WebSocketException

from dashboard.errors import BadRequest, DashboardError, PlatformError, PlatformRefused, PlatformUnavailable
from dashboard.models import LogLine, PlatformName, Pod, RedisEndpoint
from dashboard.platforms import k8s_objects as objects
from dashboard.platforms.base import Listener
from dashboard.settings import MANIFESTS_DIR

if TYPE_CHECKING:
    from dashboard.settings import Settings

log = logging.getLogger(__name__)
k8s_config: Any = _kube_config  # kubernetes.config is untyped: keep its Any here
ws_client: Any = _ws_client  # so is kubernetes.stream.ws_client

JSON = dict[str, Any]
REDIS_PORT = 6379
FRONTEND_PORT = 80
REQUEST_TIMEOUT = (5.0, 30.0)
NODEPORT_CHECK_SECONDS = 3.0  # --expose nodeport: a NodePort URL that does not answer within this falls back
POD_IP_CONNECT_TIMEOUT = 0.5  # --redis-access auto outside a cluster: a pod IP that does not connect within this
WATCH_TIMEOUT_SECONDS = 290  # the server ends a watch after this; we then re-watch from the last resourceVersion
LAB_MANIFESTS = (
    "redis-leader-deployment.yaml",
    "redis-leader-service.yaml",
    "redis-follower-deployment.yaml",
    "redis-follower-service.yaml",
    "frontend-deployment.yaml",
    "frontend-service.yaml",
)


# ------------------------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class ClusterConfig:
    """Where the client talks to: kubeconfig context or the pod's service account."""

    configuration: Any  # kubernetes.client.Configuration
    context: str | None
    server: str
    in_cluster: bool
    source: str  # kubeconfig path(s) or "in-cluster service account"


def load_cluster_config(settings: Settings) -> ClusterConfig:
    """Like kubectl: --kubeconfig, else $KUBECONFIG, else ~/.kube/config; the pod's service account when
    running in a pod (KUBERNETES_SERVICE_HOST) and no kubeconfig is given. --context picks the context."""
    configuration = k8s_client.Configuration()
    if settings.kubeconfig:
        paths = [str(settings.kubeconfig.expanduser())]
    elif os.environ.get("KUBECONFIG"):
        paths = [p for p in os.environ["KUBECONFIG"].split(os.pathsep) if p]
    else:
        paths = [] if os.environ.get("KUBERNETES_SERVICE_HOST") else [str(Path("~/.kube/config").expanduser())]
    existing = [p for p in paths if Path(p).expanduser().is_file()]
    if not existing:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not settings.kubeconfig:
            try:
                k8s_config.load_incluster_config(client_configuration=configuration)
            except ConfigException as exc:
                raise PlatformUnavailable(
                    f"The pod's service account cannot be used ({exc}).",
                    "Mount a service account token (automountServiceAccountToken: true) or pass --kubeconfig.",
                ) from exc
            return ClusterConfig(configuration, None, str(configuration.host), True, "in-cluster service account")
        raise objects.kubeconfig_missing(paths or ["~/.kube/config"])
    config_file = os.pathsep.join(existing)
    try:
        contexts, active = k8s_config.list_kube_config_contexts(config_file=config_file)
    except (ConfigException, OSError, yaml.YAMLError) as exc:
        raise objects.bad_kubeconfig(config_file, str(exc)) from exc
    names = [str(c.get("name")) for c in contexts or []]
    if settings.context and settings.context not in names:
        raise objects.unknown_context(settings.context, names)
    context = settings.context or (str(active.get("name")) if active else None)
    if not context:
        raise PlatformUnavailable(
            f"The kubeconfig {config_file} has no current context.",
            "Pick one with --context (kubectl config get-contexts lists them).",
        )
    try:
        k8s_config.load_kube_config(
            config_file=config_file, context=context, client_configuration=configuration, persist_config=False
        )
    except (ConfigException, OSError, ValueError) as exc:
        raise objects.bad_kubeconfig(config_file, str(exc)) from exc
    return ClusterConfig(configuration, context, str(configuration.host), False, config_file)


# ------------------------------------------------------------------------------------- raw requests


class _Api:
    """Raw JSON requests through the client's ApiClient; every error leaves as a `DashboardError`."""

    def __init__(self, cluster: ClusterConfig, namespace: str) -> None:
        cluster.configuration.connection_pool_maxsize = 32
        self.cluster = cluster
        self.namespace = namespace
        self.api_client: Any = k8s_client.ApiClient(cluster.configuration)
        self.api_client.user_agent = "guestbook-lab-dashboard"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.api_client.close()

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: Any = REQUEST_TIMEOUT,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        request = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=[(k, v) for k, v in (query or {}).items() if v is not None],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            return self.api_client.call_api(*request, _request_timeout=timeout)
        except k8s_client.ApiException as exc:  # status 0: TLS and request-building errors
            raise objects.connection_error(self.cluster.server, str(exc.reason or exc)) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise objects.connection_error(self.cluster.server, str(exc)) from exc

    def request(
        self,
        method: str,
        path: str,
        *,
        verb: str,
        resource: str,
        name: str = "",
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str | None = None,
        ok: tuple[int, ...] = (),
        raw: bool = False,
    ) -> tuple[int, Any]:
        """(status, parsed JSON body | text when raw). Non-2xx statuses not in `ok` raise the translated error."""
        response = self._call(method, path, query=query, body=body, content_type=content_type)
        try:
            data = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise objects.connection_error(self.cluster.server, str(exc)) from exc
        status = int(response.status)
        if 200 <= status <= 299 or status in ok:
            if raw:
                return status, data.decode("utf-8", "replace")
            try:
                return status, json.loads(data) if data else {}
            except ValueError as exc:
                raise PlatformError(
                    f"The API server answered {verb} {resource} with something that is not JSON.",
                    "Check that --kubeconfig points at a Kubernetes API server, not a proxy or web page.",
                ) from exc
        retry_after = response.getheader("Retry-After") if hasattr(response, "getheader") else None
        translated = objects.translate_status(
            status,
            data,
            verb=verb,
            resource=resource,
            name=name,
            namespace=self.namespace if "/namespaces/" in path else "",
            retry_after=retry_after,
        )
        raise forbidden_for_good(status, translated)

    def open_watch(self, path: str, query: dict[str, Any], resource: str) -> Any:
        """Start a watch; returns the urllib3 response to read NDJSON lines from."""
        read_timeout = float(query.get("timeoutSeconds") or WATCH_TIMEOUT_SECONDS) + 30.0
        response = self._call("GET", path, query=query, timeout=(5.0, read_timeout))
        if not 200 <= int(response.status) <= 299:
            data = response.read()
            raise objects.translate_status(
                int(response.status), data, verb="watch", resource=resource, namespace=self.namespace
            )
        return response.response  # the urllib3 response, unread

    def portforward(self, pod: str, port: int) -> Any:
        """A `kubernetes.stream.ws_client.PortForward` to pod:port: a websocket (`v4.channel.k8s.io`) through the
        API server's pods/portforward subresource, as `kubectl port-forward` opens it.

        Built from the client's own pieces rather than with `kubernetes.stream.portforward`, which swaps
        `call_api` on the *shared* ApiClient while the websocket opens: a request another thread makes meanwhile
        (a watch, an apply) would go out as a websocket, and two forwards opening at once can leave the swap in
        place for good. Handshake errors keep their HTTP status (403, 404...) for the translation.
        """
        path = _path("Pod", self.namespace, pod, "portforward")
        try:
            _, url, headers, _, _ = self.api_client.param_serialize(
                method="GET",
                resource_path=path,
                query_params=[("ports", str(port))],
                header_params={},
                auth_settings=["BearerToken"],
            )
            url = ws_client.get_websocket_url(url)
            websocket = ws_client.create_websocket(self.cluster.configuration, url, headers)
        except WebSocketBadStatusException as exc:
            code = int(exc.status_code)
            translated = objects.translate_status(
                code,
                exc.resp_body or b"",
                verb="create",
                resource="pods" if code == 404 else "pods/portforward",
                name=pod,
                namespace=self.namespace,
            )
            raise portforward_refusal(code, exc.resp_body or b"", pod, translated) or translated from exc
        except (WebSocketException, k8s_client.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise objects.connection_error(self.cluster.server, str(exc)) from exc
        return ws_client.PortForward(websocket, [port])


def forbidden_for_good(status: int, error: DashboardError) -> DashboardError:
    """A 403 (RBAC said no) as `PlatformRefused`: a step's check that meets it fails at once with its sentence
    instead of retrying until the step timeout; every other error unchanged."""
    if status == 403 and not isinstance(error, PlatformRefused):
        return PlatformRefused(error.message, error.hint)
    return error


def portforward_refusal(code: int, body: bytes | str, pod: str, translated: DashboardError) -> PlatformRefused | None:
    """A port-forward upgrade the API server refuses for a reason that waiting will not change, as one sentence and
    its fix; None for anything that may pass (a pod still starting, a 5xx while the kubelet restarts)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    direct = "or use --redis-access direct where pod IPs are reachable from here"
    if code == 403:
        return PlatformRefused(
            translated.message,
            f"Allow 'get' and 'create' on pods/portforward (manifests/dashboard/role.yaml), {direct}.",
        )
    if "no preferred addresses" in text or "unable to upgrade connection" in text:
        detail = str(objects.status_of(text).get("message") or "").strip() or text.strip()[:200]
        return PlatformRefused(
            f"The API server cannot open a port-forward to pod {pod}: {detail.rstrip('.')}.",
            "The API server finds no address it may use for the node's kubelet: check the node's addresses "
            f"(kubectl get node -o wide) against the API server's --kubelet-preferred-address-types, {direct}.",
        )
    return None


async def pod_ip_answers(host: str, port: int, timeout: float = POD_IP_CONNECT_TIMEOUT) -> tuple[bool, str]:
    """(reachable, what happened): a TCP connect to host:port with a short deadline (for --redis-access auto).

    A refused connection counts as reachable: the pod's own network stack answered (Redis was not listening yet),
    so the route to pod IPs works. A timeout, "No route to host" or "Network is unreachable" does not."""
    started = time.monotonic()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        return False, f"no answer within {timeout:g} s"
    except ConnectionRefusedError:
        return True, "the pod refused the connection: its IP is reachable, Redis was not listening yet"
    except OSError as exc:
        return False, exc.strerror or type(exc).__name__
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, f"connected in {(time.monotonic() - started) * 1000:.0f} ms"


async def url_answers(url: str, seconds: float) -> tuple[bool, str]:
    """(answered, why not): any HTTP answer from `url` within `seconds` (tried again every 0.5 s, as kube-proxy may
    still be programming a new NodePort); `why` is the last failure, e.g. "ConnectError: All connection attempts
    failed"."""
    deadline = time.monotonic() + seconds
    why = "not tried"
    async with httpx.AsyncClient(timeout=min(2.0, seconds), trust_env=False) as client:
        while True:
            try:
                await client.get(url)
                return True, ""
            except httpx.HTTPError as exc:
                why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if time.monotonic() + 0.5 >= deadline:
                return False, why
            await asyncio.sleep(0.5)


def nodeport_fallback_note(note: str | None, url: str, why: str) -> str:
    """What the expose step says when the NodePort URL does not answer and a port-forward is used instead."""
    return (
        f"{note or 'Service frontend is type NodePort.'} But {url} does not answer within "
        f"{NODEPORT_CHECK_SECONDS:g} s ({why.rstrip('.')}): nothing serves NodePorts on this node (no kube-proxy, or "
        "a firewall); using a port-forward to a ready frontend pod instead."
    )


def _path(kind: str, namespace: str, name: str = "", subresource: str = "") -> str:
    prefix, plural, _ = objects.RESOURCES[kind]
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


# ------------------------------------------------------------------------------------------- watch


class _Reflector:
    """List, then watch from that resourceVersion, in one thread; keeps `cache` (name -> object) current.

    A watch the server ends normally (timeoutSeconds) is resumed from the last resourceVersion (bookmarks keep
    it fresh); a 410 Gone ERROR event, or a watch that fails, leads to a relist. `on_change(snapshot)` is
    called from the thread after the initial list and after every event.
    """

    def __init__(
        self,
        api: _Api,
        path: str,
        resource: str,
        on_change: Callable[[dict[str, JSON]], None],
        label_selector: str | None = None,
    ) -> None:
        self.api = api
        self.path = path
        self.resource = resource
        self.label_selector = label_selector
        self.on_change = on_change
        self.cache: dict[str, JSON] = {}
        self.resource_version = ""
        self.error: DashboardError | None = None
        self.lists = 0
        self.watches = 0
        self.first_attempt = threading.Event()  # set after the first list, successful or not
        self._stop = threading.Event()
        self._response: Any = None
        self._thread = threading.Thread(target=self._run, name=f"watch {resource} -n {api.namespace}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()
            with contextlib.suppress(Exception):
                response.release_conn()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._list()
                self.error = None
                backoff = 0.5
                while not self._stop.is_set() and self._watch():
                    pass
            except DashboardError as exc:
                self.error = exc
                log.warning("watch %s: %s", self.resource, exc.message)
            except Exception as exc:
                self.error = PlatformError(f"The {self.resource} watch failed ({exc}).", "It retries on its own.")
                log.exception("watch %s failed", self.resource)
            finally:
                self.first_attempt.set()
            if self._stop.wait(backoff + random.uniform(0, backoff / 2)):
                return
            backoff = min(backoff * 2, 30.0)

    def _list(self) -> None:
        query = {"labelSelector": self.label_selector}
        _, body = self.api.request("GET", self.path, verb="list", resource=self.resource, query=query)
        self.lists += 1
        self.cache = {str(item["metadata"]["name"]): item for item in body.get("items") or []}
        self.resource_version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        self.on_change(dict(self.cache))
        self.first_attempt.set()

    def _watch(self) -> bool:
        """One watch request. True: resume watching from the last resourceVersion; False: relist."""
        query = {
            "watch": "true",
            "labelSelector": self.label_selector,
            "resourceVersion": self.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": WATCH_TIMEOUT_SECONDS + random.randint(0, WATCH_TIMEOUT_SECONDS // 10),
        }
        response = self.api.open_watch(self.path, query, self.resource)
        self._response = response
        self.watches += 1
        try:
            if self._stop.is_set():  # stop() ran while the watch was being opened
                return False
            for line in _lines(response):
                if self._stop.is_set():
                    return False
                event = json.loads(line)
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    code = int(obj.get("code") or 0)
                    if code == 410:
                        log.info("watch %s: %s; relisting", self.resource, obj.get("message"))
                        return False
                    raise objects.translate_status(code or 500, obj, verb="watch", resource=self.resource)
                rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
                if rv:
                    self.resource_version = rv
                if kind == "BOOKMARK":
                    continue
                name = str(obj["metadata"]["name"])
                if kind == "DELETED":
                    self.cache.pop(name, None)
                else:
                    self.cache[name] = obj
                self.on_change(dict(self.cache))
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if self._stop.is_set():
                return False
            log.info("watch %s broke (%s); relisting", self.resource, exc)
            return False
        finally:
            self._response = None
            with contextlib.suppress(Exception):
                response.close()
        return not self._stop.is_set()  # the server ended the watch: resume from resource_version


def _lines(response: Any) -> Iterator[bytes]:
    """NDJSON lines of a streaming (chunked) response, as they arrive."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=True):
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield line
    if pending.strip():
        yield pending


# ------------------------------------------------------------------------------------- port-forward


class _Forward:
    """A listener on 127.0.0.1:`port`; each connection is piped through the API server's pod port-forward to
    `remote_port` of the pod `target()` names at that moment (so a forward follows replacements of its pod)."""

    def __init__(self, api: _Api, target: Callable[[], str | None], remote_port: int, port: int = 0) -> None:
        self.api = api
        self.target = target
        self.remote_port = remote_port
        self.error: DashboardError | None = None
        self.connections = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind(("127.0.0.1", port))
        except OSError as exc:
            self._listener.close()
            raise PlatformError(
                f"Local port {port} is already in use, so the port-forward cannot listen on it.",
                "Free the port or choose another with --frontend-port (0 picks a free one).",
            ) from exc
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._closed = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name=f"port-forward :{self.port}", daemon=True).start()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for conn in list(self._open):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(conn,), daemon=True).start()

    def _pipe(self, conn: socket.socket) -> None:
        with self._lock:
            self._open.add(conn)
        forward: Any = None
        try:
            pod = self.target()
            if pod is None:
                self.error = PlatformError("No ready pod to forward to.", "Wait until the pods are Ready.")
                return
            forward = self.api.portforward(pod, self.remote_port)
            remote = forward.socket(self.remote_port)
            self.connections += 1
            _pump(conn, remote, self._closed)
            # The kubelet reports a failed dial inside the pod on the port's error channel, then closes.
            failure = forward.error(self.remote_port)
            if failure:
                raise PlatformError(
                    f"The port-forward to pod {pod} port {self.remote_port} failed: {failure.strip()}.",
                    "Check that the container listens on that port (kubectl logs, kubectl describe pod).",
                )
            self.error = None
        except DashboardError as exc:
            self.error = exc
            log.warning("port-forward :%s: %s", self.port, exc.message)
        except Exception as exc:
            log.warning("port-forward :%s: %s", self.port, exc)
        finally:
            with self._lock:
                self._open.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()
            if forward is not None:
                with contextlib.suppress(Exception):
                    forward.close()


def _pump(local: socket.socket, remote: Any, closed: threading.Event) -> None:
    """Copy bytes both ways until either side closes."""
    sockets = [local, remote]
    while not closed.is_set():
        readable, _, _ = select.select(sockets, [], [], 1.0)
        for sock in readable:
            try:
                data = sock.recv(65536)
                if not data:
                    return
                (remote if sock is local else local).sendall(data)
            except OSError:  # a reset or a pipe the other side closed ends the copy like an EOF
                return


# ------------------------------------------------------------------------------------------ platform

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


class KubernetesPlatform:
    """The lab on a Kubernetes cluster (see the module docstring)."""

    name: PlatformName = "kubernetes"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.namespace = settings.namespace
        self._cluster: ClusterConfig | None = None
        self._api: _Api | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[Listener] = []
        self._event_listeners: list[Listener] = []
        self._pods: list[Pod] = []
        self._pod_objects: dict[str, JSON] = {}
        self._pods_changed = asyncio.Event()
        self._pod_watch: _Reflector | None = None
        self._event_watch: _Reflector | None = None
        self._forwards: dict[tuple[str, int], _Forward] = {}
        self._expose_forward: _Forward | None = None
        self._frontend_url: str | None = None
        self._expose_note: str | None = None
        self._round_robin = itertools.count()
        self._auto_access: tuple[str, str] | None = None  # --redis-access auto, once decided: (mode, why)
        self._start_error: DashboardError | None = None  # why start() failed: no pod watch, so no pods to wait for

    # ----------------------------------------------------------------------------- lifecycle

    @property
    def api(self) -> _Api:
        if self._api is None:
            self._cluster = load_cluster_config(self.settings)
            self._api = _Api(self._cluster, self.namespace)
        return self._api

    @property
    def in_cluster(self) -> bool:
        return bool(self.api.cluster.in_cluster)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(lambda: self.api)
        await asyncio.to_thread(self._ensure_namespace)
        if self._pod_watch is None:
            self._pod_watch = _Reflector(
                self.api, _path("Pod", self.namespace), "pods", self._on_pods, objects.POD_WATCH_SELECTOR
            )
            self._pod_watch.start()
            self._event_watch = _Reflector(
                self.api, f"/api/v1/namespaces/{self.namespace}/events", "events", self._on_events
            )
            self._event_watch.start()
        watch = self._pod_watch
        await asyncio.to_thread(watch.first_attempt.wait, 30.0)
        if watch.error is not None and watch.lists == 0:
            error = watch.error
            await self.close()
            self._start_error = error
            raise error
        self._start_error = None

    async def close(self) -> None:
        for forward in [*self._forwards.values(), *([self._expose_forward] if self._expose_forward else [])]:
            forward.close()
        self._forwards.clear()
        self._expose_forward = None
        watches = [w for w in (self._pod_watch, self._event_watch) if w is not None]
        self._pod_watch = self._event_watch = None
        for watch in watches:
            await asyncio.to_thread(watch.stop)
        if self._api is not None:
            self._api.close()
            self._api = None

    def _ensure_namespace(self) -> None:
        status, body = self.api.request(
            "GET", f"/api/v1/namespaces/{self.namespace}", verb="get", resource="namespaces", ok=(403, 404)
        )
        if status == 403:
            return  # a namespaced Role cannot read Namespaces; the watch's list tells whether we may work here
        if status == 404:
            if not self.settings.create_namespace:
                raise objects.translate_status(404, body, namespace=self.namespace)
            namespace = {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": self.namespace, "labels": {objects.LAB_LABEL_KEY: objects.LAB_LABEL_VALUE}},
            }
            self.api.request(
                "POST", "/api/v1/namespaces", verb="create", resource="namespaces", name=self.namespace, body=namespace
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

    def _on_pods(self, snapshot: dict[str, JSON]) -> None:
        """From the watch thread: hand the new cache to the event loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._set_pods, snapshot)

    def add_event_listener(self, listener: Listener) -> None:
        """Call `listener()` on the event loop whenever the namespace's events change (the events timeline)."""
        self._event_listeners.append(listener)

    def _on_events(self, _: dict[str, JSON]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._events_changed)

    def _events_changed(self) -> None:
        for listener in list(self._event_listeners):
            try:
                listener()
            except Exception:
                log.exception("event listener failed")

    def _set_pods(self, snapshot: dict[str, JSON]) -> None:
        self._pod_objects = {name: pod for name, pod in snapshot.items() if objects.is_lab_pod(pod)}
        pods = objects.lab_pods(self._pod_objects.values())
        if pods == self._pods:
            return
        self._pods = pods
        alive = {p.name for p in pods if not p.deleting}
        for key in [k for k in self._forwards if k[0] not in alive]:
            self._forwards.pop(key).close()
        self._pods_changed.set()
        self._pods_changed = asyncio.Event()
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("pod listener failed")

    async def get_pods(self) -> list[Pod]:
        return list(self._pods)

    def watch_stats(self) -> dict[str, object]:
        """How the pod watch is doing (lists, watches, last error): for the page and the benchmark."""
        watch = self._pod_watch
        if watch is None:
            return {"running": False}
        return {
            "running": True,
            "lists": watch.lists,
            "watches": watch.watches,
            "resource_version": watch.resource_version,
            "error": watch.error.to_json() if watch.error else None,
        }

    async def events(self, limit: int = 200) -> list[objects.EventRow]:
        """The lab's events (core/v1, from the shared events watch), oldest first."""
        watch = self._event_watch
        if watch is None:
            return []
        if watch.error is not None and watch.lists == 0:
            raise watch.error  # never listed (e.g. 403 on events): say so rather than show an empty timeline
        return objects.event_timeline(list(watch.cache.values()), limit)

    async def _wait_pods(self, done: Callable[[list[Pod]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done(self._pods):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pods_changed.wait(), remaining)
        return True

    def _lab_pod(self, name: str) -> Pod:
        for pod in self._pods:
            if pod.name == name:
                return pod
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
        docs = [d for d in yaml.safe_load_all((MANIFESTS_DIR / file).read_text()) if d]
        lines = []
        for doc in docs:
            lines.append(await asyncio.to_thread(self._apply_one, doc))
        return lines

    def _apply_one(self, manifest: JSON) -> str:
        kind = str(manifest.get("kind"))
        name = str((manifest.get("metadata") or {}).get("name"))
        if kind not in ("Deployment", "Service"):
            raise BadRequest(f"The lab does not apply {kind} objects.", "Only the tutorial's manifests are applied.")
        resource = objects.RESOURCES[kind][2]
        path = _path(kind, self.namespace, name)
        status, existing = self.api.request("GET", path, verb="get", resource=resource, name=name, ok=(404,))
        before = None
        if status == 200:
            if not objects.is_ours(existing, self.settings.field_manager):
                raise objects.foreign_object_error(kind, name, self.namespace, existing)
            before = str(existing["metadata"].get("resourceVersion"))
        image = self.settings.image_override(name) if kind == "Deployment" else None
        doc = objects.prepare_manifest(manifest, image)
        status, applied = self.api.request(
            "PATCH",
            path,
            verb="patch",
            resource=resource,
            name=name,
            query={"fieldManager": self.settings.field_manager, "force": "true"},
            body=json.dumps(doc),
            content_type="application/apply-patch+yaml",
        )
        after = str((applied.get("metadata") or {}).get("resourceVersion"))
        if status == 201 or before is None:
            word = "created"
        elif after == before:
            word = "unchanged"
        else:
            word = "configured"
        return f"{objects.kubectl_name(doc)} {word}"

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
        path = _path("Deployment", self.namespace, deployment)
        _, existing = self.api.request("GET", path, verb="get", resource="deployment.apps", name=deployment)
        if not objects.is_ours(existing, self.settings.field_manager):
            raise objects.foreign_object_error("Deployment", deployment, self.namespace, existing)
        self.api.request(
            "PATCH",
            path + "/scale",
            verb="patch",
            resource="deployments.apps/scale",
            name=deployment,
            query={"fieldManager": self.settings.field_manager},
            body={"spec": {"replicas": replicas}},
            content_type="application/merge-patch+json",
        )
        return f"deployment.apps/{deployment} scaled"

    async def delete_pod(self, name: str) -> list[str]:
        self._lab_pod(name)
        path = _path("Pod", self.namespace, name)
        await asyncio.to_thread(self.api.request, "DELETE", path, verb="delete", resource="pods", name=name)
        return [f'pod "{name}" deleted']

    async def delete_lab(self) -> list[str]:
        lines = await asyncio.to_thread(self._delete_lab_objects)
        if self._expose_forward is not None:
            self._expose_forward.close()
            self._expose_forward = None
        self._frontend_url = None
        self._expose_note = None
        timeout = self.settings.timeout_for_steps()
        if not await self._wait_pods(lambda pods: not pods, timeout):
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
            path = _path(target.kind, self.namespace)
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
                    _path(target.kind, self.namespace, name),
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
            _, body = self.api.request("GET", _path(kind, self.namespace), verb="list", resource=plural, query=query)
            names += [f"{resource}/{item['metadata']['name']}" for item in body.get("items") or []]
        return names

    # ------------------------------------------------------------------------- access to pods

    def _access_direct(self) -> bool:
        return self.redis_access_status()["using"] == "direct"

    def redis_access_status(self) -> dict[str, object]:
        """How Redis and the frontend pods are reached, and why: {"mode": the setting, "using": "direct" |
        "port-forward" | None (auto, not decided until a Redis pod is ready), "reason": one sentence}."""
        mode = self.settings.redis_access
        if mode == "direct":
            return {"mode": mode, "using": "direct", "reason": "--redis-access direct: the dashboard dials pod IPs."}
        if mode == "port-forward":
            reason = "--redis-access port-forward: every connection goes through the API server's pod port-forward."
            return {"mode": mode, "using": "port-forward", "reason": reason}
        if self._cluster is not None and self._cluster.in_cluster:
            return {"mode": mode, "using": "direct", "reason": "auto, in a pod: pod IPs are routable from a pod."}
        if self._auto_access is None:
            reason = (
                "auto: decided at the first ready Redis pod (a TCP connect to its pod IP within "
                f"{POD_IP_CONNECT_TIMEOUT:g} s, else the API server's port-forward)."
            )
            return {"mode": mode, "using": None, "reason": reason}
        using, reason = self._auto_access
        return {"mode": mode, "using": using, "reason": reason}

    async def _decide_access(self) -> None:
        """--redis-access auto outside a cluster: the first ready Redis pod's IP, if it connects, else port-forward."""
        if self.settings.redis_access != "auto" or self._auto_access is not None or self.in_cluster:
            return
        pod = next((p for p in self._pods if p.component != "frontend" and p.ready and not p.deleting and p.ip), None)
        if pod is None or pod.ip is None:
            return
        connected, what = await pod_ip_answers(pod.ip, REDIS_PORT)
        if connected:
            why = (
                f"auto: pod IP {pod.ip}:{REDIS_PORT} of {pod.name} answers from here ({what}), so pod IPs are dialled."
            )
            self._auto_access = ("direct", why)
        else:
            why = (
                f"auto: pod IP {pod.ip}:{REDIS_PORT} of {pod.name} does not answer from here ({what}), "
                "so connections go through the API server's port-forward."
            )
            self._auto_access = ("port-forward", why)
        log.info("%s", why)

    def _forward_checked(self, pod: str, port: int) -> _Forward:
        """The forward to pod:port; raises its refusal when the API server refused it for good (see
        `portforward_refusal`), so a step's check fails at once and the Redis panel shows why."""
        forward = self._forward_to(pod, port)
        if isinstance(forward.error, PlatformRefused):
            raise forward.error
        return forward

    def _forward_to(self, pod: str, port: int) -> _Forward:
        key = (pod, port)
        forward = self._forwards.get(key)
        if forward is None or forward.closed:
            forward = _Forward(self.api, lambda: pod, port)
            self._forwards[key] = forward
        return forward

    async def rollout_status(self, deployment: str, service: str) -> str | None:
        return await asyncio.to_thread(self._rollout_status, deployment, service)

    def _rollout_status(self, deployment: str, service: str) -> str | None:
        """`kubectl rollout status deployment/<deployment>`, then the Service's EndpointSlices: any ready address?"""
        path = _path("Deployment", self.namespace, deployment)
        status, found = self.api.request(
            "GET", path, verb="get", resource="deployment.apps", name=deployment, ok=(404,)
        )
        if status == 404:
            return f'deployment "{deployment}" does not exist'
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

    def _pods_known(self) -> None:
        """Raise why there is no pod watch when start() failed for a reason that will not pass (403 on pods): a
        step's check would otherwise wait for pods it can never see."""
        if self._pod_watch is None and isinstance(self._start_error, PlatformRefused):
            raise self._start_error

    async def redis_endpoints(self) -> list[RedisEndpoint]:
        self._pods_known()
        await self._decide_access()
        endpoints = []
        for pod in self._pods:
            if pod.component == "frontend" or not pod.ready or pod.deleting or not pod.ip:
                continue
            if self._access_direct():
                endpoints.append(RedisEndpoint(pod.name, pod.component, pod.ip, REDIS_PORT))
            else:
                forward = self._forward_checked(pod.name, REDIS_PORT)
                endpoints.append(RedisEndpoint(pod.name, pod.component, "127.0.0.1", forward.port))
        return endpoints

    async def frontend_endpoints(self) -> list[str]:
        self._pods_known()
        await self._decide_access()
        urls = []
        for pod in self._pods:
            if pod.component != "frontend" or not pod.ready or pod.deleting or not pod.ip:
                continue
            if self._access_direct():
                urls.append(f"http://{pod.ip}:{FRONTEND_PORT}")
            else:
                urls.append(f"http://127.0.0.1:{self._forward_checked(pod.name, FRONTEND_PORT).port}")
        return urls

    def _ready_frontend_pod(self) -> str | None:
        ready = [p.name for p in self._pods if p.component == "frontend" and p.ready and not p.deleting]
        if not ready:
            return None
        return ready[next(self._round_robin) % len(ready)]

    # --------------------------------------------------------------------------------- expose

    async def expose(self) -> str:
        path = _path("Service", self.namespace, "frontend")
        _, service = await asyncio.to_thread(
            self.api.request, "GET", path, verb="get", resource="service", name="frontend"
        )
        if not objects.is_ours(service, self.settings.field_manager):
            raise objects.foreign_object_error("Service", "frontend", self.namespace, service)
        mode = self.settings.expose_mode
        self._expose_note = None
        if mode == "nodeport":
            url = await asyncio.to_thread(self._expose_nodeport)
            if url:
                answered, why = await url_answers(url, NODEPORT_CHECK_SECONDS)
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
        return self._expose_port_forward()

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
        with contextlib.suppress(Exception):
            forward.close()

    def _expose_port_forward(self) -> str:
        if self._expose_forward is None or self._expose_forward.closed:
            self._expose_forward = _Forward(
                self.api, self._ready_frontend_pod, FRONTEND_PORT, self.settings.frontend_port
            )
        self._frontend_url = f"http://127.0.0.1:{self._expose_forward.port}"
        return self._frontend_url

    def _patch_service_type(self, service_type: str) -> JSON:
        _, service = self.api.request(
            "PATCH",
            _path("Service", self.namespace, "frontend"),
            verb="patch",
            resource="service",
            name="frontend",
            query={"fieldManager": self.settings.field_manager},
            body={"spec": {"type": service_type}},
            content_type="application/merge-patch+json",
        )
        return dict(service)

    def _expose_nodeport(self) -> str | None:
        service = self._patch_service_type("NodePort")
        node_port = next((p.get("nodePort") for p in service["spec"].get("ports") or [] if p.get("nodePort")), None)
        status, nodes = self.api.request("GET", "/api/v1/nodes", verb="list", resource="nodes", ok=(403,))
        address = None
        if status == 200:
            for node in nodes.get("items") or []:
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
        await asyncio.to_thread(self._patch_service_type, "LoadBalancer")
        deadline = time.monotonic() + min(30.0, self.settings.timeout_for_steps())
        path = _path("Service", self.namespace, "frontend")
        while True:
            _, service = await asyncio.to_thread(
                self.api.request, "GET", path, verb="get", resource="service", name="frontend"
            )
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
        self._lab_pod(pod)
        path = _path("Pod", self.namespace, pod, "log")
        query = {"tailLines": max(1, min(int(tail), 5000)), "timestamps": "true"}
        _, text = await asyncio.to_thread(
            self.api.request, "GET", path, verb="get", resource="pods/log", name=pod, query=query, raw=True
        )
        lines = []
        for raw_line in str(text).splitlines():
            stamp, _, rest = raw_line.partition(" ")
            when = objects.parse_time(_trim_nanos(stamp))
            lines.append(LogLine(pod, when, rest) if when is not None else LogLine(pod, time.time(), raw_line))
        return lines

    # ------------------------------------------------------------------------------ preflight

    async def preflight(self) -> dict[str, object]:
        """Context, server version, namespace, and for each verb the lab needs whether this identity may do it."""
        try:
            api = await asyncio.to_thread(lambda: self.api)
        except DashboardError as exc:
            return {"ok": False, "error": exc.to_json(), "checks": []}
        result: dict[str, object] = {
            "context": api.cluster.context,
            "server": api.cluster.server,
            "in_cluster": api.cluster.in_cluster,
            "config": api.cluster.source,
            "namespace": {"name": self.namespace},
        }
        await self._decide_access()
        access = self.redis_access_status()
        result["redis_access"] = access["using"] or "auto"
        result["redis_access_reason"] = access["reason"]
        try:
            _, version = await asyncio.to_thread(api.request, "GET", "/version", verb="get", resource="version")
            result["server_version"] = version.get("gitVersion")
        except DashboardError as exc:
            return {**result, "ok": False, "error": exc.to_json(), "checks": []}
        status, namespace = await asyncio.to_thread(
            api.request, "GET", f"/api/v1/namespaces/{self.namespace}", verb="get", resource="namespaces", ok=(403, 404)
        )
        result["namespace"] = {
            "name": self.namespace,
            "exists": {200: True, 404: False}.get(status),
            "phase": (namespace.get("status") or {}).get("phase") if status == 200 else None,
            "will_create": status == 404 and self.settings.create_namespace,
        }
        checks = await asyncio.gather(*(asyncio.to_thread(self._access_review, *need) for need in ACCESS_NEEDED))
        blocked = sorted(
            {
                step
                for check, need in zip(checks, ACCESS_NEEDED, strict=True)
                if check["allowed"] is False
                for step in need[4]
            }
        )
        result["checks"] = checks
        result["blocked"] = blocked
        result["ok"] = not blocked and (status != 404 or self.settings.create_namespace)
        return result

    def _access_review(
        self, verb: str, group: str, resource: str, subresource: str, needed_for: tuple[str, ...]
    ) -> dict[str, object]:
        attributes = {"namespace": self.namespace, "verb": verb, "group": group, "resource": resource}
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
            _, body = self.api.request(
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


def _trim_nanos(stamp: str) -> str:
    """`2026-11-26T04:39:57.123456789Z` -> micro seconds, which fromisoformat reads."""
    if "." in stamp:
        head, _, frac = stamp.partition(".")
        return f"{head}.{frac.rstrip('Z')[:6]}Z"
    return stamp
