"""The local platform: the lab's topology on this machine, with real redis-server processes on loopback.

`LocalPlatform` reads the lab's manifests and runs them the way a cluster would, at process scale:

- a Deployment is a set of supervised pods (`pods.LocalPod`), replaced and restarted like a ReplicaSet's;
  app=redis pods run `redis-server` (role=leader) or `redis-server --replicaof 127.0.0.1 <leader port>` (follower),
  and app=guestbook,tier=frontend pods the Python guestbook (`python -m dashboard.guestbook`);
- the redis-leader Service is a port fixed for the lab's life (its "ClusterIP"): each leader pod binds it, so a
  replaced leader is found again by the followers. Every other pod gets its own free loopback port ("pod IP");
- Services' endpoints (the ready pods they select) are written to `endpoints.json` in the run dir for the frontend;
- `expose()` publishes the frontend Service with a forwarder that follows the ready pods (`forward`);
- a pid table (`pods.json`) lets the next dashboard reap the processes of one that was killed (`process`), each
  pod's whole process group;
- the run dir is locked while the lab owns it and watched: deleted, renamed or replaced under a running lab, every
  step fails with one sentence saying what happened and what to do, and cleanup still stops every process
  (`rundir`).

Nothing is written to disk by Redis (`--save "" --appendonly no`, diskless replication), as in the upstream lab.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dashboard.errors import BadRequest, PlatformUnavailable, PrerequisiteMissing
from dashboard.models import (
    COMPONENTS,
    Capabilities,
    EventRow,
    Listener,
    LogLine,
    PlatformName,
    Pod,
    RedisAccess,
    RedisEndpoint,
    Timing,
)
from dashboard.platforms.base import notify
from dashboard.platforms.local import rundir
from dashboard.platforms.local.forward import Forwarder
from dashboard.platforms.local.objects import DeploymentSpec, LabObject, ServiceSpec, load_manifest, pod_suffix
from dashboard.platforms.local.pods import LocalPod, PodTemplate
from dashboard.platforms.local.preflight import machine_room, preflight
from dashboard.platforms.local.process import (
    ENDPOINTS_FILE,
    PID_TABLE,
    REDIS_DIR_PREFIX,
    accepts_connections,
    atomic_write_json,
    find_redis_server,
    free_port,
    frontend_argv,
    group_members,
    is_running,
    kill_and_wait,
    live_groups,
    live_pids,
    process_start_time,
    read_pid_table,
    remove_lab_files,
    url_host,
)
from dashboard.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from dashboard.settings import Settings

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
CHECK_INTERVAL = 0.01  # a step's check reads local state: cheap, so poll often
STEP_TIMEOUT = 20.0  # a local process starts in well under a second; 20 s means something is wrong
# `kubectl delete deployment -l app=redis`, `kubectl delete service -l app=redis`, then the frontend's two.
DELETE_ORDER: tuple[tuple[str, str], ...] = (
    ("deployment", "redis-follower"),
    ("deployment", "redis-leader"),
    ("service", "redis-follower"),
    ("service", "redis-leader"),
    ("deployment", "frontend"),
    ("service", "frontend"),
)

FrontendCommand = Callable[[str, int, Path], list[str]]


@dataclass
class LocalDeployment:
    """A Deployment and the pods of its current ReplicaSet."""

    spec: DeploymentSpec
    replicas: int
    template: PodTemplate
    pods: list[LocalPod] = field(default_factory=list)

    def live_pods(self) -> list[LocalPod]:
        return [pod for pod in self.pods if not pod.deleting]


class LocalPlatform:
    """The Platform protocol on this machine. All methods run on the dashboard's event loop.

    `frontend_command(pod_name, port, endpoints_file)` replaces the frontend program (tests use a stub server).
    """

    name: PlatformName = "local"

    def __init__(self, settings: Settings, *, frontend_command: FrontendCommand | None = None) -> None:
        self.settings = settings
        self.run_dir = Path(settings.run_dir)
        self.capabilities = Capabilities(
            label="local platform",
            namespace=None,
            has_events=False,
            has_access_review=False,
            expose_modes=("port-forward",),
        )
        self.timing = Timing(CHECK_INTERVAL, settings.step_timeout or STEP_TIMEOUT)
        self._frontend_command = frontend_command or functools.partial(
            frontend_argv, max_entry_length=settings.max_entry_length
        )
        self._listeners: list[Listener] = []
        self._deployments: dict[str, LocalDeployment] = {}
        self._services: dict[str, ServiceSpec] = {}
        self._lock = asyncio.Lock()
        self._started = False
        self._redis_binary: str | None = None
        self._leader_port: int | None = None
        self._redis_dir: Path | None = None
        self._leader_lease: asyncio.Lock | None = None  # one leader process at a time on the Service's port
        self._lab_ports: set[int] = set()  # every port this lab's pods used: leftovers() checks they are closed
        self._lab_pids: dict[int, int] = {}  # pid -> start time, for leftovers()
        self._endpoints_written: object = None
        self._forwarder: Forwarder | None = None
        self._node = socket.gethostname()
        self._run_dir_lock: rundir.RunDir | None = None
        self._file_fault: str | None = None  # why the last write to the run dir failed (reported once)

    # -- the protocol: lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check redis-server, lock the run dir, then reap the processes of a dashboard that died uncleanly."""
        self._redis_binary = find_redis_server(self.settings.redis_server)
        if self._started:
            return
        if self._run_dir_lock is None:
            self._run_dir_lock = await asyncio.to_thread(rundir.lock, self.run_dir, self.settings.port)
        try:
            await asyncio.to_thread(self._reap_orphans)
        except BaseException:
            self._release_run_dir()
            raise
        self._started = True

    async def close(self) -> None:
        """Stop every process of the lab and remove its files (dashboard shutdown, Ctrl-C, SIGTERM)."""
        async with self._lock:
            try:
                await self._teardown()
            finally:
                self._release_run_dir()
                self._started = False

    def _release_run_dir(self) -> None:
        if self._run_dir_lock is not None:
            self._run_dir_lock.release()
            self._run_dir_lock = None

    def _run_dir_fault(self) -> str | None:
        """What happened to the locked run dir under the running lab, as a sentence; None while it is fine."""
        return self._run_dir_lock.fault() if self._run_dir_lock is not None else None

    def _check_run_dir(self, *, new_lab: bool = False) -> None:
        """Refuse a step on a run dir that was deleted, renamed or replaced under the running lab (one sentence).

        A new lab (nothing applied yet, e.g. after cleanup) prepares the directory again instead.
        """
        fault = self._run_dir_fault()
        if fault is None:
            return
        if new_lab:
            assert self._run_dir_lock is not None
            self._run_dir_lock.identity = rundir.prepare(self.run_dir)
            self._redis_dir = None
            self._file_fault = None
            return
        raise PlatformUnavailable(
            fault,
            "Run the cleanup step (it still stops every process of the lab), then run the steps again; "
            "or restart the dashboard with another --run-dir.",
        )

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def add_event_listener(self, listener: Listener) -> None:
        """Processes on this machine have no Events API: the listener is never called."""

    async def events(self, limit: int = 200) -> list[EventRow]:
        """The local platform has no events timeline (`capabilities.has_events` is False): []."""
        return []

    async def prepare_learner(self, room: str) -> list[str]:
        """Nothing: a local lab already has processes, ports and a run dir of its own (capabilities.isolates_labs)."""
        return []

    async def remove_learner(self) -> list[str]:
        return []

    async def preflight(self) -> dict[str, Any]:
        """redis-server and its version, the run directory, the expose step's port (see `local.preflight`)."""
        settings = self.settings
        report = await preflight(settings.redis_server, self.run_dir, settings.frontend_port, self.frontend_url())
        if settings.workshop:  # before the room opens: do --max-learners labs fit this machine?
            frontends = 1 if settings.workshop_profile else 3
            report["room"] = await asyncio.to_thread(machine_room, settings.max_learners, frontends)
            report["ok"] = report["ok"] and report["room"]["ok"]
        return report

    # -- the protocol: kubectl verbs -------------------------------------------------------------------------------

    async def apply(self, manifest: str) -> list[str]:
        self._redis_binary = find_redis_server(self.settings.redis_server)
        objects = load_manifest(manifest)
        await self.start()
        async with self._lock:
            new_lab = not self._deployments and not self._services
            await asyncio.to_thread(self._check_run_dir, new_lab=new_lab)
            if new_lab:
                # A new lab: forget the pids and ports of the one before (leftovers() checked them until now).
                self._lab_ports = {self._leader_port} if self._leader_port else set()
                self._lab_pids = {}
            lines = [await self._apply_object(item) for item in objects]
            self._write_endpoints()
        return lines

    async def scale(self, deployment: str, replicas: int) -> list[str]:
        if replicas < 0:
            raise BadRequest("The number of replicas cannot be negative.", "Use --replicas=0 or more.")
        async with self._lock:
            local = self._deployments.get(deployment)
            if local is None:
                hint = f"Apply manifests/{deployment}-deployment.yaml first."
                raise PrerequisiteMissing(f'deployments.apps "{deployment}" not found.', hint)
            self._check_run_dir()
            local.replicas = replicas
            await self._reconcile(local)
        return [f"deployment.apps/{deployment} scaled"]

    async def delete_pod(self, name: str) -> list[str]:
        """`kubectl delete pod <name>`: the pod terminates; its Deployment creates a new one (new name, new port)."""
        async with self._lock:
            for deployment in self._deployments.values():
                for pod in deployment.live_pods():
                    if pod.name == name:
                        self._check_run_dir()
                        pod.deleting = True  # no longer counts: the replacement is created at once
                        self._notify()
                        self._reconcile_up(deployment)
                        await self._stop_pods(deployment, [pod])
                        return [f'pod "{name}" deleted']
        raise BadRequest(
            f'pods "{name}" not found.', "Pick a pod from the pod list; it may already have been replaced."
        )

    async def delete_lab(self) -> list[str]:
        """The tutorial's cleanup: delete the Deployments and Services, wait for the pods, remove every file."""
        async with self._lock:
            lines = [
                f'{"deployment.apps" if kind == "deployment" else "service"} "{name}" deleted'
                for kind, name in DELETE_ORDER
                if name in (self._deployments if kind == "deployment" else self._services)
            ]
            await self._teardown()
        return lines or ["No resources found"]

    async def leftovers(self) -> list[str]:
        """What of the lab still exists: objects, live processes, files in the run dir, ports that still answer."""
        found = [f"deployment.apps/{name}" for name in self._deployments]
        found += [f"service/{name}" for name in self._services]
        pids = dict(self._lab_pids)
        pids.update({pod.pid: pod.pid_start_time or 0 for pod in self._all_pods() if pod.pid is not None})
        table = read_pid_table(self.run_dir)
        pids.update(live_pids(table))
        running = {pid for pid, start in pids.items() if is_running(pid, start or None)}
        # Each pod process leads its own group: its pid is the group's id.
        groups: dict[int, tuple[int, list[int]]] = {pgid: (since, []) for pgid, since in self._lab_pids.items()}
        groups.update(live_groups(table))
        for pgid, (since, _) in groups.items():
            running.update(group_members(pgid, since))
        found += [f"process {pid} is still running" for pid in sorted(running)]
        if self.run_dir.is_dir():
            found += [f"file {path} is still there" for path in sorted(self.run_dir.iterdir())]
        ports = sorted(self._lab_ports | ({self._forwarder.port} if self._forwarder else set()))
        answers = await asyncio.gather(*(accepts_connections(LOOPBACK, port) for port in ports))
        found += [
            f"port {LOOPBACK}:{port} still accepts connections"
            for port, open_ in zip(ports, answers, strict=True)
            if open_
        ]
        return found

    # -- the protocol: what runs -------------------------------------------------------------------------------

    async def get_pods(self) -> list[Pod]:
        pods = sorted(self._all_pods(), key=lambda pod: (COMPONENTS.index(pod.component), pod.created_at, pod.name))
        return [pod.to_pod() for pod in pods]

    async def rollout_status(self, deployment: str, service: str) -> str | None:
        local = self._deployments.get(deployment)
        if local is None:
            return f'deployment "{deployment}" does not exist'
        ready = sum(1 for pod in local.live_pods() if pod.ready)
        if ready < local.replicas:
            return (
                f'Waiting for deployment "{deployment}" rollout to finish: '
                f"{ready} of {local.replicas} updated replicas are available"
            )
        spec = self._services.get(service)
        if spec is None:
            return f'service "{service}" does not exist'
        if not self._serving(spec.component):
            return f'service "{service}" has no ready endpoints yet'
        return None

    async def redis_endpoints(self) -> list[RedisEndpoint]:
        return [
            RedisEndpoint(name=pod.name, component=pod.component, host=LOOPBACK, port=pod.port)
            for pod in self._all_pods()
            if pod.component != "frontend" and pod.ready and not pod.deleting and pod.port is not None
        ]  # as on Kubernetes: a Terminating pod is not asked any more

    async def frontend_endpoints(self) -> list[str]:
        return [f"http://{LOOPBACK}:{port}" for _, port in self._serving("frontend")]

    def redis_access(self) -> RedisAccess:
        """Every pod is a process on this machine: its port on 127.0.0.1 (--redis-access is for Kubernetes)."""
        return RedisAccess(
            "loopback", "loopback", "the pods are processes on this machine, listening on 127.0.0.1 ports."
        )

    async def expose(self) -> str:
        """Publish the frontend Service on --frontend-port (a free port if it is busy); returns the URL to open."""
        async with self._lock:
            if "frontend" not in self._services:
                raise PrerequisiteMissing(
                    "The frontend Service does not exist yet.",
                    "Apply frontend-deployment.yaml and frontend-service.yaml first (the frontend step).",
                )
            if self._forwarder is None:
                forwarder = Forwarder(lambda: self._serving("frontend"))
                host = LOOPBACK if self.settings.is_loopback else self.settings.host
                await forwarder.start(host, self.settings.frontend_port)
                self._forwarder = forwarder
                if forwarder.note:
                    log.warning("expose: %s (%s)", forwarder.note, self.frontend_url())
            url = self.frontend_url()
            assert url is not None
            return url

    def frontend_url(self) -> str | None:
        if self._forwarder is None:
            return None
        return f"http://{url_host(self._forwarder.host)}:{self._forwarder.port}/"

    def expose_command(self) -> str:
        port = self._forwarder.port if self._forwarder else self.settings.frontend_port
        return f"kubectl port-forward svc/frontend {port}:80"

    def expose_note(self) -> str | None:
        """Why the published port differs from --frontend-port (it was busy), or None."""
        return self._forwarder.note if self._forwarder else None

    async def logs(self, pod: str, tail: int = 200) -> list[LogLine]:
        """The last `tail` lines of a pod's output (`deployment/<name>` picks its first pod, as kubectl does)."""
        found = self._find_pod(pod)
        if found is None:
            raise BadRequest(f'pods "{pod}" not found.', "Pick a pod from the pod list.")
        return found.logs(tail)

    # -- debug accessors (tests, benchmarks) -------------------------------------------------------------------------

    def pod_pid(self, name: str) -> int | None:
        """The pid of the pod's current process, or None."""
        pod = self._find_pod(name)
        return pod.pid if pod else None

    def pod_port(self, name: str) -> int | None:
        pod = self._find_pod(name)
        return pod.port if pod else None

    @property
    def leader_port(self) -> int | None:
        """The redis-leader Service's port (its "ClusterIP"), once allocated."""
        return self._leader_port

    @property
    def endpoints_file(self) -> Path:
        return self.run_dir / ENDPOINTS_FILE

    # -- hooks from pods -------------------------------------------------------------------------------------------

    def pod_changed(self, pod: LocalPod) -> None:
        if pod.port is not None:
            self._lab_ports.add(pod.port)
        self._write_endpoints()
        self._notify()

    def process_changed(self, pod: LocalPod) -> None:
        if pod.pid is not None and pod.pid_start_time is not None:
            self._lab_pids[pod.pid] = pod.pid_start_time
            if len(self._lab_pids) > 256:  # a long crash loop: keep only the pids that still run
                self._lab_pids = {pid: start for pid, start in self._lab_pids.items() if is_running(pid, start)}
        self._write_pid_table()

    # -- internals ---------------------------------------------------------------------------------------------

    def _notify(self) -> None:
        notify(self._listeners, "pod")

    def _all_pods(self) -> list[LocalPod]:
        return [pod for deployment in self._deployments.values() for pod in deployment.pods]

    def _find_pod(self, name: str) -> LocalPod | None:
        if name.startswith(("deployment/", "deployment.apps/", "deploy/")):
            deployment = self._deployments.get(name.split("/", 1)[1])
            live = deployment.live_pods() if deployment else []
            return live[0] if live else None
        return next((pod for pod in self._all_pods() if pod.name == name), None)

    def _serving(self, component: str) -> list[tuple[str, int]]:
        """(host, port) of each pod of `component` a Service sends traffic to: ready, not Terminating."""
        return [
            (LOOPBACK, pod.port)
            for pod in self._all_pods()
            if pod.component == component and pod.ready and not pod.deleting and pod.port
        ]

    async def _apply_object(self, item: LabObject) -> str:
        if isinstance(item, ServiceSpec):
            previous = self._services.get(item.name)
            self._services[item.name] = item
            if item.component == "redis-leader":
                self._allocate_leader_port()
            state = "created" if previous is None else "unchanged" if previous == item else "configured"
            return f"service/{item.name} {state}"
        existing = self._deployments.get(item.name)
        if existing is None:
            template = self._pod_template(item)
            self._deployments[item.name] = LocalDeployment(spec=item, replicas=item.replicas, template=template)
            await self._reconcile(self._deployments[item.name])
            return f"deployment.apps/{item.name} created"
        if existing.spec == item and existing.replicas == item.replicas:
            return f"deployment.apps/{item.name} unchanged"
        new_template = existing.spec.template_hash != item.template_hash  # the component is the template's labels'
        existing.spec, existing.replicas = item, item.replicas
        if new_template:
            # A new pod template: a new ReplicaSet replaces every pod (the Recreate strategy, simpler than rolling).
            old = existing.live_pods()
            for pod in old:
                pod.deleting = True
            existing.template = self._pod_template(item)
            self._reconcile_up(existing)
            await self._stop_pods(existing, old)
        else:
            await self._reconcile(existing)
        return f"deployment.apps/{item.name} configured"

    def _allocate_leader_port(self) -> int:
        if self._leader_port is None:
            self._leader_port = free_port(LOOPBACK)
            self._lab_ports.add(self._leader_port)
        return self._leader_port

    def _redis_data_dir(self) -> Path:
        fault = self._run_dir_fault()
        if fault is not None:
            raise rundir.RunDirError(fault, "Run the cleanup step, then the steps again.")
        if self._redis_dir is None or not self._redis_dir.is_dir():
            self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._redis_dir = Path(tempfile.mkdtemp(prefix=REDIS_DIR_PREFIX, dir=self.run_dir))
        return self._redis_dir

    def _pod_template(self, spec: DeploymentSpec) -> PodTemplate:
        frontend, leader = spec.component == "frontend", spec.component == "redis-leader"
        if not frontend:
            self._allocate_leader_port()  # followers may come first; they connect once the leader binds its port
        if leader and self._leader_lease is None:
            self._leader_lease = asyncio.Lock()
        return PodTemplate(
            component=spec.component,
            container=spec.container,
            image=self.settings.image_override(spec.component) or spec.image,
            argv=lambda pod, port: (
                self._frontend_command(pod.name, port, self.endpoints_file)
                if frontend
                else self._redis_argv(port, leader=leader)
            ),
            probe="http" if frontend else "redis",
            env=dict(spec.env),
            fixed_port=self._allocate_leader_port if leader else None,  # the leader binds its Service's port
            port_lease=self._leader_lease if leader else None,
            cwd=str(PROJECT_ROOT) if frontend else None,
        )

    def _redis_argv(self, port: int, *, leader: bool) -> list[str]:
        binary = self._redis_binary or find_redis_server(self.settings.redis_server)
        argv = [binary, "--bind", LOOPBACK, "--port", str(port), "--save", "", "--appendonly", "no"]
        argv += ["--protected-mode", "no", "--dir", str(self._redis_data_dir())]
        # Diskless replication both ways: the leader streams its snapshot at once, followers load it from the socket.
        argv += ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
        if not leader:
            argv += ["--repl-diskless-load", "swapdb", "--replicaof", LOOPBACK, str(self._allocate_leader_port())]
        return argv

    def _new_pod(self, deployment: LocalDeployment) -> LocalPod:
        name = f"{deployment.spec.name}-{deployment.spec.template_hash}-{pod_suffix()}"
        pod = LocalPod(name, deployment.template, self, self._node)
        deployment.pods.append(pod)
        if deployment.spec.component == "frontend" and not self.endpoints_file.exists():
            self._write_endpoints(force=True)
        pod.start()
        self._notify()
        return pod

    def _reconcile_up(self, deployment: LocalDeployment) -> None:
        """Create pods until the Deployment has its replicas (all start in parallel)."""
        while len(deployment.live_pods()) < deployment.replicas:
            self._new_pod(deployment)

    async def _reconcile(self, deployment: LocalDeployment) -> None:
        """Create or delete pods until the Deployment has its replicas; scale down removes unready, then newest."""
        self._reconcile_up(deployment)
        live = deployment.live_pods()
        excess = len(live) - deployment.replicas
        if excess > 0:
            await self._stop_pods(deployment, sorted(live, key=lambda pod: (pod.ready, -pod.created_at))[:excess])

    async def _stop_pods(self, deployment: LocalDeployment, pods: list[LocalPod]) -> None:
        if not pods:
            return
        for pod in pods:
            pod.deleting = True
        self._notify()
        await asyncio.gather(*(pod.stop() for pod in pods))
        deployment.pods = [pod for pod in deployment.pods if pod not in pods]
        self._write_pid_table()
        self._write_endpoints()
        self._notify()

    async def _teardown(self) -> None:
        """Stop the forwarder and every pod in parallel, then remove the lab's files and forget its objects."""
        if self._forwarder is not None:
            await self._forwarder.close()
        await asyncio.gather(
            *(self._stop_pods(deployment, list(deployment.pods)) for deployment in self._deployments.values())
        )
        self._deployments.clear()
        self._services.clear()
        self._forwarder = None
        self._leader_port = None  # its port stays in _lab_ports (added when it was allocated) for leftovers()
        self._leader_lease = None
        self._endpoints_written = None
        if self._redis_dir is not None:
            shutil.rmtree(self._redis_dir, ignore_errors=True)
            self._redis_dir = None
        await asyncio.to_thread(remove_lab_files, self.run_dir)
        self._notify()

    def _endpoints(self) -> dict[str, list[list[object]]]:
        """Ready pods of each redis Service that exists, as the frontend reads them."""
        result: dict[str, list[list[object]]] = {"redis-leader": [], "redis-follower": []}
        for service in self._services.values():
            if service.component in result:
                result[service.component] = [list(target) for target in self._serving(service.component)]
        return result

    def _write_endpoints(self, *, force: bool = False) -> None:
        if not self._deployments and not self._services:
            return
        endpoints = self._endpoints()
        if endpoints == self._endpoints_written and not force:
            return
        if self._write_file(self.endpoints_file, endpoints):
            self._endpoints_written = endpoints

    def _write_file(self, path: Path, data: object) -> bool:
        """Write one of the lab's files; a run dir that went away is logged once (the next step reports it)."""
        fault = self._run_dir_fault()
        try:
            if fault is not None:
                raise FileNotFoundError(fault)  # never recreate a run dir that was removed under the lab
            atomic_write_json(path, data)
        except OSError as exc:
            why = fault or f"{path} cannot be written ({exc.strerror or exc})"
            if why != self._file_fault:
                log.error("local platform: %s", why)
                self._file_fault = why
            return False
        return True

    def _write_pid_table(self) -> None:
        pods = [
            {"pod": pod.name, "pid": pod.pid, "pgid": pod.pgid, "start_time": pod.pid_start_time, "argv": pod.argv}
            for pod in self._all_pods()
            if pod.pid is not None and pod.pid_start_time is not None
        ]
        path = self.run_dir / PID_TABLE
        if not pods and not self._deployments:
            with contextlib.suppress(OSError):
                path.unlink()
            return
        me = os.getpid()
        self._write_file(path, {"dashboard": {"pid": me, "start_time": process_start_time(me)}, "pods": pods})

    def _reap_orphans(self) -> None:
        """Kill the processes a killed dashboard left (same pid AND same start time), then clean the run dir."""
        table = read_pid_table(self.run_dir)
        owner = table.get("dashboard") or {}
        owner_pid = owner.get("pid")
        if isinstance(owner_pid, int) and owner_pid != os.getpid() and is_running(owner_pid, owner.get("start_time")):
            raise PlatformUnavailable(
                f"Another dashboard (pid {owner_pid}) runs a lab from {self.run_dir}.",
                "Stop that dashboard first, or give this one another --run-dir.",
            )
        orphans = live_pids(table)
        groups = live_groups(table)  # a pod's process may be gone while its children live on (a wrapper script)
        if orphans or groups:
            count = len({pid for pid, _ in orphans} | {pid for _, members in groups.values() for pid in members})
            log.warning("killing %d process(es) left by a dashboard that did not stop cleanly", count)
            still = kill_and_wait(orphans, [(pgid, since) for pgid, (since, _) in groups.items()])
            if still:
                raise PlatformUnavailable(
                    f"Processes {still} of an earlier lab could not be stopped.",
                    f"Stop them, then remove {self.run_dir}.",
                )
        remove_lab_files(self.run_dir)
