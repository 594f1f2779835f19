"""How the Kubernetes platform reaches pods, without a cluster: `--redis-access auto`'s pod-IP probe, and which
port-forward refusals fail a step at once (a 403 on the upgrade; no preferred kubelet address, which the kit's
API server never answers) and which pass. The same flows on the real cluster (a 403 port-forward failing the
leader step at once, a NodePort nobody serves falling back to a port-forward) are
`tests/test_k8s_cluster_access.py`."""

from __future__ import annotations

import asyncio
import json
import socket

from dashboard.errors import PlatformError, PlatformRefused
from dashboard.platforms.kubernetes.access import pod_ip_answers
from dashboard.platforms.kubernetes.errors import portforward_refusal


def status_body(code: int, message: str) -> bytes:
    return json.dumps({"kind": "Status", "status": "Failure", "message": message, "code": code}).encode()


def test_403_on_pods_portforward_is_refused_for_good_with_the_rbac_fix() -> None:
    translated = PlatformError("alice may not get pods/portforward in namespace lab (403 Forbidden).", "")
    refusal = portforward_refusal(403, b"", "redis-leader-1", translated)
    assert isinstance(refusal, PlatformRefused)
    assert refusal.message == translated.message
    assert "'get' and 'create' on pods/portforward" in refusal.hint and "--redis-access direct" in refusal.hint


def test_no_preferred_kubelet_address_is_refused_for_good_with_the_address_fix() -> None:
    body = status_body(500, "unable to upgrade connection: no preferred addresses found; known addresses: []")
    refusal = portforward_refusal(500, body, "redis-leader-1", PlatformError("x", ""))
    assert isinstance(refusal, PlatformRefused)
    assert refusal.message == (
        "The API server cannot open a port-forward to pod redis-leader-1: unable to upgrade connection: "
        "no preferred addresses found; known addresses: []."
    )
    assert "--kubelet-preferred-address-types" in refusal.hint and "--redis-access direct" in refusal.hint


def test_a_passing_failure_is_not_refused_for_good() -> None:
    assert portforward_refusal(503, status_body(503, "the server is shutting down"), "p", PlatformError("x")) is None
    assert portforward_refusal(404, status_body(404, 'pods "p" not found'), "p", PlatformError("x")) is None


def test_pod_ip_answers_counts_a_refused_connection_as_reachable() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        port = listening.getsockname()[1]
        reachable, what = asyncio.run(pod_ip_answers("127.0.0.1", port))
        assert reachable and what.startswith("connected in")
    reachable, what = asyncio.run(pod_ip_answers("127.0.0.1", port))  # closed now: refused, yet reachable
    assert reachable and "refused" in what
