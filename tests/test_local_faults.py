"""The local platform's run dir under a bad day: a second dashboard on it, and a run dir that cannot be used.

At start (the real CLI as a subprocess): a run dir locked by another dashboard, that is a file, is under a file,
is in /proc or is not writable is refused with exit 2 and one sentence naming the fix (`--run-dir`), no
traceback. Mid-lab (the platform in this process, real redis-servers): a run dir deleted, renamed or replaced
while pods run makes the next step fail with one sentence, creates no phantom pod, and cleanup still stops every
process. Only processes this test started (or the platform's pods, by pid) are signalled.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from dashboard.errors import PlatformUnavailable
from dashboard.platforms.local import LocalPlatform
from dashboard.platforms.local.rundir import RunDirBusy, RunDirError, lock_path
from tests.conftest import HX, PROJECT_ROOT, StartDashboard, is_alive, wait_for
from tests.polling import until
from tests.redis_helpers import free_port
from tests.test_local_platform import FOLLOWER, LEADER, followers_linked, lab, ready_count, running, settings_for

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")

CLI_TIMEOUT = 20.0


def run_cli(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`python -m dashboard ARGS` on a free loopback port, to completion (bounded)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUESTBOOK_LAB_")}
    cmd = [*prefix, sys.executable, "-m", "dashboard", "--port", str(free_port()), "--frontend-port", "0", *args]
    return subprocess.run(
        cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL
    )


def assert_refused(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit 2, one sentence on stderr that names --run-dir (and `words`), nothing on stdout, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "Guestbook lab dashboard" not in result.stdout
    assert lines[0].startswith("guestbook-lab: ") and "--run-dir" in lines[0], lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


# -- item 3: one dashboard per run dir --------------------------------------------------------------------------


def test_a_second_dashboard_on_the_same_run_dir_is_refused(start_dashboard: StartDashboard, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = start_dashboard(run_dir)
    first.run_steps("leader")
    before = first.lab_pids()
    assert len(before) == 1

    result = run_cli("--run-dir", str(run_dir))
    sentence = assert_refused(result, f"pid {first.pid}", f"port {first.port}", str(run_dir))
    print(f"\n{sentence}")

    # The first dashboard's lab is untouched: same leader process, still ready, its files still there.
    assert first.lab_pids() == before
    [(pid, start)] = before.values()
    assert is_alive(pid, start)
    [pod] = first.get("/api/pods")
    assert pod["ready"] and pod["component"] == "redis-leader"
    assert (run_dir / "pods.json").exists() and lock_path(run_dir).exists()
    with first.client() as client:
        assert client.post("/api/steps/followers", headers=HX).json()["state"] == "done"


LOCK_HOLDER = """
import sys, time
from pathlib import Path
from dashboard.platforms.local import rundir
rundir.lock(Path(sys.argv[1]), 4242)
print("locked", flush=True)
time.sleep(60)
"""


def test_another_labs_run_dir_is_locked_by_the_lab_that_owns_it(tmp_path: Path) -> None:
    """A lab's platform takes the lock at start; a holder killed with -9 frees it (the kernel drops the flock)."""
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(run_dir)], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        platform = LocalPlatform(settings_for(tmp_path))
        with pytest.raises(RunDirBusy) as caught:
            asyncio.run(platform.start())
        assert (caught.value.pid, caught.value.port) == (holder.pid, 4242)
        assert f"pid {holder.pid}, port 4242" in caught.value.message and "--run-dir" in caught.value.hint
        # A step retries the platform's start: refused the same way, and nothing was started.
        with pytest.raises(RunDirBusy):
            asyncio.run(platform.apply("redis-leader-deployment.yaml"))
        assert asyncio.run(platform.get_pods()) == []
        holder.kill()
        holder.wait(timeout=5)

        async def body() -> None:
            async with running(platform, "redis-leader-deployment.yaml"):
                assert len(await platform.get_pods()) == 1

        asyncio.run(body())
        assert not run_dir.exists() and not lock_path(run_dir).exists()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=5)
        if holder.stdout is not None:
            holder.stdout.close()


# -- item 11 at start ---------------------------------------------------------------------------------------------


