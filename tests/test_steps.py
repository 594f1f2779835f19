"""The lab's steps as data: every step documented, in upstream order, its manifests present and unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dashboard.settings import MANIFESTS_DIR
from dashboard.steps import STEP_IDS, STEPS, get_step

UPSTREAM_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "k8s" / "manifests"


def test_step_ids_are_the_upstream_order() -> None:
    assert STEP_IDS == ("leader", "followers", "frontend", "expose", "cleanup")


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.id)
def test_every_step_is_documented(step: object) -> None:
    assert step is not None
    s = get_step(step.id)  # type: ignore[attr-defined]
    assert s is step
    assert len(s.title) > 5 and s.title[0].isupper()
    assert len(s.explanation) > 60
    assert s.commands and all(c.startswith("kubectl ") for c in s.commands)
    assert s.check.endswith(".")
    for manifest in s.manifests:
        assert (MANIFESTS_DIR / manifest).is_file()
        assert any(manifest in c for c in s.commands), f"{manifest} has no kubectl twin in {s.id}"
    for required in s.requires:
        assert STEP_IDS.index(required) < STEP_IDS.index(s.id)


def test_unknown_step_is_none() -> None:
    assert get_step("redis-master") is None


def test_kustomization_lists_the_six_manifests_in_tutorial_order() -> None:
    kustomization = yaml.safe_load((MANIFESTS_DIR / "kustomization.yaml").read_text())
    applied = [m for s in STEPS for m in s.manifests]
    assert kustomization["resources"] == applied
    assert len(applied) == 6


def test_manifests_are_byte_identical_to_the_upstream_tutorial() -> None:
    upstreams = sorted(UPSTREAM_FIXTURES.glob("*.yaml"))
    assert len(upstreams) == 6, UPSTREAM_FIXTURES
    for upstream in upstreams:
        assert (MANIFESTS_DIR / upstream.name).read_bytes() == upstream.read_bytes(), upstream.name


def test_manifests_hold_the_tutorial_facts() -> None:
    docs = {p.name: yaml.safe_load(p.read_text()) for p in MANIFESTS_DIR.glob("*-deployment.yaml")}
    leader = docs["redis-leader-deployment.yaml"]
    assert leader["spec"]["replicas"] == 1
    assert leader["spec"]["selector"]["matchLabels"] == {"app": "redis"}
    assert leader["spec"]["template"]["spec"]["containers"][0]["image"].startswith("registry.k8s.io/redis@sha256:")
    follower = docs["redis-follower-deployment.yaml"]
    assert follower["spec"]["replicas"] == 2
    assert "env" not in follower["spec"]["template"]["spec"]["containers"][0]
    frontend = docs["frontend-deployment.yaml"]
    assert frontend["spec"]["replicas"] == 3
    assert "labels" not in frontend["metadata"]
    assert frontend["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "GET_HOSTS_FROM", "value": "dns"}]
