"""Pure functions over Kubernetes API JSON (plain dicts): what the Kubernetes platform derives from the cluster.

Nothing here does I/O or imports the `kubernetes` client. Each function takes objects exactly as the API server
returns them (see `tests/fixtures/k8s/`) and returns the dashboard's own values, in kubectl's vocabulary:

- `pod_state(pod)`: one pod as `kubectl get pods -o wide` shows it (STATUS column, why it is not ready).
- `deployment_state(deployment)`: `kubectl rollout status` in one value.
- `event_row(event)` / `event_timeline(events)`: the lab's core/v1 Events as timeline rows.
- `CLEANUP_TARGETS`, `is_lab_pod`, `is_ours`, `prepare_manifest`: what the lab owns, what cleanup selects, and
  the label the dashboard puts on the objects it applies.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dashboard.errors import PlatformError
from dashboard.models import COMPONENTS, EventRow, Pod
from dashboard.platforms.base import component_for

JSON = dict[str, Any]

LAB_LABEL_KEY = "app.kubernetes.io/managed-by"
LAB_LABEL_VALUE = "guestbook-lab"
LAB_LABEL_SELECTOR = f"{LAB_LABEL_KEY}={LAB_LABEL_VALUE}"
#: The lab's pods carry app=redis (leader, followers) or app=guestbook (frontend); the pod templates are the
#: tutorial's, so the pods do not carry our label: the watch selects by app, `is_lab_pod` narrows by owner.
POD_WATCH_SELECTOR = "app in (redis,guestbook)"
LAB_DEPLOYMENTS: tuple[str, ...] = COMPONENTS

# Resources by kubectl kind: (API path prefix, plural, kubectl's "kind.group" name); the lab's, then what a
# workshop learner's namespace holds (`namespace.learner_objects`).
RESOURCES: dict[str, tuple[str, str, str]] = {
    "Deployment": ("/apis/apps/v1", "deployments", "deployment.apps"),
    "Service": ("/api/v1", "services", "service"),
    "Pod": ("/api/v1", "pods", "pod"),
    "Namespace": ("/api/v1", "namespaces", "namespace"),
    "ResourceQuota": ("/api/v1", "resourcequotas", "resourcequota"),
    "LimitRange": ("/api/v1", "limitranges", "limitrange"),
    "ServiceAccount": ("/api/v1", "serviceaccounts", "serviceaccount"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies", "networkpolicy.networking.k8s.io"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", "role.rbac.authorization.k8s.io"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", "rolebinding.rbac.authorization.k8s.io"),
}


def _get(obj: Mapping[str, Any] | None, *keys: str) -> Any:
    """obj[k1][k2]... or None when any step is missing or not a mapping."""
    cur: Any = obj
    for key in keys:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def parse_time(value: object) -> float | None:
    """RFC 3339 (`2026-11-26T04:29:33Z`, with or without micro seconds) as epoch seconds; None if absent."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------- pods


def owner_deployment(pod: Mapping[str, Any]) -> str | None:
    """The Deployment behind a pod: its controlling ReplicaSet is named `<deployment>-<pod-template-hash>`."""
    template_hash = (_get(pod, "metadata", "labels") or {}).get("pod-template-hash")
    for ref in _get(pod, "metadata", "ownerReferences") or []:
        if ref.get("kind") == "ReplicaSet" and ref.get("controller"):
            name = str(ref.get("name", ""))
            if template_hash and name.endswith(f"-{template_hash}"):
                return name[: -len(template_hash) - 1]
    return None


def is_lab_pod(pod: Mapping[str, Any]) -> bool:
    """A pod of the lab: the tutorial's labels AND owned (via its ReplicaSet) by one of the lab's Deployments.

    Both Redis Deployments select only `app=redis`, so a foreign `app=redis` Deployment (say an old
    `redis-master`) has pods with the same labels; the owner tells them apart.
    """
    component = component_for(_get(pod, "metadata", "labels") or {})
    return component is not None and owner_deployment(pod) == component


