"""API errors as the dashboard's own: an HTTP status + Status body, or a connection failure, as one `DashboardError`.

Pure functions (no I/O): `translate_status(...)` (one fact, one next step, in kubectl's words), `connection_error`,
`portforward_refusal` (a port-forward handshake refused for good) and the kubeconfig errors of `config`. `api.Api`
raises through them, so no library exception leaves the package.

A refusal that waiting will not change is a `PlatformRefused`: every 403 (RBAC said no), and a port-forward the API
server cannot open to the kubelet. A step's check that meets one fails at once with its sentence and fix instead
of retrying until the step timeout.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from dashboard.errors import DashboardError, PlatformError, PlatformRefused, PlatformUnavailable

JSON = dict[str, Any]

_FORBIDDEN = re.compile(
    r'User "(?P<user>[^"]*)" cannot (?P<verb>\S+) resource "(?P<resource>[^"]*)"'
    r'(?: in API group "(?P<group>[^"]*)")?(?: in the namespace "(?P<namespace>[^"]*)")?'
)


def status_of(body: object) -> JSON:
    """A Status body (already parsed or raw JSON text); {} when the body is not a Status."""
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        text = body.strip()
        try:
            body = json.loads(text)
        except ValueError:
            return {"message": text[:300]} if text else {}
    return dict(body) if isinstance(body, Mapping) else {}


def translate_status(
    code: int,
    body: object,
    *,
    verb: str = "",
    resource: str = "",
    namespace: str = "",
    name: str = "",
    retry_after: str | None = None,
) -> DashboardError:
    """An API error (HTTP status + Status body) as one `DashboardError`: one sentence of fact, one of what to do.

    `verb`/`resource`/`namespace`/`name` say what was asked (kubectl's words); the body's details win when present.
    A 403 is a `PlatformRefused` (RBAC said no: retrying will not help).
    """
    status = status_of(body)
    message = str(status.get("message") or "").strip()
    reason = str(status.get("reason") or "")
    details = status.get("details") or {}
    causes = [c for c in details.get("causes") or [] if isinstance(c, Mapping)]
    what = f"{resource}/{name}" if name else resource
    where = f" in namespace {namespace}" if namespace else ""
    wait = retry_after or str(details.get("retryAfterSeconds") or "") or "a few"

    if code == 401:
        return PlatformUnavailable(
            "The API server rejected the credentials (401 Unauthorized).",
            "Log in again or refresh the token in your kubeconfig (e.g. `kubectl get pods` to check), then retry.",
        )
    if code == 403:
        match = _FORBIDDEN.search(message)
        said = match.groupdict() if match else {"user": "this identity"}
        f_verb = said.get("verb") or verb or "access"
        f_resource = said.get("resource") or resource or "this resource"
        if said.get("group"):
            f_resource = f"{f_resource}.{said['group']}"
        f_namespace = said.get("namespace") or namespace
        user = said["user"]
        in_ns = f" in namespace {f_namespace}" if f_namespace else " (cluster-wide)"
        return PlatformRefused(
            f"{user} may not {f_verb} {f_resource}{in_ns} (403 Forbidden).",
            f"Ask a cluster admin for a Role allowing '{f_verb}' on {f_resource}{in_ns} "
            "(see manifests/dashboard/role.yaml), or use another --context.",
        )
    if code == 404:
        if details.get("kind") == "namespaces" or re.search(r'namespaces? "[^"]+" not found', message):
            missing = str(details.get("name") or namespace)
            return PlatformUnavailable(
                f"Namespace {missing} does not exist.",
                f"Create it (kubectl create namespace {missing}), pass --create-namespace, or choose another with -n.",
            )
        if not details and message == "the server could not find the requested resource":
            return PlatformError(
                f"The API server does not serve {resource or 'this resource'} (404).",
                "Check the cluster version (kubectl version) and that the API group is enabled.",
            )
        return PlatformError(
            f"{what or 'The object'} was not found{where}.",
            "Run the lab step that creates it first, or check the namespace (-n).",
        )
    if code == 409:
        if any(c.get("reason") == "FieldManagerConflict" for c in causes):
            fields = ", ".join(sorted({str(c.get("field")) for c in causes if c.get("field")}))
            owners = ", ".join(sorted({str(c.get("message", "")).removeprefix("conflict with ") for c in causes}))
            return PlatformError(
                f"Another field manager ({owners}) owns {fields} of {what}{where} (apply conflict).",
                "Re-apply with the dashboard (it forces its own field manager), or undo the other tool's change.",
            )
        if reason == "AlreadyExists":
            return PlatformError(
                f"{what or 'The object'} already exists{where}.",
                "Apply it (kubectl apply) instead of creating it, or delete the existing object first.",
            )
        return PlatformError(
            f"{what or 'The object'} was changed by someone else meanwhile{where} (409 Conflict).",
            "Retry the step; it re-reads the current object.",
        )
    if code == 422:
        seen: list[str] = []
        for cause in causes:
            text = f"{cause.get('field', '')}: {str(cause.get('message', '')).split(':')[0]}".strip(": ")
            if text not in seen:
                seen.append(text)
        summary = "; ".join(seen) or message
        return PlatformError(
            f"The API server rejected {what or 'the object'} as invalid ({summary}).",
            "Fix that field in the manifest (or the image override) and apply again.",
        )
    if code == 429 or reason == "TooManyRequests":
        return PlatformUnavailable(
            f"The API server is throttling requests and did not {verb or 'answer'} {what}{where} "
            "(429 Too Many Requests).",
            f"Retry in {wait} seconds; if it persists, the cluster's API Priority and Fairness limits this identity "
            "(kubectl get flowschemas).",
        )
    if code in (500, 502, 503, 504) or reason in ("Timeout", "ServerTimeout", "ServiceUnavailable"):
        return PlatformUnavailable(
            f"The API server did not answer {verb or 'the request'} {what}{where} in time "
            f"({code} {reason or 'error'}).",
            f"Retry in {wait} seconds; if it persists check the control plane (kubectl get --raw /readyz).",
        )
    return PlatformError(
        f"The API server refused {verb or 'the request'} {what}{where}: {message or reason or code} ({code}).",
        "Check the object and your access with kubectl, then retry.",
    )


def portforward_refusal(code: int, body: object, pod: str, translated: DashboardError) -> PlatformRefused | None:
    """A port-forward upgrade the API server refuses for a reason that waiting will not change, as one sentence and
    its fix (`translated` is `translate_status` of the same answer); None for anything that may pass (a pod still
    starting, a 5xx while the kubelet restarts)."""
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else str(body)
    direct = "or use --redis-access direct where pod IPs are reachable from here"
    if code == 403:
        return PlatformRefused(
            translated.message,
            f"Allow 'get' and 'create' on pods/portforward (manifests/dashboard/role.yaml), {direct}.",
        )
    if "no preferred addresses" in text or "unable to upgrade connection" in text:
        detail = str(status_of(text).get("message") or "").strip() or text.strip()[:200]
        return PlatformRefused(
            f"The API server cannot open a port-forward to pod {pod}: {detail.rstrip('.')}.",
            "The API server finds no address it may use for the node's kubelet: check the node's addresses "
            f"(kubectl get node -o wide) against the API server's --kubelet-preferred-address-types, {direct}.",
        )
    return None


def connection_error(server: str, detail: str) -> PlatformUnavailable:
    """The API server cannot be reached at all (refused, DNS, timeout, TLS)."""
    lowered = detail.lower()
    if "certificate" in lowered or "ssl" in lowered:
        fact = f"The TLS connection to the API server at {server} failed ({_short(detail)})."
        hint = "Check the cluster's certificate-authority data in your kubeconfig (kubectl cluster-info)."
    elif "refused" in lowered:
        fact = f"The API server at {server} refused the connection."
        hint = "Start the cluster (kind/minikube start) or choose the right --context, then retry."
    else:
        fact = f"The API server at {server} is unreachable ({_short(detail)})."
        hint = "Check that the cluster runs and this machine can reach it (kubectl cluster-info), then retry."
    return PlatformUnavailable(fact, hint)


def _short(detail: str) -> str:
    detail = re.sub(r"<[^>]+>", "", detail)
    match = re.search(
        r"(\[Errno [^\]]+\][^')\"]*|timed out|Name or service not known|certificate verify failed)", detail
    )
    text = match.group(1) if match else detail
    return text.strip().rstrip(".")[:160]


def kubeconfig_missing(paths: Iterable[str]) -> PlatformUnavailable:
    """No kubeconfig where kubectl would look, and not running in a pod."""
    where = ", ".join(paths)
    return PlatformUnavailable(
        f"No kubeconfig was found ({where}).",
        "Pass --kubeconfig or set KUBECONFIG to your cluster's kubeconfig (kind/minikube write ~/.kube/config).",
    )


def unknown_context(context: str, available: Iterable[str]) -> PlatformUnavailable:
    """--context names a context the kubeconfig does not have."""
    names = ", ".join(sorted(available)) or "none"
    return PlatformUnavailable(
        f"The kubeconfig has no context named {context!r} (available: {names}).",
        "Pick one of those with --context (kubectl config get-contexts lists them).",
    )


def bad_kubeconfig(path: str, detail: str) -> PlatformUnavailable:
    """The kubeconfig exists but cannot be used."""
    return PlatformUnavailable(
        f"The kubeconfig {path} cannot be used ({_short(detail)}).",
        "Check it with `kubectl config view`, or pass another with --kubeconfig.",
    )
