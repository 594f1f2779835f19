"""The Kubernetes platform through its real client code path (kubeconfig, ApiClient, urllib3, watch streams)
against `tests/k8s_double/`, an HTTP-level double of the API server, for what a real cluster cannot be made to
show on demand: every open watch ended with 410 Gone (as after an API server restart or an etcd compaction) and
the relist after it; a watch resumed from its resourceVersion without a relist; a 503 with Retry-After (an
overloaded or restarting API server) and the recovery after it; the namespace and everything in it deleted at
once under a running dashboard; a rejected (expired) token, an API server that refuses the connection, a missing
kubeconfig or context; a NodePort that answers (the kit has no kube-proxy); and the exact count of requests that
many viewers cause (none). What a real cluster shows (apply,
cleanup, 403s, namespaces, pods, endpoints, logs, events, rollout status) is `tests/test_k8s_cluster*.py`.

Each test writes a kubeconfig into tmp_path that points at the double's http://127.0.0.1:PORT, builds its own
Settings and runs its body with `asyncio.run`. Pod IPs are 127.0.0.x and nothing dials them.
"""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dashboard.errors import PlatformUnavailable
from dashboard.platforms.kubernetes import KubernetesPlatform, reflector
from dashboard.settings import Settings
from tests.k8s_double import KubernetesApiDouble
from tests.k8s_helpers import apply_all, run, settings_for
from tests.polling import until


@pytest.fixture
def double() -> Any:
    with KubernetesApiDouble(pod_grace=0.1) as api:
        yield api


def test_watch_relists_after_410_gone_and_listeners_hear_every_change(
    double: KubernetesApiDouble, tmp_path: Path
) -> None:
    platform = KubernetesPlatform(settings_for(double, tmp_path))
    calls: list[float] = []
    platform.add_listener(lambda: calls.append(time.monotonic()))

    async def body() -> None:
        await platform.apply("redis-leader-deployment.yaml")
        await platform.apply("redis-follower-deployment.yaml")
        await until(lambda: len(platform._pods) == 3, what="three redis pods")
        assert platform.watch_stats()["lists"] == 1
        heard = len(calls)
        assert heard >= 1
        double.expire_watches()  # every open watch gets the recorded 410 Gone ERROR event
        await until(lambda: platform.watch_stats()["lists"] == 2, what="relist after 410")
        await platform.scale("redis-follower", 3)
        await until(lambda: len(platform._pods) == 4, what="the third follower, seen through the new watch")
        assert len(calls) > heard
        assert platform.watch_stats()["error"] is None

    run(platform, body)
    assert double.count("list", "pods") == 2


def test_watch_resumes_from_resource_version_without_relisting(
    double: KubernetesApiDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reflector, "WATCH_TIMEOUT_SECONDS", 1)  # the server ends each watch after 1 s
    platform = KubernetesPlatform(settings_for(double, tmp_path))

    async def body() -> None:
        await until(lambda: int(str(platform.watch_stats()["watches"])) >= 3, timeout=8, what="three watches")
        await platform.apply("redis-leader-deployment.yaml")
        await until(lambda: len(platform._pods) == 1, what="leader pod")
        assert platform.watch_stats()["lists"] == 1

    run(platform, body)
    assert double.count("list", "pods") == 1


