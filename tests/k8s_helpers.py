"""Helpers shared by the Kubernetes tests: settings that point at the API double, running the platform, polling.

Polling is always with a deadline (no fixed sleeps): `poll` from a test thread, `until` inside the platform's loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from dashboard.platforms.kubernetes import KubernetesPlatform
from dashboard.settings import Settings
from tests.k8s_api_double import KubernetesApiDouble

T = TypeVar("T")


def settings_for(double: KubernetesApiDouble, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for the Kubernetes platform against `double` (namespace guestbook, pod IPs dialled directly)."""
    values: dict[str, Any] = {
        "platform": "kubernetes",
        "kubeconfig": double.write_kubeconfig(tmp_path / "kubeconfig"),
        "namespace": "guestbook",
        "redis_access": "direct",
        "frontend_port": 0,
        "step_timeout": 10,
        "run_dir": tmp_path,
    }
    values.update(overrides)
    return Settings(**values)


def run(platform: KubernetesPlatform, body: Callable[[], Awaitable[None]]) -> None:
    """Start the platform, run `body` on its loop, always close it."""

    async def main() -> None:
        await platform.start()
        try:
            await body()
        finally:
            await platform.close()

    asyncio.run(main())


def poll(probe: Callable[[], T], timeout: float = 20.0, what: str = "", interval: float = 0.02) -> T:
    """`probe()` until truthy, with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}; last: {result!r}")
        time.sleep(interval)


async def until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
    """Poll an in-loop predicate with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.02)
