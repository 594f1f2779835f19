"""Benchmark: API requests of the Kubernetes platform in steady state, counted by verb, 1 viewer vs 50.

Runs the platform through its real client against the HTTP-level API double (tests/k8s_double/), applies
the six manifests, then for `--seconds` (default 10) each round lets N viewers read `get_pods()` and
`redis_endpoints()` concurrently every 0.5 s (the sampler's default interval), and counts what reached the
API server by verb (list / watch / get / ...). The claim: no periodic LIST (watch only), and 50 viewers cost
the same requests as 1.

    .venv/bin/python bench/bench_k8s_requests.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard.platforms.kubernetes import LAB_MANIFESTS, KubernetesPlatform
from dashboard.settings import Settings
from tests.k8s_double import KubernetesApiDouble


async def measure(viewers: int, seconds: float) -> tuple[Counter[str], Counter[str], int]:
    with KubernetesApiDouble() as double, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            platform="kubernetes",
            kubeconfig=double.write_kubeconfig(Path(tmp) / "kubeconfig"),
            namespace="guestbook",
            redis_access="direct",
        )
        platform = KubernetesPlatform(settings)
        await platform.start()
        try:
            for manifest in LAB_MANIFESTS:
                await platform.apply(manifest)
            deadline = time.monotonic() + 5
            while len(await platform.get_pods()) < 6 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            start = len(double.requests)
            reads = 0
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                await asyncio.gather(
                    *(platform.get_pods() for _ in range(viewers)),
                    *(platform.redis_endpoints() for _ in range(viewers)),
                )
                reads += 2 * viewers
                await asyncio.sleep(0.5)
            setup = Counter(f"{verb} {path.rsplit('/', 1)[-1]}" for _, verb, path in double.requests[:start])
            steady = Counter(verb for _, verb, _ in double.requests[start:])
            return setup, steady, reads
        finally:
            await platform.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    results = {}
    for viewers in (1, 50):
        setup, steady, reads = asyncio.run(measure(viewers, args.seconds))
        results[viewers] = steady
        print(f"{viewers:>2} viewer(s): start + apply: " + ", ".join(f"{k} {v}" for k, v in sorted(setup.items())))
        verbs = ", ".join(f"{verb} {count}" for verb, count in sorted(steady.items())) or "none"
        print(f"{viewers:>2} viewer(s): {reads:>5} platform reads in {args.seconds:.0f} s -> API requests: {verbs}")
    same = results[1] == results[50]
    no_list = results[1]["list"] == 0 and results[50]["list"] == 0
    print(f"no periodic LIST: {'yes' if no_list else 'NO'}; 50 viewers cost the same as 1: {'yes' if same else 'NO'}")
    sys.exit(0 if same and no_list else 1)


if __name__ == "__main__":
    main()
