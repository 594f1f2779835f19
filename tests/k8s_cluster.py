"""What every real-cluster test module shares (`k8s` marker): the cluster, throwaway namespaces, identities, timings.

The `k8s` tests run only when GUESTBOOK_LAB_TEST_KUBECONFIG names a kubeconfig (its current context, or
GUESTBOOK_LAB_TEST_CONTEXT); `CLUSTER` is the marks that say so (`pytestmark = [*CLUSTER, pytest.mark.timeout(N)]`),
skipping with that reason otherwise. `namespace_on_cluster()` is a namespace `guestbook-lab-test-<random>` the suite
creates for itself and always deletes, waiting for it (the `namespace` fixture of `tests/conftest.py` wraps it);
`cluster_settings()` the dashboard's settings for it. The test's own checks use clients of their own, never the
dashboard's.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboard.platforms.kubernetes import KubernetesPlatform
from dashboard.settings import MANIFESTS_DIR, Settings
from tests.polling import wait_until

KUBECONFIG = os.environ.get("GUESTBOOK_LAB_TEST_KUBECONFIG")
CONTEXT = os.environ.get("GUESTBOOK_LAB_TEST_CONTEXT") or None
NO_CLUSTER = "set GUESTBOOK_LAB_TEST_KUBECONFIG to a kubeconfig to run the lab on a real cluster"
CLUSTER = [pytest.mark.k8s, pytest.mark.skipif(not KUBECONFIG, reason=NO_CLUSTER)]
HX = {"HX-Request": "true"}  # the dashboard refuses a state change without it (or a bearer token)


def cluster_clients(kubeconfig: str, context: str | None) -> tuple[Any, Any]:
    """CoreV1Api and AppsV1Api for the test's own checks (independent of the dashboard's client)."""
    from kubernetes import client

    api_client = admin_api_client(kubeconfig, context)
    return client.CoreV1Api(api_client), client.AppsV1Api(api_client)


@contextmanager
def throwaway_namespace(v1: Any, timeout: float = 180) -> Iterator[str]:
    """A namespace this suite creates for itself (refusing one that exists) and always deletes, waiting for it."""
    name = f"guestbook-lab-test-{secrets.token_hex(3)}"
    if not namespace_gone(v1, name):
        pytest.fail(f"namespace {name} already exists; this suite only uses a namespace it creates itself")
    body = {"metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "guestbook-lab-test"}}}
    v1.create_namespace(body)  # 409 if it appeared meanwhile: then it is not ours, and nothing deletes it
    try:
        yield name
    finally:
        v1.delete_namespace(name)
        wait_until(lambda: namespace_gone(v1, name), timeout, f"namespace {name} to be deleted", interval=0.5)


def namespace_gone(v1: Any, name: str) -> bool:
    """The API server answers 404 for the namespace (a Terminating one is not gone yet; another error raises)."""
    return ignore_404(lambda: v1.read_namespace(name))


def ignore_404(call: Callable[[], object]) -> bool:
    """Make the API call (a read or a delete); True if the object was not there (404), other errors raise."""
    from kubernetes.client.exceptions import ApiException

    try:
        call()
    except ApiException as exc:
        if exc.status != 404:
            raise
        return True
    return False


def admin_api_client(kubeconfig: str, context: str | None) -> Any:
    """A kubernetes ApiClient with the admin kubeconfig (the test's own, never the dashboard's)."""
    from kubernetes import config

    kube_config: Any = config
    return kube_config.new_client_from_config(config_file=str(Path(kubeconfig).expanduser()), context=context)


TIMES: dict[str, float] = {}  # what took how long on the real cluster, printed for the note (pytest -s shows it)


@contextmanager
def timed(what: str) -> Iterator[None]:
    """Measure `what` and print it (to the captured output; `pytest -s` shows it live)."""
    started = time.monotonic()
    try:
        yield
    finally:
        TIMES[what] = time.monotonic() - started
        print(f"[k8s timing] {what}: {TIMES[what]:.2f} s", file=sys.stderr)


def identity_kubeconfig(
    api_client: Any,
    kubeconfig: str,
    context: str | None,
    namespace: str,
    name: str,
    rules: list[dict[str, Any]],
    path: Path,
) -> Path:
    """A ServiceAccount `name` in `namespace` bound to a Role with exactly `rules`, and a kubeconfig at `path` that
    authenticates as it with a token from the TokenRequest API (10 minutes). Everything lives in `namespace`."""
    from kubernetes import client

    v1 = client.CoreV1Api(api_client)
    rbac = client.RbacAuthorizationV1Api(api_client)
    labels = {"app.kubernetes.io/managed-by": "guestbook-lab-test"}
    v1.create_namespaced_service_account(namespace, {"metadata": {"name": name, "labels": labels}})
    rbac.create_namespaced_role(namespace, {"metadata": {"name": name, "labels": labels}, "rules": rules})
    binding = {
        "metadata": {"name": name, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }
    rbac.create_namespaced_role_binding(namespace, binding)
    request = {"spec": {"audiences": [], "expirationSeconds": 600}}
    token = v1.create_namespaced_service_account_token(name, namespace, request).status.token
    server, ca = cluster_endpoint(kubeconfig, context)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "cluster", "user": name, "namespace": namespace}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def cluster_endpoint(kubeconfig: str, context: str | None) -> tuple[str, str]:
    """(server URL, base64 CA bundle) of the kubeconfig's context, for a kubeconfig of another identity."""
    config = yaml.safe_load(Path(kubeconfig).expanduser().read_text())
    ctx_name = context or config["current-context"]
    ctx = next(c["context"] for c in config["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == ctx["cluster"])
    ca = cluster.get("certificate-authority-data")
    if not ca and cluster.get("certificate-authority"):
        ca = base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
    return str(cluster["server"]), str(ca or "")


def apiserver_counter(api_client: Any, metric: str, **labels: str) -> float:
    """The sum of the API server's `metric` (from GET /metrics, as the admin) over series with these labels."""
    response = api_client.call_api(
        *api_client.param_serialize(
            method="GET",
            resource_path="/metrics",
            header_params={"Accept": "text/plain"},
            auth_settings=["BearerToken"],
        ),
        _request_timeout=(5, 30),
    )
    text = response.read().decode()
    total = 0.0
    pattern = re.compile(rf"^{re.escape(metric)}\{{(?P<labels>[^}}]*)\}} (?P<value>\S+)$")
    for line in text.splitlines():
        match = pattern.match(line)
        if not match:
            continue
        series = dict(re.findall(r'(\w+)="([^"]*)"', match.group("labels")))
        if all(series.get(k) == v for k, v in labels.items()):
            total += float(match.group("value"))
    return total


def dashboard_role_rules() -> list[dict[str, Any]]:
    """The rules of manifests/dashboard/role.yaml, exactly."""
    role = yaml.safe_load((MANIFESTS_DIR / "dashboard" / "role.yaml").read_text())
    return list(role["rules"])


@contextmanager
def namespace_on_cluster() -> Iterator[str]:
    """A throwaway namespace on the test cluster (see `throwaway_namespace`)."""
    assert KUBECONFIG, NO_CLUSTER
    v1, _ = cluster_clients(KUBECONFIG, CONTEXT)
    with throwaway_namespace(v1, timeout=90) as name:
        yield name


def cluster_settings(namespace: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for the Kubernetes platform on the test cluster, in `namespace` (pod IPs dialled: auto)."""
    assert KUBECONFIG, NO_CLUSTER
    values: dict[str, Any] = {
        "platform": "kubernetes",
        "kubeconfig": Path(KUBECONFIG),
        "context": CONTEXT,
        "namespace": namespace,
        "redis_access": "auto",
        "frontend_port": 0,
        "step_timeout": 60,
        "run_dir": tmp_path,
    }
    values.update(overrides)
    return Settings(**values)


async def ready_pods(platform: KubernetesPlatform, count: int) -> bool:
    pods = await platform.get_pods()
    return len(pods) == count and all(p.ready for p in pods)
