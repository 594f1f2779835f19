"""The lab on either platform, for the behaviour suites that run the same tests on both (`test_lab`, `test_drills`).

`open_lab("local", tmp)` runs the dashboard app on the real local platform (redis-server processes on loopback);
`open_lab("kubernetes", tmp)` runs it on the Kubernetes platform against `tests/k8s_double/`, through the real
kubernetes client, with the `LoopbackKubelet`'s real processes behind the pods and Redis and the frontend reached
only through WebSocket port-forwards (as from a laptop). Tests read the same JSON API on both; what only one
platform has (the double's objects and port-forwards) is on `Lab.double`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from dashboard.settings import Settings
from dashboard.web import create_app
from tests.k8s_double import KubernetesApiDouble, LoopbackKubelet
from tests.polling import wait_until

PLATFORMS = ("local", "kubernetes")
HX = {"HX-Request": "true"}
MAIN_STEPS = ("leader", "followers", "frontend", "expose")


@dataclass
class Lab:
    """One dashboard app on one platform. `double`/`kubelet` are None on the local platform."""

    platform: str
    client: TestClient
    settings: Settings
    double: KubernetesApiDouble | None = None
    kubelet: LoopbackKubelet | None = None

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
        response = self.client.post(f"/api/drills/{drill_id}", headers=HX)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["state"] == "done", (body["state"], body.get("error"), body["message"], body["output"][-5:])
        assert body["message"], body
        return body

    def pod_processes_gone(self) -> None:
        """After cleanup: nothing of the lab runs (the kubelet's processes; the local run dir's files)."""
        if self.kubelet is not None:
            kubelet = self.kubelet
            wait_until(lambda: kubelet.running() == [], what="every process behind the pods stopped")
        run_dir = Path(self.settings.run_dir)
        if self.platform == "local":
            assert not run_dir.exists() or list(run_dir.iterdir()) == [], list(run_dir.iterdir())


@contextmanager
def open_lab(platform: str, tmp: Path, **overrides: Any) -> Iterator[Lab]:
    """The dashboard app on `platform` (see the module docstring); every process it started is gone after."""
    if platform == "local":
        settings = Settings(**{"run_dir": tmp / "run", "frontend_port": 0, "sample_interval": 0.1, **overrides})
        # `with`: the app's loop lives in one thread for the whole test (pods die with the thread that started them)
        with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
            yield Lab(platform, client, settings)
        return
    (tmp / "pods").mkdir()
    kubelet = LoopbackKubelet(tmp / "pods")
    try:
        with KubernetesApiDouble(pod_grace=0.1, kubelet=kubelet) as double:
            values: dict[str, Any] = {
                "platform": "kubernetes",
                "kubeconfig": double.write_kubeconfig(tmp / "kubeconfig"),
                "namespace": "guestbook",
                "redis_access": "port-forward",
                "frontend_port": 0,
                "step_timeout": 60,
                "sample_interval": 0.2,
                "run_dir": tmp / "run",
            }
            settings = Settings(**{**values, **overrides})
            with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
                yield Lab(platform, client, settings, double, kubelet)
    finally:
        kubelet.close()
