"""Helpers shared by the Kubernetes tests: settings that point at the API double, running the platform, polling.

Polling is `tests.polling` (`wait_until` from a test thread, `until` inside the platform's loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from dashboard.platforms.kubernetes import LAB_MANIFESTS, KubernetesPlatform
from dashboard.settings import Settings
from tests.k8s_double import KubernetesApiDouble
from tests.polling import wait_until


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


async def apply_all(platform: KubernetesPlatform) -> list[str]:
    """Apply the lab's six manifests in the tutorial's order; kubectl's output lines."""
    lines: list[str] = []
    for manifest in LAB_MANIFESTS:
        lines += await platform.apply(manifest)
    return lines


def run(platform: KubernetesPlatform, body: Callable[[], Awaitable[None]]) -> None:
    """Start the platform, run `body` on its loop, always close it."""

    async def main() -> None:
        await platform.start()
        try:
            await body()
        finally:
            await platform.close()

    asyncio.run(main())


poll = wait_until  # the real-cluster suite's name for it (tests/test_k8s_cluster.py)
