"""One local pod: a supervised child process, restarted like a container with restartPolicy Always.

`LocalPod` spawns its program from the event loop (so PR_SET_PDEATHSIG ties it to the dashboard) as the leader
of its own session and process group (stopped, and reaped after a crash of the dashboard, as a group: a wrapper
script's children go too), merges stdout and stderr into a bounded ring buffer for `kubectl logs`, probes
readiness (Redis PING, or the frontend's "listening on" line and GET /healthz: every 10 ms until first ready,
then every second like a readinessProbe, unready after 3 failures in a row, ready again on a success; `probes`),
restarts it when it exits with Kubernetes' CrashLoopBackOff rhythm (immediately, then 0.5 s, 1 s, 2 s ... capped
at 5 s, reset after 10 s of running) and stops it with SIGTERM, then SIGKILL after a grace period. The platform
hears about every change through `PodHooks`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from dashboard.errors import DashboardError
from dashboard.models import Component, LogLine, Pod
from dashboard.platforms.local.probes import HttpGet, RedisPing
from dashboard.platforms.local.process import (
    child_environment,
    child_setup,
    free_port,
    kill_group,
    process_start_time,
)

LOG_LINES = 2000
PROBE_INTERVAL = 0.01  # until first ready: a local process starts in milliseconds
PROBE_PERIOD = 1.0  # then like a readinessProbe: periodSeconds 1, timeoutSeconds 0.5, failureThreshold 3
PROBE_TIMEOUT = 0.5
PROBE_FAILURE_THRESHOLD = 3
BACKOFF = (0.0, 0.5, 1.0, 2.0, 4.0, 5.0)
BACKOFF_RESET_AFTER = 10.0
GRACE = 2.0  # seconds between SIGTERM and SIGKILL
MAX_PORT_RETRIES = 5
READY_LINE = "listening on http://"
BIND_FAILED = ("Address already in use", "address already in use")

Probe = Literal["redis", "http"]


class PodHooks(Protocol):
    """What a pod tells its platform."""

    def pod_changed(self, pod: LocalPod) -> None:
        """Status, readiness or restarts changed (listeners, endpoints file)."""

    def process_changed(self, pod: LocalPod) -> None:
        """The pod's process started or exited (pid table)."""


@dataclass
class PodTemplate:
    """What every pod of one Deployment runs: `argv(pod, port)` builds the command for the pod's port."""

    component: Component
    container: str
    image: str
    argv: Callable[[LocalPod, int], list[str]]
    probe: Probe
    env: dict[str, str] = field(default_factory=dict)
    fixed_port: Callable[[], int] | None = None  # the leader binds its Service's port
    port_lease: asyncio.Lock | None = None  # one process at a time on a fixed port
    cwd: str | None = None


