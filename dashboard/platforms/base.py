"""The `Platform` protocol, named with kubectl's verbs, plus what both implementations use: `notify` (the listener
fan-out) and `component_for` (which lab component the manifests' labels name). Imports nothing of its implementations.

A platform turns the lab's manifests into running pods and reports what runs. The local platform runs
real `redis-server` processes and the Python guestbook frontend on loopback; the Kubernetes platform
drives a cluster with the official client. Both hand the dashboard addresses it can dial from here
(`RedisEndpoint`, frontend base URLs), so the sampler, the checks and the web layer never know which one runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from dashboard.models import (
    Capabilities,
    Component,
    EventRow,
    Listener,
    LogLine,
    PlatformName,
    Pod,
    RedisAccess,
    RedisEndpoint,
    Timing,
)

log = logging.getLogger(__name__)


def notify(listeners: list[Listener], what: str) -> None:
    """Call each listener (on the event loop); one that fails is logged and the others still hear."""
    for listener in list(listeners):
        try:
            listener()
        except Exception:
            log.exception("%s listener failed", what)


REDIS_ROLES: dict[str, Component] = {"leader": "redis-leader", "follower": "redis-follower"}


def component_for(labels: Mapping[str, Any]) -> Component | None:
    """Which lab component pods with these labels (or a Service selecting them) are, by the tutorial's labels:
    app=redis with role=leader or role=follower, app=guestbook with tier=frontend."""
    if labels.get("app") == "redis":
        return REDIS_ROLES.get(str(labels.get("role")))
    return "frontend" if labels.get("app") == "guestbook" and labels.get("tier") == "frontend" else None


@runtime_checkable
class Platform(Protocol):
    """Where the lab runs. All methods are coroutines run on the dashboard's event loop.

    Errors a user can act on are raised as `dashboard.errors.DashboardError` subclasses, never as library exceptions.
    """

    name: PlatformName
    capabilities: Capabilities  # what templates and routes branch on (events, access reviews, expose modes)
    timing: Timing  # how often a step's check polls and how long it may take (--step-timeout overrides)

    async def start(self) -> None:
        """Connect and prepare (local: reap orphans of a killed dashboard; kubernetes: load config, watch pods)."""

    async def close(self) -> None:
        """Stop what the dashboard started. Local: every process of the lab. Kubernetes: port-forwards and watches."""

    def add_listener(self, listener: Listener) -> None:
        """Call `listener()` on the event loop whenever pods change: created, ready, died, restarted, deleted."""

    def add_event_listener(self, listener: Listener) -> None:
        """Call `listener()` on the event loop whenever the lab's events change (never, without events)."""

    async def events(self, limit: int = 200) -> list[EventRow]:
        """The lab's events (`kubectl events`), oldest first; [] on a platform without events."""

    async def preflight(self) -> dict[str, Any]:
        """Can the lab run here? A JSON report: `platform`, `ok`, `checks` (each with `blocks`), `blocked`, and what
        the platform knows (Kubernetes: context, server, version, namespace, access reviews; local: redis-server,
        run dir, frontend port). A broken configuration is reported (`error`), not raised."""

    async def prepare_learner(self, room: str) -> list[str]:
        """Make this lab a workshop learner's own in room `room`, before `start()`; only called when
        `capabilities.isolates_labs`. Kubernetes: the namespace (labelled with the room, Pod Security labels), a
        ResourceQuota and LimitRange sized from the manifests, a NetworkPolicy, a Role + RoleBinding, and the
        room's shared watches. Local: nothing (each lab has its own processes, ports and run dir anyway)."""

    async def remove_learner(self) -> list[str]:
        """Undo `prepare_learner` when the instructor removes the learner: delete only what it created."""

    async def apply(self, manifest: str) -> list[str]:
        """`kubectl apply -f manifests/<manifest>`: create or update its object; idempotent.

        Returns kubectl-like lines, e.g. ["deployment.apps/redis-leader created"] or [... "unchanged"].
        """

    async def scale(self, deployment: str, replicas: int) -> list[str]:
        """`kubectl scale deployment/<deployment> --replicas=N`."""

    async def delete_pod(self, name: str) -> list[str]:
        """`kubectl delete pod <name>` (a failure drill); its Deployment replaces it."""

    async def delete_lab(self) -> list[str]:
        """The tutorial's cleanup: delete exactly what the lab created and wait until its pods are gone."""

    async def leftovers(self) -> list[str]:
        """What of the lab still exists (objects, processes, files, bound ports), in words; [] when clean."""

    async def get_pods(self) -> list[Pod]:
        """The lab's pods (leader, followers, frontend), as kubectl would list them."""

    async def rollout_status(self, deployment: str, service: str) -> str | None:
        """None when `kubectl rollout status deployment/<deployment>` would succeed and Service <service> has a
        ready endpoint; otherwise why not, in one sentence (what kubectl or the EndpointSlices would say)."""

    async def redis_endpoints(self) -> list[RedisEndpoint]:
        """Each Redis pod that runs, with an address the dashboard can dial (pod IP, loopback port or port-forward)."""

    async def frontend_endpoints(self) -> list[str]:
        """Base URLs (no trailing slash) of each ready frontend pod, reachable from the dashboard."""

    def redis_access(self) -> RedisAccess:
        """How `redis_endpoints` and `frontend_endpoints` reach the pods, and why (Kubernetes: pod IPs or the API
        server's port-forward, per --redis-access; local: loopback ports)."""

    async def expose(self) -> str:
        """Publish the frontend Service (local: a supervised forward on --frontend-port); returns the URL users open."""

    def expose_note(self) -> str | None:
        """What a user should know about how the frontend is published, in one sentence, or None: the port was busy
        and another was used; the Service is a NodePort; the LoadBalancer's EXTERNAL-IP is <pending>, so a
        port-forward serves meanwhile."""

    def frontend_url(self) -> str | None:
        """The URL published by `expose`, or None before it."""

    def expose_command(self) -> str:
        """The kubectl command that `expose` stands for, with the real port and mode (after `expose`)."""

    async def logs(self, pod: str, tail: int = 200) -> list[LogLine]:
        """The last `tail` lines of a pod's output."""
