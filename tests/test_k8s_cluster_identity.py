"""Identities on a REAL cluster (`k8s` marker; setup in `tests/k8s_cluster.py`): what RBAC and the API server say.

- A forbidden identity: a ServiceAccount whose Role lacks `patch` on Deployments, its token from the TokenRequest
  API in a kubeconfig of its own; the leader step fails with one sentence naming the verb and the resource, and
  the pre-flight says which steps that blocks.
- No periodic LIST while viewed: the dashboard runs as a ServiceAccount with the Role of `manifests/dashboard/`;
  a FlowSchema of the test's own (API Priority and Fairness) classifies exactly that identity's LIST requests on
  pods and events in the test namespace, so the API server's own counter
  (`apiserver_flowcontrol_dispatched_requests_total{flow_schema=...}` on `/metrics`) counts them, whoever else
  uses the cluster. A LIST the test sends as that identity proves the counter counts; then the page, its SSE
  stream and the JSON API are viewed for some seconds, and the counter must not move.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from dashboard.web import create_app
from tests.conftest import StartDashboard
from tests.k8s_cluster import (
    CLUSTER,
    CONTEXT,
    HX,
    KUBECONFIG,
    admin_api_client,
    apiserver_counter,
    cluster_settings,
    dashboard_role_rules,
    identity_kubeconfig,
    ignore_404,
    namespace_on_cluster,
    timed,
)
from tests.k8s_helpers import poll

VIEW_SECONDS = 8.0
DISPATCHED = "apiserver_flowcontrol_dispatched_requests_total"

pytestmark = [*CLUSTER, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def admin() -> Any:
    assert KUBECONFIG
    return admin_api_client(KUBECONFIG, CONTEXT)


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:  # one for the module (the conftest's is one per test)
    with namespace_on_cluster() as name:
        yield name


def test_a_forbidden_identity_gets_one_sentence_naming_verb_and_resource(
    admin: Any, namespace: str, tmp_path: Path
) -> None:
    assert KUBECONFIG
    rules = [  # may watch the lab and read Deployments, but not apply them
        {"apiGroups": [""], "resources": ["pods", "events"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]},
    ]
    kubeconfig = identity_kubeconfig(
        admin, KUBECONFIG, CONTEXT, namespace, "too-few-rights", rules, tmp_path / "kubeconfig"
    )
    values = {"context": None, "redis_access": "port-forward", "step_timeout": 30, "run_dir": tmp_path / "run"}
    settings = cluster_settings(namespace, tmp_path, kubeconfig=kubeconfig, **values)
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        report = client.get("/api/preflight").json()
        assert report["ok"] is False and "leader" in report["blocked"], report
        denied = {c["verb"] + " " + c["resource"] for c in report["checks"] if c["allowed"] is False}
        assert "patch deployments.apps" in denied and "create services" in denied, denied
        assert "list pods" not in denied
        with timed("forbidden leader step"):
            response = client.post("/api/steps/leader", headers=HX)
        assert response.status_code == 200, response.text
        step = response.json()
        assert step["state"] == "failed", step
        user = f"system:serviceaccount:{namespace}:too-few-rights"
        assert step["message"].startswith(
            f"{user} may not patch deployments.apps in namespace {namespace} (403 Forbidden)."
        ), step["message"]
        assert "Traceback" not in step["message"] and step["message"].count(". ") <= 2, step["message"]


def flow_schema(name: str, namespace: str, service_account: str) -> dict[str, Any]:
    """A FlowSchema that matches only `service_account`'s LIST of pods and events in `namespace`."""
    return {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "guestbook-lab-test"}},
        "spec": {
            "matchingPrecedence": 600,  # before service-accounts (9000); exempt and system schemas stay first
            "priorityLevelConfiguration": {"name": "workload-low"},
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": [
                        {"kind": "ServiceAccount", "serviceAccount": {"name": service_account, "namespace": namespace}}
                    ],
                    "resourceRules": [
                        {
                            "verbs": ["list"],
                            "apiGroups": [""],
                            "resources": ["pods", "events"],
                            "namespaces": [namespace],
                        }
                    ],
                }
            ],
        },
    }


