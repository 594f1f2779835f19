"""How the local platform reads the lab's manifests: pure parsing, no processes."""

from __future__ import annotations

import pytest

from dashboard.errors import BadRequest
from dashboard.platforms.local.objects import (
    SAFE_ALPHABET,
    DeploymentSpec,
    ServiceSpec,
    component_for,
    load_manifest,
    pod_suffix,
    pod_template_hash,
)


def test_the_three_deployments_keep_the_manifests_replicas_and_labels() -> None:
    deployments = {
        name: load_manifest(f"{name}-deployment.yaml")[0] for name in ("redis-leader", "redis-follower", "frontend")
    }
    assert all(isinstance(spec, DeploymentSpec) for spec in deployments.values())
    leader, follower, frontend = (deployments[name] for name in ("redis-leader", "redis-follower", "frontend"))
    assert isinstance(leader, DeploymentSpec) and isinstance(follower, DeploymentSpec)
    assert isinstance(frontend, DeploymentSpec)
    assert (leader.component, leader.replicas, leader.container) == ("redis-leader", 1, "leader")
    assert (follower.component, follower.replicas, follower.container) == ("redis-follower", 2, "follower")
    assert (frontend.component, frontend.replicas, frontend.container) == ("frontend", 3, "php-redis")
    assert leader.selector == follower.selector == {"app": "redis"}  # the overlapping selectors of the upstream lab
    assert frontend.labels == {} and frontend.env == (("GET_HOSTS_FROM", "dns"),)
    assert leader.template_hash != follower.template_hash


def test_services_select_their_component() -> None:
    for name in ("redis-leader", "redis-follower", "frontend"):
        [service] = load_manifest(f"{name}-service.yaml")
        assert isinstance(service, ServiceSpec)
        assert service.component == name and service.type == "ClusterIP"
    [frontend] = load_manifest("frontend-service.yaml")
    assert isinstance(frontend, ServiceSpec) and frontend.port == 80


def test_kustomization_expands_to_the_six_objects_in_the_tutorials_order() -> None:
    objects = load_manifest("kustomization.yaml")
    kinds = [(type(item).__name__, item.name) for item in objects]
    assert kinds == [
        ("DeploymentSpec", "redis-leader"),
        ("ServiceSpec", "redis-leader"),
        ("DeploymentSpec", "redis-follower"),
        ("ServiceSpec", "redis-follower"),
        ("DeploymentSpec", "frontend"),
        ("ServiceSpec", "frontend"),
    ]


@pytest.mark.parametrize("name", ["../dashboard/settings.py", "missing.yaml", "/etc/passwd"])
def test_only_files_in_the_manifests_directory_are_read(name: str) -> None:
    with pytest.raises(BadRequest):
        load_manifest(name)


def test_labels_decide_the_component() -> None:
    assert component_for({"app": "redis", "role": "leader", "tier": "backend"}) == "redis-leader"
    assert component_for({"app": "redis", "role": "follower"}) == "redis-follower"
    assert component_for({"app": "guestbook", "tier": "frontend"}) == "frontend"
    assert component_for({"app": "redis"}) is None


def test_pod_names_use_kubernetes_safe_alphabet() -> None:
    template = {"metadata": {"labels": {"app": "guestbook"}}}
    assert pod_template_hash(template) == pod_template_hash(dict(template))
    assert len(pod_template_hash(template)) == 10 and set(pod_template_hash(template)) <= set(SAFE_ALPHABET)
    assert len(pod_suffix()) == 5 and set(pod_suffix()) <= set(SAFE_ALPHABET)