def _container_statuses(pod: Mapping[str, Any]) -> list[JSON]:
    return list(_get(pod, "status", "containerStatuses") or [])


def _condition(obj: Mapping[str, Any], kind: str) -> JSON | None:
    for cond in _get(obj, "status", "conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def _image_of(pod: Mapping[str, Any], container: str | None = None) -> str | None:
    for spec in _get(pod, "spec", "containers") or []:
        if container is None or spec.get("name") == container:
            image = spec.get("image")
            return str(image) if image else None
    return None


IMAGE_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")


def pod_state(pod: Mapping[str, Any]) -> Pod:
    """One pod as kubectl shows it: STATUS like `kubectl get pods`, plus why it is not ready.

    Follows kubectl's printPod: the pod's reason or phase, overridden by init containers still running, then
    by a waiting/terminated container reason; `Terminating` once deletionTimestamp is set. When the pod is not
    ready `reason`/`message` name the cause: ImagePullBackOff with the image, CrashLoopBackOff with the last exit
    code, Unschedulable with the scheduler's message, Terminating with the grace period.
    Raises ValueError for a pod that is not one of the lab's components.
    """
    metadata = _get(pod, "metadata") or {}
    component = component_for(metadata.get("labels") or {})
    if component is None:
        raise ValueError(f"pod {metadata.get('name')!r} has no lab labels (app=redis/role or app=guestbook)")
    phase = str(_get(pod, "status", "phase") or "Pending")
    status = str(_get(pod, "status", "reason") or phase)
    reason: str | None = None
    message: str | None = None
    image = _image_of(pod)

    # init containers (the lab has none, but kubectl shows them first)
    init_specs = _get(pod, "spec", "initContainers") or []
    for index, init in enumerate(_get(pod, "status", "initContainerStatuses") or []):
        terminated = _get(init, "state", "terminated")
        waiting = _get(init, "state", "waiting")
        if terminated and terminated.get("exitCode") == 0:
            continue
        if terminated:
            status = f"Init:{terminated.get('reason') or 'ExitCode:' + str(terminated.get('exitCode'))}"
        elif waiting and waiting.get("reason") and waiting.get("reason") != "PodInitializing":
            status = f"Init:{waiting['reason']}"
        else:
            status = f"Init:{index}/{len(init_specs)}"
        break

    has_running = False
    if not status.startswith("Init:"):
        for cs in reversed(_container_statuses(pod)):
            waiting = _get(cs, "state", "waiting")
            terminated = _get(cs, "state", "terminated")
            if waiting and waiting.get("reason"):
                status = str(waiting["reason"])
                reason = status
                container_image = _image_of(pod, cs.get("name")) or cs.get("image") or image
                if status in IMAGE_PULL_REASONS:
                    image = container_image
                    detail = waiting.get("message") or "the image could not be pulled"
                    message = f"image {container_image}: {detail}"
                elif status == "CrashLoopBackOff":
                    last = _get(cs, "lastState", "terminated") or {}
                    exit_code = last.get("exitCode")
                    message = f"container {cs.get('name')} keeps exiting" + (
                        f" (last exit code {exit_code}, {last.get('reason') or 'Error'})"
                        if exit_code is not None
                        else ""
                    )
                else:
                    message = waiting.get("message")
            elif terminated and terminated.get("reason"):
                status = str(terminated["reason"])
            elif terminated:
                signal = terminated.get("signal")
                status = f"Signal:{signal}" if signal else f"ExitCode:{terminated.get('exitCode')}"
            elif _get(cs, "state", "running") and cs.get("ready"):
                has_running = True
        if status == "Completed" and has_running:
            status = "Running"

    ready_condition = _condition(pod, "Ready")
    ready = bool(ready_condition and ready_condition.get("status") == "True")
    deleting = bool(metadata.get("deletionTimestamp"))
    if deleting:
        if _get(pod, "status", "reason") == "NodeLost":
            status = "Unknown"
        else:
            status = reason = "Terminating"
            grace = metadata.get("deletionGracePeriodSeconds")
            message = "deletion requested" + (f", grace period {grace}s" if grace is not None else "")
    elif reason is None and not ready:
        scheduled = _condition(pod, "PodScheduled")
        if scheduled and scheduled.get("status") == "False":
            reason = str(scheduled.get("reason") or "Unschedulable")
            message = scheduled.get("message")
        elif phase == "Pending" and not scheduled:
            reason = "Pending"
            message = "waiting for the scheduler"
        elif ready_condition:
            reason = str(ready_condition.get("reason") or "NotReady")
            message = ready_condition.get("message")
        elif phase in ("Failed", "Unknown"):
            reason = status
            message = _get(pod, "status", "message")

    return Pod(
        name=str(metadata.get("name", "")),
        component=component,
        phase=phase,
        ready=ready,
        restarts=sum(int(cs.get("restartCount") or 0) for cs in _container_statuses(pod)),
        created_at=parse_time(metadata.get("creationTimestamp")) or 0.0,
        status=status,
        reason=reason,
        message=message,
        node=_get(pod, "spec", "nodeName"),
        ip=_get(pod, "status", "podIP"),
        image=image,
        deleting=deleting,
    )


def lab_pods(pods: Iterable[Mapping[str, Any]]) -> list[Pod]:
    """The lab's pods among `pods`, ordered like the lab (leader, followers, frontend), then by age and name."""
    states = [pod_state(p) for p in pods if is_lab_pod(p)]
    order = {c: i for i, c in enumerate(COMPONENTS)}
    return sorted(states, key=lambda p: (order[p.component], p.created_at, p.name))


# -------------------------------------------------------------------------------------- deployments


@dataclass(frozen=True)
class DeploymentState:
    """`kubectl get deployment` + `kubectl rollout status` for one Deployment."""

    name: str
    desired: int
    updated: int
    ready: int
    available: int
    rolled_out: bool  # rollout status would say "successfully rolled out"
    message: str  # rollout status' sentence
    deadline_exceeded: bool = False


def ready_endpoints(slices: Mapping[str, Any]) -> list[str]:
    """Addresses of the ready endpoints in an EndpointSliceList (a missing `ready` condition means ready)."""
    found: list[str] = []
    for item in slices.get("items") or []:
        for endpoint in item.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready", True) is not False:
                found.extend(str(address) for address in endpoint.get("addresses") or [])
    return found


def deployment_state(deployment: Mapping[str, Any]) -> DeploymentState:
    """Readiness of a Deployment the way `kubectl rollout status deployment/<name>` decides it."""
    name = str(_get(deployment, "metadata", "name") or "")
    desired = _get(deployment, "spec", "replicas")
    desired = int(desired if desired is not None else 1)
    status = _get(deployment, "status") or {}
    replicas, updated, ready, available = (
        int(status.get(key) or 0) for key in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
    )
    progressing = _condition(deployment, "Progressing")
    deadline = bool(progressing and progressing.get("reason") == "ProgressDeadlineExceeded")
    waiting = f'Waiting for deployment "{name}" rollout to finish'
    if _get(deployment, "metadata", "deletionTimestamp"):
        message, deadline = f'deployment "{name}" is being deleted', False
    elif int(status.get("observedGeneration") or 0) < int(_get(deployment, "metadata", "generation") or 0):
        message = f"Waiting for deployment spec update to be observed of deployment {name!r}"
    elif deadline:
        message = f'deployment "{name}" exceeded its progress deadline'
    elif updated < desired:
        message = f"{waiting}: {updated} out of {desired} new replicas have been updated..."
    elif replicas > updated:
        message = f"{waiting}: {replicas - updated} old replicas are pending termination..."
    elif available < updated:
        message = f"{waiting}: {available} of {updated} updated replicas are available..."
    else:
        message = f'deployment "{name}" successfully rolled out'
        return DeploymentState(name, desired, updated, ready, available, True, message)
    return DeploymentState(name, desired, updated, ready, available, False, message, deadline)


# ------------------------------------------------------------------------------------------- events


def event_row(event: Mapping[str, Any]) -> EventRow:
    """A core/v1 Event as a timeline row; the time is when it was last seen (series, lastTimestamp, eventTime...)."""
    involved = _get(event, "involvedObject") or {}
    series = _get(event, "series") or {}
    seen = (
        parse_time(series.get("lastObservedTime"))
        or parse_time(event.get("lastTimestamp"))
        or parse_time(event.get("eventTime"))
        or parse_time(event.get("firstTimestamp"))
        or parse_time(_get(event, "metadata", "creationTimestamp"))
        or 0.0
    )
    count = int(series.get("count") or event.get("count") or 1)
    kind = str(involved.get("kind") or "").lower()
    return EventRow(
        time=seen,
        type=str(event.get("type") or "Normal"),
        reason=str(event.get("reason") or ""),
        involved=f"{kind}/{involved.get('name', '')}",
        message=str(event.get("message") or "").strip(),
        count=count,
    )


def is_lab_event(event: Mapping[str, Any]) -> bool:
    """An Event about a lab object: a lab Deployment/Service by name, or its ReplicaSets and pods by name prefix."""
    involved = _get(event, "involvedObject") or {}
    name = str(involved.get("name") or "")
    kind = involved.get("kind")
    for deployment in LAB_DEPLOYMENTS:
        if name == deployment and kind in ("Deployment", "Service", "Endpoints"):
            return True
        if kind in ("ReplicaSet", "Pod") and name.startswith(f"{deployment}-"):
            rest = name[len(deployment) + 1 :]
            # redis-leader-<hash>[-<suffix>], never a longer name like redis-leader-backup-x
            if re.fullmatch(r"[a-z0-9]{5,10}(-[a-z0-9]{5})?", rest):
                return True
    return False


def event_timeline(events: Iterable[Mapping[str, Any]], limit: int = 200) -> list[EventRow]:
    """The lab's events, oldest first (the last `limit`)."""
    rows = sorted((event_row(e) for e in events if is_lab_event(e)), key=lambda r: (r.time, r.involved))
    return rows[-limit:]


# --------------------------------------------------------------------------- manifests and ownership


def kubectl_name(obj: Mapping[str, Any]) -> str:
    """`deployment.apps/frontend`, `service/redis-leader`: how kubectl names an object in its output."""
    kind = str(obj.get("kind") or "")
    name = str(_get(obj, "metadata", "name") or "")
    resource = RESOURCES.get(kind)
    return f"{resource[2] if resource else kind.lower()}/{name}"


def prepare_manifest(
    manifest: Mapping[str, Any], image: str | None = None, room_labels: Mapping[str, str] | None = None
) -> JSON:
    """The manifest to apply: the file as it is plus our label on the object's metadata; the container's image
    replaced only when an override is set. Nothing else changes (pod templates keep the tutorial's labels), but for
    a workshop learner's `room_labels`, which go on the object and its pod template too, so the room's one pods
    watch selects them."""
    doc: JSON = copy.deepcopy(dict(manifest))
    metadata = doc.setdefault("metadata", {})
    metadata["labels"] = {**(metadata.get("labels") or {}), LAB_LABEL_KEY: LAB_LABEL_VALUE, **(room_labels or {})}
    template = _get(doc, "spec", "template")
    if doc.get("kind") == "Deployment" and isinstance(template, dict):
        if room_labels:
            meta = template.setdefault("metadata", {})
            meta["labels"] = {**(meta.get("labels") or {}), **room_labels}
        for container in _get(template, "spec", "containers") or []:
            if image:
                container["image"] = image
    return doc


def apply_word(before: Mapping[str, Any] | None, applied: Mapping[str, Any]) -> str:
    """What `kubectl apply` says of an object: created (none before), unchanged (same resourceVersion), configured."""
    if before is None:
        return "created"
    same = _get(before, "metadata", "resourceVersion") == _get(applied, "metadata", "resourceVersion")
    return "unchanged" if same else "configured"


def is_ours(obj: Mapping[str, Any], field_manager: str) -> bool:
    """True when the dashboard created/applied this object: our label, or our field manager applied it."""
    labels = _get(obj, "metadata", "labels") or {}
    if labels.get(LAB_LABEL_KEY) == LAB_LABEL_VALUE:
        return True
    return any(
        m.get("manager") == field_manager and m.get("operation") == "Apply"
        for m in _get(obj, "metadata", "managedFields") or []
    )


def foreign_object_error(kind: str, name: str, namespace: str, obj: Mapping[str, Any]) -> PlatformError:
    """A lab name already used by an object the dashboard did not create: refuse, never take it over."""
    resource = RESOURCES.get(kind, ("", kind.lower(), kind.lower()))[2]
    fields = _get(obj, "metadata", "managedFields") or []
    managers = ", ".join(sorted({str(m.get("manager")) for m in fields if m.get("manager")})) or "unknown"
    return PlatformError(
        f"{resource}/{name} already exists in namespace {namespace} "
        f"and was not created by this dashboard (managed by: {managers}).",
        f"Delete it yourself (kubectl delete {resource.split('.')[0]} {name} -n {namespace}) "
        "or run the lab in another namespace with -n.",
    )


@dataclass(frozen=True)
class CleanupTarget:
    """One line of the tutorial's cleanup, narrowed by the dashboard's label."""

    kind: str  # Deployment or Service
    label_selector: str
    field_selector: str | None
    kubectl: str  # the tutorial's command it stands for


CLEANUP_TARGETS: tuple[CleanupTarget, ...] = (
    CleanupTarget("Deployment", f"app=redis,{LAB_LABEL_SELECTOR}", None, "kubectl delete deployment -l app=redis"),
    CleanupTarget("Service", f"app=redis,{LAB_LABEL_SELECTOR}", None, "kubectl delete service -l app=redis"),
    CleanupTarget("Deployment", LAB_LABEL_SELECTOR, "metadata.name=frontend", "kubectl delete deployment frontend"),
    CleanupTarget("Service", LAB_LABEL_SELECTOR, "metadata.name=frontend", "kubectl delete service frontend"),
)


def parse_label_selector(selector: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """`a=b,c!=d,e in (x,y),f` as (key, operator, values) requirements; operators =, !=, in, notin, exists, !."""
    requirements: list[tuple[str, str, tuple[str, ...]]] = []
    for part in re.findall(r"[^,(]+(?:\([^)]*\))?", selector):
        part = part.strip()
        if not part:
            continue
        match = re.fullmatch(r"(\S+)\s+(in|notin)\s+\(([^)]*)\)", part)
        if match:
            values = tuple(v.strip() for v in match.group(3).split(",") if v.strip())
            requirements.append((match.group(1), match.group(2), values))
        elif "!=" in part:
            key, value = part.split("!=", 1)
            requirements.append((key.strip(), "!=", (value.strip(),)))
        elif "=" in part:
            key, value = part.split("=", 1)
            requirements.append((key.strip(), "=", (value.lstrip("=").strip(),)))
        elif part.startswith("!"):
            requirements.append((part[1:].strip(), "!", ()))
        else:
            requirements.append((part, "exists", ()))
    return requirements


def selector_matches(selector: str, labels: Mapping[str, str] | None) -> bool:
    """Whether `labels` satisfy a label selector string, as the API server decides it."""
    labels = labels or {}
    for key, op, values in parse_label_selector(selector):
        value = labels.get(key)  # `=` and `!=` have one value: the same test as `in` and `notin`
        if (op in ("=", "in") and value not in values) or (op in ("!=", "notin") and value in values):
            return False
        if (op == "exists" and key not in labels) or (op == "!" and key in labels):
            return False
    return True


def cleanup_selects(target: CleanupTarget, obj: Mapping[str, Any]) -> bool:
    """Whether a cleanup line deletes this object: its kind, its label selector and (frontend) its name."""
    if obj.get("kind") not in (None, target.kind):
        return False
    if not selector_matches(target.label_selector, _get(obj, "metadata", "labels")):
        return False
    if target.field_selector:
        field, _, value = target.field_selector.partition("=")
        if field == "metadata.name" and _get(obj, "metadata", "name") != value:
            return False
    return True