def view_for(url: str, seconds: float) -> dict[str, int]:
    """What a browser does while the page is open: the page, its SSE stream, the panels' JSON, for `seconds`."""
    seen = {"sse_bytes": 0, "requests": 0}
    stop = threading.Event()

    def stream() -> None:
        with (
            httpx.Client(base_url=url, timeout=seconds + 10, trust_env=False) as client,
            client.stream("GET", "/events") as response,
        ):
            for chunk in response.iter_bytes():
                seen["sse_bytes"] += len(chunk)
                if stop.is_set():
                    return

    thread = threading.Thread(target=stream, daemon=True)
    thread.start()
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
        while time.monotonic() < deadline:
            for path in ("/", "/api/pods", "/api/replication", "/api/events", "/api/lab", "/fragments/pods"):
                assert client.get(path).status_code == 200, path
                seen["requests"] += 1
            time.sleep(0.5)
    stop.set()
    thread.join(timeout=5)  # a keep-alive line arrives at least every few seconds and ends the stream
    return seen


def test_no_periodic_list_while_the_dashboard_is_viewed(
    admin: Any, namespace: str, tmp_path: Path, start_dashboard: StartDashboard
) -> None:
    assert KUBECONFIG
    from kubernetes import client as k8s_client

    name = f"dashboard-{namespace}"
    kubeconfig = identity_kubeconfig(
        admin, KUBECONFIG, CONTEXT, namespace, "guestbook-lab-dashboard", dashboard_role_rules(), tmp_path / "kc"
    )
    flowcontrol = k8s_client.FlowcontrolApiserverV1Api(admin)
    flowcontrol.create_flow_schema(flow_schema(name, namespace, "guestbook-lab-dashboard"))
    try:
        # The counter counts this identity's LISTs: one LIST as the dashboard's ServiceAccount moves it by one.
        as_dashboard = k8s_client.CoreV1Api(admin_api_client(str(kubeconfig), None))

        def counted() -> bool:
            before = apiserver_counter(admin, DISPATCHED, flow_schema=name)
            as_dashboard.list_namespaced_pod(namespace)
            return apiserver_counter(admin, DISPATCHED, flow_schema=name) == before + 1

        poll(counted, 30, f"the API server to classify LISTs with FlowSchema {name}", interval=0.5)
        at_start = apiserver_counter(admin, DISPATCHED, flow_schema=name)
        dash = start_dashboard(
            None,
            "--platform",
            "kubernetes",
            "--kubeconfig",
            str(kubeconfig),
            "--namespace",
            namespace,
            "--redis-access",
            "port-forward",
            "--step-timeout",
            "90",
        )
        for step in ("leader", "followers"):
            response = dash.step(step)
            assert response.status_code == 200 and response.json()["state"] == "done", response.text
        before = apiserver_counter(admin, DISPATCHED, flow_schema=name)
        assert before - at_start >= 2, "the dashboard's own first LISTs (pods, events) were not counted"
        pods_lists = apiserver_counter(admin, "apiserver_request_total", verb="LIST", resource="pods")
        with timed(f"viewing the dashboard for {VIEW_SECONDS:g} s"):
            seen = view_for(dash.url, VIEW_SECONDS)
        after = apiserver_counter(admin, DISPATCHED, flow_schema=name)
        everyone = apiserver_counter(admin, "apiserver_request_total", verb="LIST", resource="pods") - pods_lists
        print(f"[k8s] LIST pods/events by the dashboard while viewed: {after - before:g}; cluster-wide: {everyone:g}")
        assert seen["sse_bytes"] > 0 and seen["requests"] >= 12, seen
        assert after - before == 0, f"the dashboard sent {after - before:g} LIST requests while viewed"
        assert dash.proc.poll() is None
    finally:
        ignore_404(lambda: flowcontrol.delete_flow_schema(name))


def test_403_on_the_pod_watch_fails_start_with_the_verb(admin: Any, namespace: str, tmp_path: Path) -> None:
    """An identity that may apply but not list pods: the platform cannot start its pod watch, and says which verb."""
    assert KUBECONFIG
    from dashboard.errors import PlatformError
    from dashboard.platforms.kubernetes import KubernetesPlatform

    rules = [r for r in dashboard_role_rules() if r["resources"] != ["pods"]]
    rules.append({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]})  # no list, no watch
    kubeconfig = identity_kubeconfig(admin, KUBECONFIG, CONTEXT, namespace, "no-pod-list", rules, tmp_path / "kc")
    platform = KubernetesPlatform(cluster_settings(namespace, tmp_path, kubeconfig=kubeconfig, context=None))
    with pytest.raises(PlatformError, match=f"no-pod-list may not list pods in namespace {namespace}"):
        asyncio.run(platform.start())