def test_configuration_errors(double: KubernetesApiDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    nowhere = KubernetesPlatform(settings_for(double, tmp_path, kubeconfig=tmp_path / "absent"))
    with pytest.raises(PlatformUnavailable, match="No kubeconfig was found"):
        asyncio.run(nowhere.start())
    context = KubernetesPlatform(settings_for(double, tmp_path, context="prod"))
    with pytest.raises(PlatformUnavailable, match=r"no context named 'prod' \(available: double\)"):
        asyncio.run(context.start())
    bad_token = tmp_path / "bad"
    double.write_kubeconfig(bad_token, token="wrong")
    with pytest.raises(PlatformUnavailable, match="rejected the credentials"):
        asyncio.run(KubernetesPlatform(settings_for(double, tmp_path, kubeconfig=bad_token)).start())
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = tmp_path / "closed"
    closed.write_text(bad_token.read_text().replace(double.url, f"http://127.0.0.1:{port}"))
    with pytest.raises(PlatformUnavailable, match=f"The API server at http://127.0.0.1:{port} refused the connection"):
        asyncio.run(KubernetesPlatform(settings_for(double, tmp_path, kubeconfig=closed)).start())


@pytest.mark.parametrize(
    "text",
    ["", "[]", "contexts: 5", "contexts: [1, 2]", "{{{", "contexts:\n- name: a\n  context: 3\ncurrent-context: a\n"],
    ids=["empty", "a list", "contexts a number", "contexts of numbers", "not YAML", "a context a number"],
)
def test_a_malformed_kubeconfig_is_one_sentence(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    platform = KubernetesPlatform(Settings(platform="kubernetes", kubeconfig=path, run_dir=tmp_path / "run"))
    with pytest.raises(PlatformUnavailable, match=f"^The kubeconfig {path} cannot be used") as caught:
        asyncio.run(platform.start())
    assert "kubectl config view" in caught.value.hint


def test_nodeport_expose_uses_a_node_address(double: KubernetesApiDouble, tmp_path: Path) -> None:
    """The node address + nodePort, once it answers (here a server on the double's node port plays kube-proxy)."""
    platform = KubernetesPlatform(settings_for(double, tmp_path, expose_mode="nodeport"))
    try:
        node_port = http.server.ThreadingHTTPServer(("127.0.0.1", 30303), http.server.BaseHTTPRequestHandler)
    except OSError:
        pytest.skip("127.0.0.1:30303 (the double's nodePort) is in use")
    threading.Thread(target=node_port.serve_forever, daemon=True).start()

    async def body() -> None:
        await platform.apply("frontend-service.yaml")
        assert await platform.expose() == "http://127.0.0.1:30303"
        assert platform.expose_note() == "Service frontend is type NodePort: port 30303 on every node."

    try:
        run(platform, body)
    finally:
        node_port.shutdown()
        node_port.server_close()


def test_many_viewers_cost_no_requests(double: KubernetesApiDouble, tmp_path: Path) -> None:
    platform = KubernetesPlatform(settings_for(double, tmp_path))

    async def body() -> None:
        await apply_all(platform)
        await until(lambda: len(platform._pods) == 6, what="six pods")
        before = len(double.requests)
        for _ in range(3):
            await asyncio.gather(
                *(platform.get_pods() for _ in range(50)), *(platform.redis_endpoints() for _ in range(50))
            )
        assert len(double.requests) == before

    run(platform, body)


def test_503_and_429_with_retry_after_say_when_to_retry_and_the_step_recovers(
    double: KubernetesApiDouble, tmp_path: Path
) -> None:
    """An API server that is overloaded or restarting: one sentence with its Retry-After; then it answers again."""
    platform = KubernetesPlatform(settings_for(double, tmp_path))

    async def body() -> None:
        double.fail("patch", "deployments", 503, retry_after="7")
        with pytest.raises(PlatformUnavailable) as caught:
            await platform.apply("redis-leader-deployment.yaml")
        assert caught.value.message == (
            "The API server did not answer patch deployment.apps/redis-leader in namespace guestbook in time "
            "(503 ServiceUnavailable)."
        ), caught.value.message
        assert caught.value.hint.startswith("Retry in 7 seconds"), caught.value.hint
        double.fail("patch", "deployments", 429, retry_after="3")  # API Priority and Fairness rejecting the request
        with pytest.raises(PlatformUnavailable) as caught:
            await platform.apply("redis-leader-deployment.yaml")
        assert caught.value.message == (
            "The API server is throttling requests and did not patch deployment.apps/redis-leader in namespace "
            "guestbook (429 Too Many Requests)."
        ), caught.value.message
        assert caught.value.hint.startswith("Retry in 3 seconds"), caught.value.hint
        double.heal()
        assert await platform.apply("redis-leader-deployment.yaml") == ["deployment.apps/redis-leader created"]

    run(platform, body)


def test_the_namespace_deleted_under_the_dashboard(double: KubernetesApiDouble, tmp_path: Path) -> None:
    """Someone deletes the lab's namespace while the dashboard runs: the board empties, the next step says why."""
    platform = KubernetesPlatform(settings_for(double, tmp_path))

    async def body() -> None:
        await platform.apply("redis-leader-deployment.yaml")
        await until(lambda: len(platform._pods) == 1, what="the leader pod")
        double.delete_namespace("guestbook")
        await until(lambda: platform._pods == [], what="the board emptied by the watch's DELETED events")
        with pytest.raises(PlatformUnavailable) as caught:
            await platform.apply("redis-leader-deployment.yaml")
        assert caught.value.message == "Namespace guestbook does not exist."

    run(platform, body)
