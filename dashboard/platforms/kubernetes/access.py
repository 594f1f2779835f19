"""How the dashboard reaches the pods from where it runs: `--redis-access` and the `--expose nodeport` check.

`RedisAccessChoice` holds the setting and, for `auto` outside a cluster, the decision taken at the first ready
Redis pod: a TCP connect to its pod IP (`pod_ip_answers`, 0.5 s) means pod IPs are dialled, anything else means
the API server's port-forward. In a pod, `auto` dials pod IPs. `url_answers` tells whether a NodePort URL answers
(nothing serves NodePorts on a node without kube-proxy); `nodeport_fallback_note` is what the expose step then
says. Only sockets and HTTP, no API requests: `platform.KubernetesPlatform` asks these.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

import httpx

from dashboard.models import Pod, RedisAccess

log = logging.getLogger(__name__)

NODEPORT_CHECK_SECONDS = 3.0  # --expose nodeport: a NodePort URL that does not answer within this falls back
POD_IP_CONNECT_TIMEOUT = 0.5  # --redis-access auto outside a cluster: a pod IP that does not connect within this


async def pod_ip_answers(host: str, port: int, timeout: float = POD_IP_CONNECT_TIMEOUT) -> tuple[bool, str]:
    """(reachable, what happened): a TCP connect to host:port with a short deadline (for --redis-access auto).

    A refused connection counts as reachable: the pod's own network stack answered (Redis was not listening yet),
    so the route to pod IPs works. A timeout, "No route to host" or "Network is unreachable" does not."""
    started = time.monotonic()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        return False, f"no answer within {timeout:g} s"
    except ConnectionRefusedError:
        return True, "the pod refused the connection: its IP is reachable, Redis was not listening yet"
    except OSError as exc:
        return False, exc.strerror or type(exc).__name__
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, f"connected in {(time.monotonic() - started) * 1000:.0f} ms"


async def url_answers(url: str, seconds: float = NODEPORT_CHECK_SECONDS) -> tuple[bool, str]:
    """(answered, why not): any HTTP answer from `url` within `seconds` (tried again every 0.5 s, as kube-proxy may
    still be programming a new NodePort); `why` is the last failure, e.g. "ConnectError: All connection attempts
    failed"."""
    deadline = time.monotonic() + seconds
    why = "not tried"
    async with httpx.AsyncClient(timeout=min(2.0, seconds), trust_env=False) as client:
        while True:
            try:
                await client.get(url)
                return True, ""
            except httpx.HTTPError as exc:
                why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if time.monotonic() + 0.5 >= deadline:
                return False, why
            await asyncio.sleep(0.5)


def nodeport_fallback_note(note: str | None, url: str, why: str) -> str:
    """What the expose step says when the NodePort URL does not answer and a port-forward is used instead."""
    return (
        f"{note or 'Service frontend is type NodePort.'} But {url} does not answer within "
        f"{NODEPORT_CHECK_SECONDS:g} s ({why.rstrip('.')}): nothing serves NodePorts on this node (no kube-proxy, or "
        "a firewall); using a port-forward to a ready frontend pod instead."
    )


class RedisAccessChoice:
    """--redis-access, and for `auto` outside a cluster what the first ready Redis pod's IP said (kept for the
    platform's life: the network between here and the pods does not change with the pods)."""

    def __init__(self, mode: str, port: int) -> None:
        self.mode = mode
        self.port = port
        self._decided: RedisAccess | None = None

    def status(self, in_cluster: bool) -> RedisAccess:
        """How Redis and the frontend pods are reached, and why; `using` None while auto has not decided."""
        mode = self.mode
        if mode == "direct":
            return RedisAccess(mode, "direct", "--redis-access direct: the dashboard dials pod IPs.")
        if mode == "port-forward":
            reason = "--redis-access port-forward: every connection goes through the API server's pod port-forward."
            return RedisAccess(mode, "port-forward", reason)
        if in_cluster:
            return RedisAccess(mode, "direct", "auto, in a pod: pod IPs are routable from a pod.")
        if self._decided is None:
            reason = (
                "auto: decided at the first ready Redis pod (a TCP connect to its pod IP within "
                f"{POD_IP_CONNECT_TIMEOUT:g} s, else the API server's port-forward)."
            )
            return RedisAccess(mode, None, reason)
        return self._decided

    async def decide(self, pods: Iterable[Pod], in_cluster: bool) -> None:
        """For auto outside a cluster, once: the first ready Redis pod's IP, if it connects, else port-forward."""
        if self.mode != "auto" or self._decided is not None or in_cluster:
            return
        pod = next((p for p in pods if p.component != "frontend" and p.ready and not p.deleting and p.ip), None)
        if pod is None or pod.ip is None:
            return
        connected, what = await pod_ip_answers(pod.ip, self.port)
        where = f"pod IP {pod.ip}:{self.port} of {pod.name}"
        if connected:
            self._decided = RedisAccess(
                self.mode, "direct", f"auto: {where} answers from here ({what}), so pod IPs are dialled."
            )
        else:
            reason = (
                f"auto: {where} does not answer from here ({what}), "
                "so connections go through the API server's port-forward."
            )
            self._decided = RedisAccess(self.mode, "port-forward", reason)
        log.info("%s", self._decided.reason)
