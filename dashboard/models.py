"""Plain frozen dataclasses that travel between the platforms, the lab, the sampler and the web layer. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Component = Literal["redis-leader", "redis-follower", "frontend"]
PlatformName = Literal["local", "kubernetes"]
StepState = Literal["pending", "running", "done", "failed"]

COMPONENTS: tuple[Component, ...] = ("redis-leader", "redis-follower", "frontend")


@dataclass(frozen=True)
class Pod:
    """One pod as `kubectl get pods -o wide` shows it.

    `phase` is the pod phase (Pending, Running, Succeeded, Failed, Unknown); `status` is kubectl's STATUS
    column (Running, ContainerCreating, CrashLoopBackOff, ImagePullBackOff, Terminating, Completed, ...).
    `reason`/`message` say why the pod is not ready, when it is not.
    """

    name: str
    component: Component
    phase: str
    ready: bool
    restarts: int
    created_at: float  # epoch seconds
    status: str = ""
    reason: str | None = None
    message: str | None = None
    node: str | None = None
    ip: str | None = None
    image: str | None = None
    deleting: bool = False

    def to_json(self, now: float) -> dict[str, object]:
        return {
            "name": self.name,
            "component": self.component,
            "phase": self.phase,
            "ready": self.ready,
            "restarts": self.restarts,
            "status": self.status or self.phase,
            "age_seconds": max(0.0, round(now - self.created_at, 1)),
            "reason": self.reason,
            "message": self.message,
            "node": self.node,
            "ip": self.ip,
            "image": self.image,
        }


@dataclass(frozen=True)
class RedisEndpoint:
    """A Redis pod the dashboard can reach: `host:port` is an address on this machine or a routable pod IP."""

    name: str
    component: Component  # "redis-leader" or "redis-follower"
    host: str
    port: int


@dataclass(frozen=True)
class LogLine:
    """One line of a pod's output."""

    pod: str
    time: float
    text: str


@dataclass(frozen=True)
class Step:
    """One lab step, as data: what it is, what it teaches, what kubectl it stands for and what it needs first."""

    id: str
    title: str
    explanation: str
    commands: tuple[str, ...]
    manifests: tuple[str, ...]
    check: str  # what the check proves, in words
    requires: tuple[str, ...] = ()
    optional: bool = False
    warning: str | None = None
    expect: str | None = None  # "what you should see"


@dataclass
class StepStatus:
    """The mutable run state of a step (owned by the lab, under its lock)."""

    state: StepState = "pending"
    message: str = ""
    hint: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    output: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)  # the action's structured result (JSON `result`)