def _a_file(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "run"
    path.write_text("not a directory")
    return path, "is a file"


def _under_a_file(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "file").write_text("not a directory")
    return tmp_path / "file" / "run", "which is a file"


def _in_proc(tmp_path: Path) -> tuple[Path, str]:
    return Path("/proc/guestbook-lab-test-run"), "kernel file system"


BAD_RUN_DIRS: dict[str, Callable[[Path], tuple[Path, str]]] = {
    "a-file": _a_file,
    "under-a-file": _under_a_file,
    "in-proc": _in_proc,
}


@pytest.mark.parametrize("case", list(BAD_RUN_DIRS))
def test_an_unusable_run_dir_is_refused_at_start(tmp_path: Path, case: str) -> None:
    run_dir, words = BAD_RUN_DIRS[case](tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    sentence = assert_refused(run_cli("--run-dir", str(run_dir)), str(run_dir), words)
    print(f"\n{sentence}")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing created, no lock file left


def test_a_run_dir_that_is_not_writable_is_refused_at_start(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        # root writes through any mode bits: make the directory a read-only mount, in a mount namespace of the CLI's
        # own (nothing changes for the rest of the machine).
        unshare = shutil.which("unshare")
        probe = subprocess.run([unshare or "unshare", "-m", "true"], capture_output=True, timeout=10)
        if unshare is None or probe.returncode != 0:
            pytest.skip("as root, a read-only run dir needs unshare -m (a private mount namespace)")
        mount = f'mount -t tmpfs -o ro,size=64k tmpfs "{run_dir}" && exec "$@"'
        prefix = (unshare, "-m", "sh", "-c", mount, "sh")
    else:
        run_dir.chmod(0o500)
    try:
        sentence = assert_refused(run_cli("--run-dir", str(run_dir), prefix=prefix), str(run_dir), "not writable")
    finally:
        run_dir.chmod(0o700)
    print(f"\n{sentence}")
    assert not lock_path(run_dir).exists() and list(run_dir.iterdir()) == []


# -- item 11 mid-lab ------------------------------------------------------------------------------------------------


def _delete(run_dir: Path) -> str:
    shutil.rmtree(run_dir)
    return "was deleted or renamed"


def _rename(run_dir: Path) -> str:
    run_dir.rename(run_dir.with_name("moved-away"))
    return "was deleted or renamed"


def _replace_by_a_file(run_dir: Path) -> str:
    shutil.rmtree(run_dir)
    run_dir.write_text("in the way")
    return "was replaced by a file"


def _replace_by_a_directory(run_dir: Path) -> str:
    shutil.rmtree(run_dir)
    run_dir.mkdir()
    return "was replaced by another directory"


MID_LAB: dict[str, Callable[[Path], str]] = {
    "deleted": _delete,
    "renamed": _rename,
    "replaced-by-a-file": _replace_by_a_file,
    "replaced-by-a-directory": _replace_by_a_directory,
}


@pytest.mark.parametrize("case", list(MID_LAB))
def test_a_run_dir_replaced_mid_lab_fails_the_step_and_cleanup_stops_everything(tmp_path: Path, case: str) -> None:
    run_dir = tmp_path / "run"

    async def body() -> None:
        async with lab(tmp_path, *LEADER, *FOLLOWER) as platform:
            await until(lambda: followers_linked(platform, 2), what="followers linked")
            pods = await platform.get_pods()
            pids = [pid for pod in pods if (pid := platform.pod_pid(pod.name)) is not None]
            assert len(pids) == 3
            words = MID_LAB[case](run_dir)

            # Every step fails with one sentence; no pod is created for it.
            for step in (
                platform.apply("frontend-deployment.yaml"),
                platform.scale("redis-follower", 3),
                platform.delete_pod(pods[-1].name),
            ):
                with pytest.raises(PlatformUnavailable) as caught:
                    await step
                assert str(run_dir) in caught.value.message and words in caught.value.message, caught.value.message
                assert "cleanup" in caught.value.hint
            assert [pod.name for pod in await platform.get_pods()] == [pod.name for pod in pods]

            # A follower that crashes now is not left as a phantom: it says why it cannot be created.
            follower = next(pod for pod in pods if pod.component == "redis-follower")
            victim = platform.pod_pid(follower.name)
            assert victim is not None
            os.kill(victim, signal.SIGKILL)

            async def create_error() -> str | None:
                pod = next(p for p in await platform.get_pods() if p.name == follower.name)
                return pod.message if pod.status == "CreateContainerError" else None

            message = await until(create_error, what="the restarted follower to report CreateContainerError")
            assert str(run_dir) in message, message

            # Cleanup still stops every process (and says what it deleted).
            lines = await platform.delete_lab()
            assert 'deployment.apps "redis-leader" deleted' in lines
            assert not any(is_alive(pid) for pid in pids)
            assert await platform.get_pods() == []
            assert not [line for line in await platform.leftovers() if line.startswith(("process", "port"))]

            # The lab can run again: on a fresh run dir, or with one sentence when a file is in the way.
            if case == "replaced-by-a-file":
                with pytest.raises(RunDirError, match="is a file"):
                    await platform.apply("redis-leader-deployment.yaml")
            else:
                await platform.apply("redis-leader-deployment.yaml")
                await until(lambda: ready_count(platform, "redis-leader"), what="a leader again")

    asyncio.run(body())
    wait_for(lambda: not run_dir.is_dir() or not any(run_dir.iterdir()), 3.0, "the run dir to be clean")


def test_a_step_through_the_dashboard_says_the_run_dir_was_deleted(start_dashboard: StartDashboard) -> None:
    dash = start_dashboard()
    dash.run_steps("leader")
    pids = dash.lab_pids()
    shutil.rmtree(dash.run_dir)
    with dash.client() as client:
        body = client.post("/api/steps/followers", headers=HX).json()
        assert body["state"] == "failed", body
        assert "was deleted or renamed" in body["message"], body
        assert "cleanup" in (body.get("hint") or ""), body
        assert [pod["component"] for pod in client.get("/api/pods").json()] == ["redis-leader"]
        assert client.post("/api/steps/cleanup", headers=HX).json()["state"] == "done"
    assert not any(is_alive(pid, start) for pid, start in pids.values())
    assert "Traceback" not in dash.log_text()
