"""The local platform with REAL redis-server processes on loopback: apply, replicate, restart, replace, scale, clean up.

Each test builds its own Settings (its own run dir, frontend port 0), runs its body with `asyncio.run` and closes
the platform in a `finally`. Waits poll with a deadline; nothing sleeps a fixed time. The only processes a test
signals are the ones it started or read from the platform by pid.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aredis

from dashboard.errors import BadRequest, PlatformUnavailable, PrerequisiteMissing
from dashboard.platforms import Platform
from dashboard.platforms.local import FrontendCommand, LocalPlatform
from dashboard.platforms.local.process import free_port, process_start_time
from dashboard.settings import Settings
from tests.conftest import is_alive
from tests.polling import until

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")

LEADER = ["redis-leader-deployment.yaml", "redis-leader-service.yaml"]
FOLLOWER = ["redis-follower-deployment.yaml", "redis-follower-service.yaml"]
FRONTEND = ["frontend-deployment.yaml", "frontend-service.yaml"]


# -- helpers -----------------------------------------------------------------------------------------------------


def settings_for(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(run_dir=tmp_path / "run", frontend_port=0, **overrides)  # type: ignore[arg-type]


@asynccontextmanager
async def running(platform: LocalPlatform, *manifests: str) -> AsyncIterator[LocalPlatform]:
    await platform.start()
    try:
        for manifest in manifests:
            await platform.apply(manifest)
        yield platform
    finally:
        await platform.close()


def lab(
    tmp_path: Path, *manifests: str, frontend_command: FrontendCommand | None = None
) -> AbstractAsyncContextManager[LocalPlatform]:
    return running(LocalPlatform(settings_for(tmp_path), frontend_command=frontend_command), *manifests)


async def pods_of(platform: LocalPlatform, component: str) -> list[str]:
    return [pod.name for pod in await platform.get_pods() if pod.component == component and not pod.deleting]


async def ready_count(platform: LocalPlatform, component: str) -> int:
    return sum(1 for pod in await platform.get_pods() if pod.component == component and pod.ready and not pod.deleting)


async def ready_exactly(platform: LocalPlatform, component: str, count: int) -> bool:
    return await ready_count(platform, component) == count


async def info(port: int, section: str = "replication") -> dict[str, object]:
    async with aredis.Redis(port=port, socket_timeout=1) as client:
        result: dict[str, object] = await client.info(section)
        return result


async def redis_get(port: int, key: str) -> bytes | None:
    async with aredis.Redis(port=port, socket_timeout=1) as client:
        value = await client.get(key)
        assert value is None or isinstance(value, bytes)
        return value


async def followers_linked(platform: LocalPlatform, count: int) -> bool:
    """`count` followers, each with master_link_status:up (for `until`: one that does not answer is "not yet")."""
    endpoints = [e for e in await platform.redis_endpoints() if e.component == "redis-follower"]
    return len(endpoints) == count and all([(await info(e.port)).get("master_link_status") == "up" for e in endpoints])


# -- tests -------------------------------------------------------------------------------------------------------


def test_satisfies_the_platform_protocol(tmp_path: Path) -> None:
    assert isinstance(LocalPlatform(settings_for(tmp_path)), Platform)


def test_leader_becomes_ready_and_answers_as_master(tmp_path: Path) -> None:
    async def body() -> None:
        async with lab(tmp_path, "redis-leader-deployment.yaml") as platform:
            await until(lambda: ready_exactly(platform, "redis-leader", 1), what="leader ready")
            [pod] = await platform.get_pods()
            assert pod.name.startswith("redis-leader-") and len(pod.name.split("-")) == 4
            assert (pod.phase, pod.status, pod.restarts) == ("Running", "Running", 0)
            [endpoint] = await platform.redis_endpoints()
            assert endpoint.port == platform.leader_port and pod.ip == f"127.0.0.1:{endpoint.port}"
            async with aredis.Redis(port=endpoint.port) as client:
                assert await client.ping()
            assert (await info(endpoint.port))["role"] == "master"
            persistence = await info(endpoint.port, "persistence")
            assert persistence["aof_enabled"] == 0
            lines = [line.text for line in await platform.logs(pod.name)]
            assert any("Ready to accept connections" in line for line in lines)
            assert await platform.logs("deployment/redis-leader", tail=1) == (await platform.logs(pod.name))[-1:]

    asyncio.run(body())


def test_followers_link_up_and_replicate_a_set(tmp_path: Path) -> None:
    async def body() -> None:
        async with lab(tmp_path, *LEADER, *FOLLOWER) as platform:
            await until(lambda: followers_linked(platform, 2), what="2 followers with master_link_status:up")
            leader = platform.leader_port
            assert leader is not None
            async with aredis.Redis(port=leader) as client:
                await client.set("guestbook", "hello")
            for endpoint in await platform.redis_endpoints():
                await until(_holds(endpoint.port, b"hello"), what=f"{endpoint.name} has the value")
            leader_info = await info(leader)
            assert leader_info["connected_slaves"] == 2

    asyncio.run(body())


def _holds(port: int, expected: bytes | None) -> Callable[[], Awaitable[bool]]:
    """A check for `until` that the Redis on `port` has the key `guestbook` (equal to `expected`, unless it is None)."""

    async def check() -> bool:
        value = await redis_get(port, "guestbook")
        return value is not None and (expected is None or value == expected)

    return check


def test_kill_9_follower_restarts_once_and_resyncs(tmp_path: Path) -> None:
    async def body() -> None:
        async with lab(tmp_path, *LEADER, *FOLLOWER) as platform:
            await until(lambda: followers_linked(platform, 2), what="followers linked")
            assert platform.leader_port is not None
            async with aredis.Redis(port=platform.leader_port) as client:
                await client.set("guestbook", "before the crash")
            victim = (await pods_of(platform, "redis-follower"))[0]
            pid = platform.pod_pid(victim)
            port = platform.pod_port(victim)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)

            async def restarted() -> bool:
                pods = {pod.name: pod for pod in await platform.get_pods()}
                return pods[victim].restarts == 1 and pods[victim].ready

            await until(restarted, what="the follower restarted")
            assert platform.pod_pid(victim) not in (None, pid)
            assert platform.pod_port(victim) == port  # same pod, same "pod IP"
            await until(lambda: followers_linked(platform, 2), what="the restarted follower linked again")
            assert await redis_get(port or 0, "guestbook") == b"before the crash"
            assert any("exited" in line.text for line in await platform.logs(victim))

    asyncio.run(body())


def test_delete_pod_creates_a_new_pod_with_a_new_name_and_port(tmp_path: Path) -> None:
    async def body() -> None:
        async with lab(tmp_path, *LEADER, *FOLLOWER) as platform:
            await until(lambda: followers_linked(platform, 2), what="followers linked")
            old = (await pods_of(platform, "redis-follower"))[0]
            old_pid, old_port = platform.pod_pid(old), platform.pod_port(old)
            assert old_pid is not None
            assert await platform.delete_pod(old) == [f'pod "{old}" deleted']
            assert not is_alive(old_pid)
            names = await pods_of(platform, "redis-follower")
            assert len(names) == 2 and old not in names
            assert all(platform.pod_port(name) != old_port for name in names)
            await until(lambda: followers_linked(platform, 2), what="the replacement linked")

            # The leader keeps its Service port when replaced: the followers find it again.
            leader = (await pods_of(platform, "redis-leader"))[0]
            port = platform.leader_port
            await platform.delete_pod(leader)
            [replacement] = await pods_of(platform, "redis-leader")
            assert replacement != leader
            await until(lambda: ready_exactly(platform, "redis-leader", 1), what="a new leader")
            assert platform.pod_port(replacement) == port
            await until(lambda: followers_linked(platform, 2), what="followers reconnected", timeout=5)

            with pytest.raises(BadRequest):
                await platform.delete_pod("no-such-pod")

    asyncio.run(body())


def test_scale_followers_up_and_down(tmp_path: Path) -> None:
    async def body() -> None:
        async with lab(tmp_path, *LEADER, *FOLLOWER) as platform:
            await until(lambda: followers_linked(platform, 2), what="2 followers")
            assert await platform.scale("redis-follower", 3) == ["deployment.apps/redis-follower scaled"]
            await until(lambda: followers_linked(platform, 3), what="3 followers")
            three = await pods_of(platform, "redis-follower")
            pids = [platform.pod_pid(name) for name in three]
            await platform.scale("redis-follower", 2)
            remaining = await pods_of(platform, "redis-follower")
            assert len(remaining) == 2 and set(remaining) < set(three)
            assert len([pid for pid in pids if pid is not None and is_alive(pid)]) == 2
            assert (await info(platform.leader_port or 0))["connected_slaves"] in (2, 3)  # the leader notices soon
            with pytest.raises(PrerequisiteMissing):
                await platform.scale("frontend", 2)
            with pytest.raises(BadRequest):
                await platform.scale("redis-follower", -1)

    asyncio.run(body())


def test_reapply_is_idempotent_and_starts_nothing(tmp_path: Path) -> None:
    async def body() -> None:
        async with lab(tmp_path) as platform:
            assert await platform.apply("redis-leader-deployment.yaml") == ["deployment.apps/redis-leader created"]
            assert await platform.apply("redis-leader-service.yaml") == ["service/redis-leader created"]
            await until(lambda: ready_exactly(platform, "redis-leader", 1), what="leader")
            before = [(pod.name, platform.pod_pid(pod.name)) for pod in await platform.get_pods()]
            assert await platform.apply("redis-leader-deployment.yaml") == ["deployment.apps/redis-leader unchanged"]
            assert await platform.apply("redis-leader-service.yaml") == ["service/redis-leader unchanged"]
            after = [(pod.name, platform.pod_pid(pod.name)) for pod in await platform.get_pods()]
            assert before == after
            # kubectl apply puts the manifest's replicas back after a scale: "configured".
            await platform.scale("redis-leader", 0)
            assert await pods_of(platform, "redis-leader") == []
            assert await platform.apply("redis-leader-deployment.yaml") == ["deployment.apps/redis-leader configured"]
            await until(lambda: ready_exactly(platform, "redis-leader", 1), what="leader again")

    asyncio.run(body())


def test_delete_lab_leaves_nothing(tmp_path: Path) -> None:
    async def body() -> None:
        platform = LocalPlatform(settings_for(tmp_path), frontend_command=stub_frontend(tmp_path))
        async with running(platform, *LEADER, *FOLLOWER, *FRONTEND):
            await until(lambda: followers_linked(platform, 2), what="followers")
            await until(lambda: ready_exactly(platform, "frontend", 3), what="frontends")
            await platform.expose()
            pids = [platform.pod_pid(pod.name) for pod in await platform.get_pods()]
            ports = [platform.pod_port(pod.name) for pod in await platform.get_pods()]
            assert (tmp_path / "run" / "pods.json").exists() and (tmp_path / "run" / "endpoints.json").exists()
            assert len(await platform.leftovers()) > 0
            started = time.monotonic()
            lines = await platform.delete_lab()
            took = time.monotonic() - started
            assert lines == [
                'deployment.apps "redis-follower" deleted',
                'deployment.apps "redis-leader" deleted',
                'service "redis-follower" deleted',
                'service "redis-leader" deleted',
                'deployment.apps "frontend" deleted',
                'service "frontend" deleted',
            ]
            assert took < 2.0, took
            assert await platform.get_pods() == []
            assert all(pid is not None and not is_alive(pid) for pid in pids)
            run_dir = tmp_path / "run"
            assert not run_dir.exists() or list(run_dir.iterdir()) == []
            for port in ports:
                assert port is not None
                with pytest.raises(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
            assert platform.frontend_url() is None
            assert await platform.leftovers() == []
            assert await platform.delete_lab() == ["No resources found"]
            # The platform can run the lab again after a cleanup.
            await platform.apply("redis-leader-deployment.yaml")
            await until(lambda: ready_exactly(platform, "redis-leader", 1), what="a leader again")

    asyncio.run(body())


def test_close_stops_every_process(tmp_path: Path) -> None:
    async def body() -> list[int]:
        async with lab(tmp_path, *LEADER, *FOLLOWER) as platform:
            await until(lambda: followers_linked(platform, 2), what="followers")
            return [pid for pod in await platform.get_pods() if (pid := platform.pod_pid(pod.name))]

    pids = asyncio.run(body())
    assert len(pids) == 3 and not any(is_alive(pid) for pid in pids)
    assert not (tmp_path / "run").exists()


def test_start_reaps_orphans_of_a_killed_dashboard_but_not_reused_pids(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    def redis_argv() -> list[str]:
        return ["redis-server", "--port", str(free_port()), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]

    argv = redis_argv()
    orphan = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bystander = subprocess.Popen(redis_argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        orphan_start, bystander_start = process_start_time(orphan.pid), process_start_time(bystander.pid)
        assert orphan_start is not None and bystander_start is not None
        assert orphan.poll() is None and bystander.poll() is None
        table = {
            "dashboard": {"pid": 999_999_999, "start_time": 1},  # a dashboard that is gone
            "pods": [
                {"pod": "redis-leader-x-y", "pid": orphan.pid, "start_time": orphan_start, "argv": argv},
                # Same pid as a live process but another start time: the pid was reused, it must survive.
                {"pod": "redis-follower-x-y", "pid": bystander.pid, "start_time": bystander_start + 1, "argv": argv},
            ],
        }
        (run_dir / "pods.json").write_text(json.dumps(table))
        (run_dir / "endpoints.json").write_text("{}")

        async def body() -> None:
            async with lab(tmp_path) as platform:
                assert await platform.leftovers() == []

        asyncio.run(body())
        assert orphan.wait(timeout=2) == -signal.SIGKILL
        assert bystander.poll() is None and is_alive(bystander.pid)
        assert not run_dir.exists()
    finally:
        for process in (orphan, bystander):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_another_live_dashboard_on_the_same_run_dir_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        table = {"dashboard": {"pid": other.pid, "start_time": process_start_time(other.pid)}, "pods": []}
        (run_dir / "pods.json").write_text(json.dumps(table))
        with pytest.raises(PlatformUnavailable, match="Another dashboard"):
            asyncio.run(LocalPlatform(settings_for(tmp_path)).start())
    finally:
        other.kill()
        other.wait()


def test_missing_redis_server_is_platform_unavailable_with_a_hint(tmp_path: Path) -> None:
    platform = LocalPlatform(settings_for(tmp_path, redis_server=str(tmp_path / "no-redis-server")))
    for attempt in (platform.start(), platform.apply("redis-leader-deployment.yaml")):
        with pytest.raises(PlatformUnavailable) as caught:
            asyncio.run(attempt)
        assert caught.value.message == "redis-server was not found on PATH."
        assert "GUESTBOOK_LAB_REDIS_SERVER" in caught.value.hint and "apt-get install redis-server" in caught.value.hint
    assert not (tmp_path / "run").exists()


def test_unknown_manifest_is_a_bad_request(tmp_path: Path) -> None:
    async def body() -> None:
        async with lab(tmp_path) as platform:
            with pytest.raises(BadRequest):
                await platform.apply("../settings.py")
            with pytest.raises(BadRequest):
                await platform.apply("nope.yaml")

    asyncio.run(body())


def test_listeners_hear_pod_changes_and_endpoints_file_follows(tmp_path: Path) -> None:
    async def body() -> None:
        async with lab(tmp_path) as platform:
            calls: list[int] = []
            platform.add_listener(lambda: calls.append(1))
            await platform.apply("redis-leader-deployment.yaml")
            await until(lambda: ready_exactly(platform, "redis-leader", 1), what="leader")
            assert len(calls) >= 2  # created, ready
            endpoints = json.loads(platform.endpoints_file.read_text())
            assert endpoints == {"redis-leader": [], "redis-follower": []}  # no Service yet: no endpoints
            await platform.apply("redis-leader-service.yaml")
            endpoints = json.loads(platform.endpoints_file.read_text())
            assert endpoints["redis-leader"] == [["127.0.0.1", platform.leader_port]]

    asyncio.run(body())


def test_a_crashing_container_backs_off(tmp_path: Path) -> None:
    def crash(pod: str, port: int, endpoints: Path) -> list[str]:
        return [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]

    async def body() -> None:
        async with lab(tmp_path, *FRONTEND, frontend_command=crash) as platform:
            await platform.scale("frontend", 1)

            async def backing_off() -> bool:
                pods = await platform.get_pods()
                return any(pod.status == "CrashLoopBackOff" and pod.restarts >= 2 for pod in pods)

            await until(backing_off, what="CrashLoopBackOff", timeout=10)
            [pod] = await platform.get_pods()
            assert not pod.ready and pod.reason == "CrashLoopBackOff" and "back-off" in (pod.message or "")
            assert any(line.text == "boom" for line in await platform.logs(pod.name))

    asyncio.run(body())


# -- expose ------------------------------------------------------------------------------------------------------

STUB_FRONTEND = """
import http.server, sys
port, name = int(sys.argv[1]), sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", port), Handler)
print(f"listening on http://127.0.0.1:{port}", flush=True)
server.serve_forever()
"""


def stub_frontend(tmp_path: Path) -> Callable[[str, int, Path], list[str]]:
    script = tmp_path / "stub_frontend.py"
    script.write_text(STUB_FRONTEND)
    return lambda pod, port, endpoints: [sys.executable, str(script), str(port), pod]


async def http_get(url: str) -> tuple[int, str]:
    import httpx

    async with httpx.AsyncClient(timeout=3) as client:
        response = await client.get(url, headers={"Connection": "close"})
        return response.status_code, response.text


def test_expose_forwards_round_robin_and_follows_replacements(tmp_path: Path) -> None:
    async def body() -> None:
        async with lab(tmp_path, "frontend-deployment.yaml", frontend_command=stub_frontend(tmp_path)) as platform:
            with pytest.raises(PrerequisiteMissing):
                await platform.expose()
            await platform.apply("frontend-service.yaml")
            assert platform.frontend_url() is None
            url = await platform.expose()
            assert url == platform.frontend_url() and url.startswith("http://127.0.0.1:") and url.endswith("/")
            assert await platform.expose() == url  # idempotent
            await until(lambda: ready_exactly(platform, "frontend", 3), what="3 frontends")
            names = set(await pods_of(platform, "frontend"))
            seen = {(await http_get(url))[1] for _ in range(6)}
            assert seen == names
            assert len(await platform.frontend_endpoints()) == 3

            # Kill one pod's process: the connections after it go to the others, never to a dead pod.
            victim = sorted(names)[0]
            pid = platform.pod_pid(victim)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            for _ in range(6):
                status, _ = await http_get(url)
                assert status == 200

            # No ready pod: a clear 503 instead of a reset.
            await platform.scale("frontend", 0)
            status, text = await http_get(url)
            assert status == 503 and "No frontend pod is ready" in text

    asyncio.run(body())


def test_expose_falls_back_to_a_free_port_when_the_port_is_busy(tmp_path: Path) -> None:
    async def body() -> None:
        blocker = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        busy = blocker.sockets[0].getsockname()[1]
        try:
            platform = LocalPlatform(
                settings_for(tmp_path).model_copy(update={"frontend_port": busy}),
                frontend_command=stub_frontend(tmp_path),
            )
            async with running(platform, *FRONTEND):
                url = await platform.expose()
                assert url.startswith("http://127.0.0.1:") and not url.endswith(f":{busy}/")
                assert (note := platform.expose_note()) is not None and str(busy) in note
        finally:
            blocker.close()
            await blocker.wait_closed()

    asyncio.run(body())


def test_the_real_frontend_serves_the_guestbook_through_expose(tmp_path: Path) -> None:
    async def body() -> None:
        async with lab(tmp_path, *LEADER, *FOLLOWER, *FRONTEND) as platform:
            url = await platform.expose()
            await until(lambda: followers_linked(platform, 2), what="followers")
            await until(lambda: ready_exactly(platform, "frontend", 3), what="3 frontends", timeout=10)

            async def written() -> bool:
                # A frontend re-reads the endpoints file every 0.5 s (as kube-proxy lags behind the Endpoints):
                # one that started before the leader was ready answers 503 until then.
                status, _ = await http_get(url + "guestbook.php?cmd=set&value=hello")
                return status == 200

            await until(written, what="the entry written through the frontend", timeout=5)

            async def readable() -> bool:
                status, text = await http_get(url + "guestbook.php?cmd=get")
                return status == 200 and "hello" in text

            await until(readable, what="the entry read back through a follower")
            for endpoint in await platform.redis_endpoints():
                await until(_holds(endpoint.port, None), what=f"{endpoint.name} has the entry")

    asyncio.run(body())


DASHBOARD_SCRIPT = """
import asyncio, sys
from pathlib import Path
from dashboard.platforms.local import FrontendCommand, LocalPlatform
from dashboard.settings import Settings

