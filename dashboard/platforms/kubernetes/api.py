"""Raw JSON requests to the API server through the client's `ApiClient` (kubeconfig/in-cluster auth, TLS, proxies).

Every library or HTTP error is translated once, here, into a `DashboardError` (`raise ... from exc`, see `errors`).
`api_path(kind, namespace, name, subresource)` builds the REST path of the lab's kinds.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import urllib3
from kubernetes import client as k8s_client
from kubernetes.stream import ws_client as _ws_client
from websocket import WebSocketBadStatusException, WebSocketException

from dashboard.errors import PlatformError
from dashboard.platforms.kubernetes.config import ClusterConfig
from dashboard.platforms.kubernetes.errors import connection_error, portforward_refusal, translate_status
from dashboard.platforms.kubernetes.objects import RESOURCES

ws_client: Any = _ws_client  # kubernetes.stream.ws_client is untyped

REQUEST_TIMEOUT = (5.0, 30.0)


class Api:
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
            raise connection_error(self.cluster.server, str(exc.reason or exc)) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise connection_error(self.cluster.server, str(exc)) from exc

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
            raise connection_error(self.cluster.server, str(exc)) from exc
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
        raise translate_status(
            status,
            data,
            verb=verb,
            resource=resource,
            name=name,
            namespace=self.namespace if "/namespaces/" in path else "",
            retry_after=retry_after,
        )

    def patch(
        self, path: str, body: Any, *, resource: str, name: str, field_manager: str, apply: bool = False
    ) -> tuple[int, Any]:
        """A merge patch with our field manager, or with `apply` a server-side apply that forces its fields."""
        return self.request(
            "PATCH",
            path,
            verb="patch",
            resource=resource,
            name=name,
            query={"fieldManager": field_manager, "force": "true" if apply else None},
            body=json.dumps(body) if apply else body,
            content_type="application/apply-patch+yaml" if apply else "application/merge-patch+json",
        )

    def open_watch(self, path: str, query: dict[str, Any], resource: str) -> Any:
        """Start a watch; returns the urllib3 response to read NDJSON lines from."""
        read_timeout = float(query["timeoutSeconds"]) + 30.0
        response = self._call("GET", path, query=query, timeout=(5.0, read_timeout))
        if not 200 <= int(response.status) <= 299:
            data = response.read()
            raise translate_status(
                int(response.status), data, verb="watch", resource=resource, namespace=self.namespace
            )
        return response.response  # the urllib3 response, unread

    def portforward(self, pod: str, port: int) -> Any:
        """A websocket (`v4.channel.k8s.io`, connected) to pod:port through the API server's pods/portforward
        subresource, as `kubectl port-forward` opens it; `portforward.relay` carries a connection over it.

        Built from the client's own pieces rather than with `kubernetes.stream.portforward`, which swaps
        `call_api` on the *shared* ApiClient while the websocket opens: a request another thread makes meanwhile
        (a watch, an apply) would go out as a websocket, and two forwards opening at once can leave the swap in
        place for good. Handshake errors keep their HTTP status (403, 404...) for the translation; one that will
        not pass (403, no address for the kubelet) is a `PlatformRefused` (`errors.portforward_refusal`).
        """
        path = api_path("Pod", self.namespace, pod, "portforward")
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
            body = exc.resp_body or b""
            translated = translate_status(
                code,
                body,
                verb="create",
                resource="pods" if code == 404 else "pods/portforward",
                name=pod,
                namespace=self.namespace,
            )
            raise portforward_refusal(code, body, pod, translated) or translated from exc
        except (WebSocketException, k8s_client.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise connection_error(self.cluster.server, str(exc)) from exc
        return websocket


def api_path(kind: str, namespace: str, name: str = "", subresource: str = "") -> str:
    """The REST path of a kind's objects in `namespace` (cluster-wide with `namespace=""`, as Namespaces are)."""
    prefix, plural, _ = RESOURCES[kind]
    path = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path