class LocalPod:
    """A pod of the local platform and the task that supervises its process."""

    def __init__(self, name: str, template: PodTemplate, hooks: PodHooks, node: str) -> None:
        self.name = name
        self.template = template
        self.component: Component = template.component
        self.hooks = hooks
        self.node = node
        self.created_at = time.time()
        self.port: int | None = None
        self.restarts = 0
        self.phase = "Pending"
        self.status = "ContainerCreating"
        self.reason: str | None = "ContainerCreating"
        self.message: str | None = None
        self.ready = False
        self.deleting = False
        self.process: asyncio.subprocess.Process | None = None
        self.pid: int | None = None
        self.pid_start_time: int | None = None
        self.pgid: int | None = None  # the process leads its own session and group: pgid == pid
        self.argv: list[str] = []
        self.log_lines: deque[LogLine] = deque(maxlen=LOG_LINES)
        self._stopping = False
        self._waiting = False  # in a wait that stop() may cancel (port lease, back-off)
        self._bind_failed = False
        self._task: asyncio.Task[None] | None = None

    # -- views -------------------------------------------------------------------------------------------------

    def to_pod(self) -> Pod:
        return Pod(
            name=self.name,
            component=self.component,
            phase=self.phase,
            ready=self.ready,
            restarts=self.restarts,
            created_at=self.created_at,
            status="Terminating" if self.deleting else self.status,
            reason=None if self.ready else self.reason,
            message=None if self.ready else self.message,
            node=self.node,
            ip=f"127.0.0.1:{self.port}" if self.port else None,
            image=self.template.image,
            deleting=self.deleting,
        )

    def logs(self, tail: int) -> list[LogLine]:
        return list(self.log_lines)[-tail:] if tail > 0 else []

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"pod/{self.name}")

    async def stop(self) -> None:
        """`kubectl delete pod`: Terminating, SIGTERM, SIGKILL after the grace period; waits for the exit."""
        self._stopping = True
        if not self.deleting:
            self.deleting = True
            self.hooks.pod_changed(self)
        task = self._task
        if task is None:
            return
        if self._waiting or self.process is None:
            task.cancel()
        else:
            self._signal(signal.SIGTERM)
        done, _ = await asyncio.wait([task], timeout=GRACE)
        if not done:
            self._signal(signal.SIGKILL)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def _signal(self, sig: signal.Signals) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        try:
            os.killpg(process.pid, sig)  # the child leads its own session: its own children go too
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)

    def _set(self, phase: str, status: str, reason: str | None = None, message: str | None = None) -> None:
        self.phase, self.status, self.reason, self.message = phase, status, reason, message
        self.hooks.pod_changed(self)

    async def _cancellable(self, waiting: Awaitable[object]) -> None:
        """A wait that stop() cancels instead of signalling a process: the port lease, a back-off."""
        self._waiting = True
        try:
            await waiting
        finally:
            self._waiting = False

    async def _run(self) -> None:
        lease = self.template.port_lease
        try:
            if lease is not None:
                if lease.locked():
                    self.message = "waiting for the previous pod to release the Service's port"
                    self.hooks.pod_changed(self)
                await self._cancellable(lease.acquire())
            try:
                await self._supervise()
            finally:
                if lease is not None:
                    lease.release()
        finally:
            # Reached on a normal stop and on cancellation: make sure no process outlives its pod.
            process = self.process
            if process is not None and process.returncode is None:
                self._signal(signal.SIGKILL)
                with contextlib.suppress(Exception):
                    await asyncio.shield(process.wait())
            self._exited()

    def _exited(self) -> None:
        had_process = self.pid is not None
        self.process = None
        self.pid = None
        self.pid_start_time = None
        self.pgid = None
        self.ready = False
        if had_process:
            self.hooks.process_changed(self)
        self.hooks.pod_changed(self)

    async def _supervise(self) -> None:
        backoff_index = 0
        port_retries = 0
        first = True
        while not self._stopping:
            if self.template.fixed_port is not None:
                self.port = self.template.fixed_port()
            elif self.port is None:
                self.port = free_port()
            started = time.monotonic()
            self._bind_failed = False
            returncode = await self._run_once(first)
            first = False
            if self._stopping:
                return
            ran = time.monotonic() - started
            if returncode is None:
                # The container could not be created: it stays in CreateContainerError (with why) and is tried
                # again after a back-off, as a kubelet does; no restart is counted, nothing ran.
                await self._cancellable(asyncio.sleep(BACKOFF[min(backoff_index, len(BACKOFF) - 1)] or BACKOFF[1]))
                backoff_index += 1
                continue
            if self._bind_failed and self.template.fixed_port is None and port_retries < MAX_PORT_RETRIES:
                # Lost the race for the free port we picked: pick another, as if the pod had been given another IP.
                port_retries += 1
                self._log(f"[local] port {self.port} was taken before the process bound it; picking another")
                self.port = None
                continue
            port_retries = 0
            self.restarts += 1
            if ran >= BACKOFF_RESET_AFTER:
                backoff_index = 0
            delay = BACKOFF[min(backoff_index, len(BACKOFF) - 1)]
            backoff_index += 1
            exit_text = f"exit code {returncode}" if returncode >= 0 else f"signal {-returncode}"
            self._log(f"[local] container {self.template.container} exited ({exit_text}); restart {self.restarts}")
            if delay <= 0:
                self._set("Running", "Error", "Error", f"container exited with {exit_text}")
                continue
            container = self.template.container
            why = f"back-off {delay:g}s restarting failed container={container} pod={self.name}"
            self._set("Running", "CrashLoopBackOff", "CrashLoopBackOff", why)
            await self._cancellable(asyncio.sleep(delay))  # the back-off itself, cancelled by stop()

    async def _run_once(self, first: bool) -> int | None:
        """Start the program once, follow it until it exits; its exit code (None if it could not start)."""
        assert self.port is not None
        try:
            self.argv = self.template.argv(self, self.port)
        except (OSError, DashboardError) as exc:  # e.g. the run dir for Redis' data is gone
            text = f"{exc.message} {exc.hint}" if isinstance(exc, DashboardError) else str(exc)
            self._log(f"[local] cannot create the container: {text}")
            self._set("Pending", "CreateContainerError", "CreateContainerError", text)
            return None
        env = child_environment(self.template.env)
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                cwd=self.template.cwd,
                start_new_session=True,
                preexec_fn=child_setup(),
            )
        except OSError as exc:
            self._log(f"[local] failed to start {self.argv[0]}: {exc}")
            self._set("Pending", "CreateContainerError", "CreateContainerError", str(exc))
            return None
        self.process = process
        self.pid = process.pid
        self.pid_start_time = process_start_time(process.pid)
        with contextlib.suppress(OSError):
            self.pgid = os.getpgid(process.pid)
        self.hooks.process_changed(self)
        if self._stopping:
            self._signal(signal.SIGTERM)
        if first:
            self._set("Pending", "ContainerCreating", "ContainerCreating")
        else:
            self._set("Running", "Running", "ContainersNotReady", "containers with unready status")
        assert process.stdout is not None
        reader = asyncio.create_task(self._read_output(process.stdout))
        prober = asyncio.create_task(self._probe(process))
        try:
            returncode = await process.wait()
        finally:
            prober.cancel()
            # Like a container: when its main process exits, whatever it started goes too (a wrapper's
            # redis-server), and with it the output pipe it holds open.
            if self.pgid is not None:
                kill_group(self.pgid, self.pid_start_time)
            # The pipe may stay open if the program left children behind: do not wait for them forever.
            done, _ = await asyncio.wait([reader], timeout=0.2)
            if not done:
                reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        self._exited()
        return returncode

    # -- output and readiness ----------------------------------------------------------------------------------

    def _log(self, text: str) -> None:
        self.log_lines.append(LogLine(pod=self.name, time=time.time(), text=text))

    def _output_line(self, text: str) -> None:
        self._log(text)
        if any(marker in text for marker in BIND_FAILED):
            self._bind_failed = True
        if self.template.probe == "http" and READY_LINE in text:
            self._mark_ready()

    async def _read_output(self, stream: asyncio.StreamReader) -> None:
        pending = b""
        while chunk := await stream.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._output_line(line.decode(errors="replace").rstrip("\r"))
            if len(pending) > 65536:  # a very long line without a newline: keep it anyway
                self._output_line(pending.decode(errors="replace"))
                pending = b""
        if pending:
            self._output_line(pending.decode(errors="replace").rstrip("\r"))

    def _mark_ready(self) -> None:
        if self.deleting or self.ready:
            return
        self.ready = True
        self._set("Running", "Running")

    def _mark_unready(self, why: str) -> None:
        if self.deleting or not self.ready:
            return
        self.ready = False
        message = f"Readiness probe failed: {why}"
        self._log(f"[local] {message}")
        self._set("Running", "Running", "Unhealthy", message)

    async def _probe(self, process: asyncio.subprocess.Process) -> None:
        """The readiness probe: fast until the pod is first ready, then every PROBE_PERIOD s like a kubelet's."""
        port = self.port
        assert port is not None
        probe = RedisPing(port, PROBE_TIMEOUT) if self.template.probe == "redis" else HttpGet(port, PROBE_TIMEOUT)
        try:
            while process.returncode is None and not self.ready:
                if await probe.check() is None:
                    self._mark_ready()
                    break
                await asyncio.sleep(PROBE_INTERVAL)  # the startup poll
            failures = 0
            loop = asyncio.get_running_loop()
            due = loop.time()
            while process.returncode is None:
                due = max(due + PROBE_PERIOD, loop.time())  # every period, whatever the last probe took
                await asyncio.sleep(due - loop.time())
                why = await probe.check()
                if why is None:
                    failures = 0
                    self._mark_ready()
                    continue
                failures += 1
                if failures >= PROBE_FAILURE_THRESHOLD:
                    self._mark_unready(why)
        finally:
            await probe.close()
