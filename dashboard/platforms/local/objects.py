"""The local platform's reading of the lab's manifests: Deployments and Services as plain specs.

`load_manifest(name)` parses `manifests/<name>` (one or more YAML documents, or a Kustomization listing them) into
`DeploymentSpec` / `ServiceSpec` values. The pod template's labels decide which local program a pod runs
(`component_for`); the template's hash names the ReplicaSet, as `pod-template-hash` does on Kubernetes. No I/O
beyond reading the manifest file; no processes.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dashboard import settings as settings_module
from dashboard.errors import BadRequest, PlatformError
from dashboard.models import Component
from dashboard.platforms.base import component_for

# Kubernetes' "safe" alphabet (k8s.io/apimachinery/pkg/util/rand): no vowels, no 0/1/3, so names never spell words.
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


@dataclass(frozen=True)
class DeploymentSpec:
    """A Deployment as the local platform runs it: `replicas` pods of one container, named after the template hash."""

    name: str
    labels: dict[str, str]
    replicas: int
    selector: dict[str, str]
    container: str
    image: str
    env: tuple[tuple[str, str], ...]
    component: Component
    template_hash: str  # the whole pod template's: a change anywhere in it is a new ReplicaSet


@dataclass(frozen=True)
class ServiceSpec:
    """A Service: its port and the pod labels it selects."""

    name: str
    labels: dict[str, str]
    selector: dict[str, str]
    port: int
    target_port: int
    type: str
    component: Component


LabObject = DeploymentSpec | ServiceSpec


def pod_template_hash(template: dict[str, Any]) -> str:
    """A stable 10-character hash of a pod template in the safe alphabet (same template, same ReplicaSet name)."""
    data = json.dumps(template, sort_keys=True, default=str).encode()
    number = int.from_bytes(hashlib.sha256(data).digest(), "big")
    chars = []
    for _ in range(10):
        number, index = divmod(number, len(SAFE_ALPHABET))
        chars.append(SAFE_ALPHABET[index])
    return "".join(chars)


def pod_suffix() -> str:
    """The random 5-character suffix a ReplicaSet gives each pod it creates."""
    return "".join(secrets.choice(SAFE_ALPHABET) for _ in range(5))


def manifest_path(name: str) -> Path:
    """`manifests/<name>`, refusing anything outside the manifests directory."""
    directory = settings_module.MANIFESTS_DIR
    path = (directory / name).resolve()
    if path.parent != directory.resolve() or not path.is_file():
        available = ", ".join(sorted(p.name for p in directory.glob("*.yaml")))
        raise BadRequest(f"There is no manifest named {name!r}.", f"Use one of: {available}.")
    return path


def load_manifest(name: str) -> list[LabObject]:
    """The lab objects in `manifests/<name>`, in file order (a Kustomization expands to its resources)."""
    path = manifest_path(name)
    try:
        documents = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    except yaml.YAMLError as exc:
        raise PlatformError(f"{name} is not valid YAML: {exc}", "Restore the manifest from git.") from exc
    objects: list[LabObject] = []
    for document in documents:
        if not isinstance(document, dict):
            raise PlatformError(f"{name} holds a document that is not an object.", "Restore the manifest from git.")
        kind = document.get("kind")
        if kind == "Kustomization":
            for resource in document.get("resources") or []:
                objects.extend(load_manifest(str(resource)))
        elif kind == "Deployment":
            objects.append(parse_deployment(name, document))
        elif kind == "Service":
            objects.append(parse_service(name, document))
        else:
            raise PlatformError(
                f"{name}: the local platform cannot run a {kind!r}.",
                "Only the lab's Deployments and Services run locally; use --platform kubernetes for anything else.",
            )
    return objects


def _labels(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(key): str(item) for key, item in value.items()}


def parse_deployment(manifest: str, document: dict[str, Any]) -> DeploymentSpec:
    metadata = document.get("metadata") or {}
    spec = document.get("spec") or {}
    template = spec.get("template") or {}
    template_labels = _labels((template.get("metadata") or {}).get("labels"))
    name = str(metadata.get("name", ""))
    component = component_for(template_labels)
    if not name or component is None:
        raise PlatformError(
            f"{manifest}: deployment {name!r} has pods the local platform cannot run (labels {template_labels}).",
            "The local platform runs the lab's three Deployments: redis-leader, redis-follower and frontend.",
        )
    containers = (template.get("spec") or {}).get("containers") or [{}]
    container = containers[0] or {}
    env = tuple(
        (str(item.get("name")), str(item.get("value", "")))
        for item in container.get("env") or []
        if isinstance(item, dict) and item.get("name")
    )
    replicas = spec.get("replicas", 1)
    return DeploymentSpec(
        name=name,
        labels=_labels(metadata.get("labels")),
        replicas=int(replicas if replicas is not None else 1),
        selector=_labels((spec.get("selector") or {}).get("matchLabels")),
        container=str(container.get("name", component)),
        image=str(container.get("image", "")),
        env=env,
        component=component,
        template_hash=pod_template_hash(template),
    )


def parse_service(manifest: str, document: dict[str, Any]) -> ServiceSpec:
    metadata = document.get("metadata") or {}
    spec = document.get("spec") or {}
    name = str(metadata.get("name", ""))
    selector = _labels(spec.get("selector"))
    component = component_for(selector)
    if not name or component is None:
        raise PlatformError(
            f"{manifest}: service {name!r} selects pods the local platform does not run ({selector}).",
            "The local platform runs the lab's three Services: redis-leader, redis-follower and frontend.",
        )
    ports = spec.get("ports") or [{}]
    port = int(ports[0].get("port", 80))
    target = ports[0].get("targetPort", port)
    return ServiceSpec(
        name=name,
        labels=_labels(metadata.get("labels")),
        selector=selector,
        port=port,
        target_port=int(target) if isinstance(target, int) or str(target).isdigit() else port,
        type=str(spec.get("type", "ClusterIP")),
        component=component,
    )
