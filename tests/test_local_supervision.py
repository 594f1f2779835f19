"""How the local platform supervises its pods' processes: their environment and their readiness, like a kubelet.

Real redis-server processes and the real Python frontend on loopback. A pod's process never inherits the
dashboard's own settings (`GUESTBOOK_LAB_*`, the token among them), read from /proc/<pid>/environ; a follower
stopped with SIGSTOP fails its readiness probe (READY 0/1, "Readiness probe failed") and is ready again after
SIGCONT, without a restart. The only processes a test signals are the pods' own, by the pid the platform gives.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from dashboard.models import Pod
from dashboard.platforms.local import LocalPlatform
from dashboard.platforms.local.pods import PROBE_FAILURE_THRESHOLD, PROBE_PERIOD
from tests.polling import until
from tests.test_local_platform import FOLLOWER, FRONTEND, LEADER, followers_linked, ready_exactly, running, settings_for

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(errors="replace"): value.decode(errors="replace") for key, value in pairs}


ENV_DUMPING_REDIS = """#!/bin/sh
# redis-server rewrites its own /proc/<pid>/environ (its process title): record what it is given, then become it.
env > "{dump}/$$.env"
exec {redis} "$@"
"""


def test_children_do_not_inherit_the_dashboards_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The frontends' environment read from /proc/<pid>/environ; redis-server's as it exec()s (a wrapper records it)."""
    dump = tmp_path / "env"
    dump.mkdir()
    wrapper = tmp_path / "redis-server-env"
    wrapper.write_text(ENV_DUMPING_REDIS.format(dump=dump, redis=shutil.which("redis-server")))
    wrapper.chmod(0o755)
    monkeypatch.setenv("GUESTBOOK_LAB_TOKEN", "s3cret-token")
    monkeypatch.setenv("GUESTBOOK_LAB_SAMPLE_INTERVAL", "0.5")
    monkeypatch.setenv("UNRELATED_SETTING", "kept")

    def check(where: str, env: dict[str, str]) -> None:
        leaked = sorted(name for name in env if name.startswith("GUESTBOOK_LAB_"))
        assert leaked == [], (where, leaked)
        assert "s3cret-token" not in "\0".join(env.values()), where
        assert env.get("UNRELATED_SETTING") == "kept", where  # the rest of the environment is passed on

    async def body() -> None:
        platform = LocalPlatform(settings_for(tmp_path, redis_server=str(wrapper)))
        async with running(platform, *LEADER, *FOLLOWER, *FRONTEND):
            await until(lambda: followers_linked(platform, 2), what="followers linked")
            await until(lambda: ready_exactly(platform, "frontend", 3), what="3 frontends ready", timeout=10)
            pods = await platform.get_pods()
            assert len(pods) == 6
            for pod in pods:
                pid = platform.pod_pid(pod.name)
                assert pid is not None
                if pod.component == "frontend":
                    check(pod.name, environ_of(pid))
                else:
                    check(
                        pod.name,
                        dict(
                            line.split("=", 1) for line in (dump / f"{pid}.env").read_text().splitlines() if "=" in line
                        ),
                    )

    asyncio.run(body())


async def _pod(platform: LocalPlatform, name: str) -> Pod:
    return next(pod for pod in await platform.get_pods() if pod.name == name)


def test_a_stopped_follower_fails_its_readiness_probe_and_recovers(tmp_path: Path) -> None:
    async def body() -> None:
        platform = LocalPlatform(settings_for(tmp_path))
        async with running(platform, *LEADER, *FOLLOWER):
            await until(lambda: followers_linked(platform, 2), what="followers linked")
            follower = next(pod for pod in await platform.get_pods() if pod.component == "redis-follower")
            pid = platform.pod_pid(follower.name)
            assert pid is not None
            stopped = time.monotonic()
            os.kill(pid, signal.SIGSTOP)
            try:

                async def unready() -> Pod | None:
                    pod = await _pod(platform, follower.name)
                    return pod if not pod.ready else None

                limit = PROBE_PERIOD * (PROBE_FAILURE_THRESHOLD + 2)
                pod = await until(unready, timeout=limit, what="the stopped follower to turn unready")
                took = time.monotonic() - stopped
                print(f"\nSIGSTOP: follower not ready after {took:.2f} s")
                assert (pod.phase, pod.status, pod.restarts) == ("Running", "Running", 0)
                assert pod.message is not None and pod.message.startswith("Readiness probe failed"), pod
                assert "timed out" in pod.message
                # Like a Service: an unready pod is no endpoint any more (the frontend stops reading from it).
                endpoints = {e.name for e in await platform.redis_endpoints()}
                assert follower.name not in endpoints and len(endpoints) == 2
                assert platform.pod_pid(follower.name) == pid  # still the same process: no restart
            finally:
                os.kill(pid, signal.SIGCONT)
            resumed = time.monotonic()
            ready = await until(
                lambda: _ready(platform, follower.name), timeout=PROBE_PERIOD * 3, what="ready again after SIGCONT"
            )
            print(f"SIGCONT: ready again after {time.monotonic() - resumed:.2f} s")
            assert ready.restarts == 0 and platform.pod_pid(follower.name) == pid
            assert ready.message is None

    asyncio.run(body())


async def _ready(platform: LocalPlatform, name: str) -> Pod | None:
    pod = await _pod(platform, name)
    return pod if pod.ready else None
