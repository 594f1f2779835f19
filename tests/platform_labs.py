"""The lab on either platform, for the behaviour suites that run the same tests on both (`test_lab`, `test_drills`).

`open_lab("local", tmp)` runs the dashboard app on the real local platform (redis-server processes on loopback);
`open_lab("kubernetes", tmp)` runs it on the Kubernetes platform against the REAL cluster that
GUESTBOOK_LAB_TEST_KUBECONFIG names (`k8s` marker; skipped with the reason without it), in a throwaway namespace
of its own (`guestbook-lab-test-<random>`, always deleted after), with the default `--redis-access auto` (on the
kit pod IPs answer from this machine, so Redis and the frontend pods are dialled directly; the port-forward path
is `tests/test_k8s_cluster_portforward.py`). Tests read the same JSON API on both; what only the cluster has (its
objects, read with the test's own kubernetes client) is on `Lab.v1`/`Lab.apps` in `Lab.namespace`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dashboard.settings import Settings
from dashboard.web import create_app
from tests.k8s_cluster import (
    CLUSTER,
    CONTEXT,
    HX,
    KUBECONFIG,
    NO_CLUSTER,
    cluster_clients,
    cluster_settings,
    namespace_on_cluster,
    timed,
)
from tests.polling import wait_until

PLATFORMS = (
    pytest.param(
        "local",
        id="local",
        marks=pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed"),
    ),
    pytest.param("kubernetes", id="kubernetes", marks=CLUSTER),
)
MAIN_STEPS = ("leader", "followers", "frontend", "expose")


@dataclass
class Lab:
    """One dashboard app on one platform. `namespace`/`v1`/`apps` (the cluster's, for the test's own reads) are
    None on the local platform."""

    platform: str
    client: TestClient
    settings: Settings
    namespace: str | None = None
    v1: Any = None
    apps: Any = None

    def step(self, step: str) -> dict[str, Any]:
        response = self.client.post(f"/api/steps/{step}", headers=HX)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def main_steps(self) -> None:
        for step in MAIN_STEPS:
            body = self.step(step)
            assert body["state"] == "done", body

    def replication(self) -> dict[str, Any]:
        body: dict[str, Any] = self.client.get("/api/replication").json()
        return body

    def in_sync(self, followers: int = 2) -> bool:
        body = self.replication()
        return bool(body["in_sync"]) and len(body["followers"]) == followers

    def drill(self, drill_id: str) -> dict[str, Any]:
        with timed(f"drill {drill_id} on {self.platform}"):  # printed: `pytest -s` shows each drill's time
            response = self.client.post(f"/api/drills/{drill_id}", headers=HX)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["state"] == "done", (body["state"], body.get("error"), body["message"], body["output"][-5:])
        assert body["message"], body
        return body

    def deployments(self) -> dict[str, Any]:
        """The cluster's Deployments in the lab's namespace, by name (kubernetes only)."""
        assert self.apps is not None and self.namespace is not None
        return {d.metadata.name: d for d in self.apps.list_namespaced_deployment(self.namespace).items}

    def cluster_pods(self) -> list[Any]:
        """The cluster's pods in the lab's namespace, Terminating ones too (kubernetes only)."""
        assert self.v1 is not None and self.namespace is not None
        return list(self.v1.list_namespaced_pod(self.namespace).items)

    def pod_processes_gone(self) -> None:
        """After cleanup: nothing of the lab runs (no pod left in the namespace; the local run dir's files)."""
        if self.platform == "kubernetes":
            wait_until(lambda: self.cluster_pods() == [], 60, what="every pod of the lab gone from the namespace")
            return
        run_dir = Path(self.settings.run_dir)
        assert not run_dir.exists() or list(run_dir.iterdir()) == [], list(run_dir.iterdir())


@contextmanager
def open_lab(platform: str, tmp: Path, **overrides: Any) -> Iterator[Lab]:
    """The dashboard app on `platform` (see the module docstring); every process and pod it started is gone after."""
    if platform == "local":
        settings = Settings(**{"run_dir": tmp / "run", "frontend_port": 0, "sample_interval": 0.1, **overrides})
        # `with`: the app's loop lives in one thread for the whole test (pods die with the thread that started them)
        with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
            yield Lab(platform, client, settings)
        return
    assert KUBECONFIG, NO_CLUSTER
    v1, apps = cluster_clients(KUBECONFIG, CONTEXT)
    with namespace_on_cluster() as namespace:
        values = {"step_timeout": 90, "sample_interval": 0.25, "run_dir": tmp / "run"}
        settings = cluster_settings(namespace, tmp, **{**values, **overrides})
        with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
            lab = Lab(platform, client, settings, namespace, v1, apps)
            try:
                yield lab
            finally:  # a failed test still leaves nothing running (the namespace goes anyway)
                if any(s["state"] == "done" for s in client.get("/api/lab").json()["steps"][:4]):
                    client.post("/api/steps/cleanup", headers=HX)