async def main():
    platform = LocalPlatform(Settings(run_dir=Path(sys.argv[1]), frontend_port=0))
    await platform.start()
    for manifest in ("redis-leader-deployment.yaml", "redis-leader-service.yaml", "redis-follower-deployment.yaml"):
        await platform.apply(manifest)
    while sum(pod.ready for pod in await platform.get_pods()) < 3:
        await asyncio.sleep(0.01)
    print(" ".join(str(platform.pod_pid(pod.name)) for pod in await platform.get_pods()), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def test_pods_die_with_a_dashboard_killed_by_sigkill(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: no redis-server outlives a dashboard killed with -9; the next start() cleans the run dir."""
    run_dir = tmp_path / "run"
    dashboard = subprocess.Popen(
        [sys.executable, "-c", DASHBOARD_SCRIPT, str(run_dir)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    try:
        assert dashboard.stdout is not None
        pids = [int(pid) for pid in dashboard.stdout.readline().split()]
        assert len(pids) == 3 and all(is_alive(pid) for pid in pids)
        assert (run_dir / "pods.json").exists()
        dashboard.kill()
        dashboard.wait()

        async def body() -> None:
            await until(lambda: not any(is_alive(pid) for pid in pids), what="the pods to die with it")
            async with lab(tmp_path) as platform:
                assert await platform.leftovers() == []

        asyncio.run(body())
        assert not run_dir.exists()
    finally:
        if dashboard.poll() is None:
            dashboard.kill()
            dashboard.wait()
        if dashboard.stdout is not None:
            dashboard.stdout.close()
