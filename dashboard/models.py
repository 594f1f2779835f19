"""Plain frozen dataclasses that travel between the platforms, the lab, the sampler and the web layer. No I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

Component = Literal["redis-leader", "redis-follower", "frontend"]
PlatformName = Literal["local", "kubernetes"]
StepState = Literal["pending", "running", "done", "failed"]

COMPONENTS: tuple[Component, ...] = ("redis-leader", "redis-follower", "frontend")

Listener = Callable[[], None]  # called on the event loop when something changed; it reads what it needs


@dataclass(frozen=True)
class Capabilities:
    """What a platform offers beyond the protocol's verbs: templates and routes branch on these, never on its name."""

    label: str  # how the page names it: "local platform", "Kubernetes"
    namespace: str | None  # the namespace the lab runs in; None where there are none
    has_events: bool  # a core/v1 events timeline (GET /api/events, the events panel)
    has_access_review: bool  # the pre-flight asks the cluster what this identity may do (cluster facts, rights)
    expose_modes: tuple[str, ...]  # how `expose` can publish the frontend (--expose-mode choices it honours)
    isolates_labs: bool = False  # a workshop learner's lab is isolated by the platform (`prepare_learner`)


@dataclass(frozen=True)
class Timing:
    """A platform's timing policy: local state is cheap to read and quick to change; a cluster's API is neither."""

    check_interval: float  # seconds between two polls of a step's check
    step_timeout: float  # seconds a step's check may take before it fails (--step-timeout overrides; 0 = default)


@dataclass(frozen=True)
class RedisAccess:
    """How the dashboard reaches the Redis (and frontend) pods, and why: the Redis panel's "Redis reached by" line,
    `redis_access` of /api/replication and the pre-flight's Redis access row."""

    mode: str  # the setting: --redis-access auto | direct | port-forward ("loopback" on the local platform)
    using: str | None  # "direct" | "port-forward" | "loopback"; None while auto has not decided yet
    reason: str  # one sentence: why this way

    def to_json(self) -> dict[str, object]:
        return asdict(self)


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
    check: str  # what the check proves, in words
    manifests: tuple[str, ...] = ()
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

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish, once finished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True)
class EventRow:
    """One row of `kubectl events`: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE (+ count)."""

    time: float
    type: str
    reason: str
    involved: str  # "pod/redis-leader-5c85885985-6x4pr"
    message: str
    count: int = 1

    def to_json(self) -> dict[str, object]:
        return {
            "time": self.time,
            "type": self.type,
            "reason": self.reason,
            "object": self.involved,
            "message": self.message,
            "count": self.count,
        }
