"""The pre-flight page and API in the web app (`dashboard.preflight`).

Kubernetes: only the fault a real cluster cannot show on demand, the API server gone while the dashboard runs
(the app runs the real Kubernetes platform against `tests/k8s_double/`, which then closes); what a missing right
blocks, the page, and the events timeline are on the real cluster (`tests/test_k8s_cluster_access.py`,
`tests/test_k8s_cluster_lab.py`). Local: the app runs the real local platform (no lab applied), and its
pre-flight looks at this machine (redis-server, run dir, frontend port).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dashboard.settings import Settings
from dashboard.web import create_app
from tests.k8s_double import KubernetesApiDouble
from tests.k8s_helpers import settings_for


@pytest.fixture
def double() -> Iterator[KubernetesApiDouble]:
    with KubernetesApiDouble(pod_grace=0.1) as api:
        yield api


def test_preflight_when_the_cluster_is_gone_is_one_sentence(double: KubernetesApiDouble, tmp_path: Path) -> None:
    settings = settings_for(double, tmp_path, redis_access="auto")
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        double.close()
        report = client.get("/api/preflight").json()
        assert report["ok"] is False and report["checks"] == []
        assert report["error"]["error"].startswith(f"The API server at {double.url}")
        assert "Traceback" not in client.get("/preflight").text


@pytest.fixture
def local_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(run_dir=tmp_path / "run", frontend_port=0)
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        yield client


def test_local_preflight_and_no_events(local_client: TestClient) -> None:
    report = local_client.get("/api/preflight").json()
    assert report["platform"] == "local" and "needs no cluster" in report["message"]
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) == {"redis-server", "run directory", "frontend port"}
    assert checks["run directory"]["ok"] and "will be created" in checks["run directory"]["detail"]
    assert checks["frontend port"]["ok"]
    redis = checks["redis-server"]
    if redis["ok"]:
        assert redis["version"] and redis["path"] and report["ok"] is True
    else:
        assert redis["blocks"] == ["leader", "followers"]
    assert local_client.get("/api/events").json() == []
    assert 'id="panel-events"' not in local_client.get("/").text
    assert 'href="/preflight"' not in local_client.get("/").text
    page = local_client.get("/preflight")
    assert page.status_code == 200 and "redis-server" in page.text and "This machine" in page.text


def test_local_preflight_reports_what_blocks(tmp_path: Path) -> None:
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o500)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        settings = Settings(
            run_dir=readonly / "run", frontend_port=busy.getsockname()[1], redis_server="no-such-redis-server"
        )
        try:
            with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
                report = client.get("/api/preflight").json()
        finally:
            readonly.chmod(0o700)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"] is False
    assert checks["redis-server"]["blocks"] == ["leader", "followers"]
    assert "no-such-redis-server was not found" in checks["redis-server"]["detail"]
    assert checks["frontend port"]["blocks"] == ["expose"] and "in use" in checks["frontend port"]["detail"]
    if os.geteuid() != 0:  # root writes anywhere
        assert checks["run directory"]["blocks"] == ["leader"]
    assert set(report["blocked"]) >= {"leader", "followers", "expose"}
