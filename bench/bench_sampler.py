"""Benchmark of the Redis sampler on real redis-server processes (a leader and two followers on loopback).

Prints:
- the median tick time over 20 ticks with 10,000 guestbook entries on 3 nodes (target: <= 100 ms), steady
  (value unchanged: cached) and changing (one entry appended before every tick: split and compared again);
- the CPU used by sampling at 1 Hz, as % of one core, measured with time.process_time over --seconds
  (target: <= 2 %), for the plain lab and for 10,000 entries;
- Redis commands per second with 0 and with 50 viewers reading the snapshot (they must be equal);
- the plain lab's median tick and Redis commands per tick: INFO server+replication+stats in one command (Redis
  >= 7) and one INFO per section (the path for Redis before 7.0, forced here), next to the three commands per
  node of a tick that read INFO replication alone.

Usage: .venv/bin/python bench/bench_sampler.py [--seconds 20] [--entries 10000]
Starts and stops its own redis-server processes (by pid); needs redis-server on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

import dashboard.sampler as sampler_module
from dashboard.models import RedisEndpoint
from dashboard.sampler import Sampler


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, replicaof: int | None = None) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="bench-redis-")
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        cmd += ["--dir", self.dir, "--repl-diskless-sync-delay", "0"]
        if replicaof is not None:
            cmd += ["--replicaof", "127.0.0.1", str(replicaof)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, socket_timeout=5)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client.ping():
                    break
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"redis-server on {self.port} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)


class Platform:
    def __init__(self, servers: list[Server]) -> None:
        names = ["redis-leader-0", "redis-follower-a", "redis-follower-b"]
        self.endpoints = [
            RedisEndpoint(name, "redis-leader" if i == 0 else "redis-follower", "127.0.0.1", s.port)
            for i, (name, s) in enumerate(zip(names, servers, strict=True))
        ]

    async def redis_endpoints(self) -> list[RedisEndpoint]:
        return list(self.endpoints)


async def wait_in_sync(sampler: Sampler, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not (await sampler.sample_now()).in_sync:
        if time.monotonic() > deadline:
            raise RuntimeError(f"not in sync: {sampler.snapshot.to_json()['followers']}")
        await asyncio.sleep(0.05)


async def tick_times(sampler: Sampler, ticks: int, before: object = None) -> list[float]:
    out = []
    for i in range(ticks):
        if callable(before):
            before(i)
        started = time.perf_counter()
        await sampler.sample_now()
        out.append(time.perf_counter() - started)
    return out


async def cpu_percent(sampler: Sampler, seconds: float, viewers: int = 0) -> tuple[float, float]:
    """CPU % of one core used by this process while the sampler runs at its interval; and commands/second."""
    await sampler.start()
    await asyncio.sleep(0.2)
    commands, cpu, wall = sampler.commands_sent, time.process_time(), time.monotonic()
    seen = -1
    end = wall + seconds
    while time.monotonic() < end:
        await asyncio.sleep(0.1)
        for _ in range(viewers):  # viewers only ever read the snapshot
            if sampler.version != seen:
                sampler.snapshot.to_json()
        seen = sampler.version
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    rate = (sampler.commands_sent - commands) / wall
    await sampler.stop()
    return 100 * cpu / wall, rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each CPU measurement")
    parser.add_argument("--entries", type=int, default=10_000)
    args = parser.parse_args()
    leader = Server()
    servers = [leader, Server(replicaof=leader.port), Server(replicaof=leader.port)]
    try:
        platform = Platform(servers)
        entries = [f"entry number {i} from the benchmark" for i in range(args.entries)]
        value = ",".join(entries)
        leader.client.set("guestbook", value)

        sampler = Sampler(platform)
        cold = time.perf_counter()
        await sampler.sample_now()
        cold = time.perf_counter() - cold
        await wait_in_sync(sampler)
        steady = await tick_times(sampler, 20)
        print(f"guestbook: {args.entries} entries, {len(value)} bytes, on 3 nodes")
        print(f"  first tick (connect + split):           {cold * 1000:7.2f} ms")
        print(f"  median tick, value unchanged (20 ticks): {statistics.median(steady) * 1000:7.2f} ms")

        def append(i: int) -> None:
            leader.client.append("guestbook", f",appended {i}")

        changing = await tick_times(sampler, 20, before=append)
        print(f"  median tick, value changing (20 ticks):  {statistics.median(changing) * 1000:7.2f} ms")
        print(f"  commands per tick: {sampler.commands_sent / max(sampler.ticks, 1):.1f}")
        await sampler.stop()

        print(f"CPU of sampling at 1 Hz, {args.seconds:g} s each (% of one core):")
        for label, stored in (("plain lab ('a,b')", "a,b"), (f"{args.entries} entries", value)):
            leader.client.set("guestbook", stored)
            sampler = Sampler(platform, interval=1.0)
            await wait_in_sync(sampler)
            percent, rate = await cpu_percent(sampler, args.seconds)
            print(f"  {label:<20} {percent:5.2f} %   ({rate:.1f} Redis commands/s)")
        sampler = Sampler(platform, interval=1.0)
        percent, rate = await cpu_percent(sampler, min(args.seconds, 10), viewers=50)
        print(f"  with 50 viewers      {percent:5.2f} %   ({rate:.1f} Redis commands/s: the same as with none)")

        leader.client.set("guestbook", "a,b")
        print("plain lab ('a,b'), 3 nodes, 200 ticks each (wall and CPU time of this process per tick):")
        sections = hasattr(sampler_module, "INFO_SECTIONS")  # False for a sampler from before (to compare)
        ways = (
            [("one INFO, 3 sections", False), ("one INFO per section", True)]
            if sections
            else [("INFO replication", False)]
        )
        for label, per_section in ways:
            sampler = Sampler(platform, one_section_info=True) if per_section else Sampler(platform)
            await wait_in_sync(sampler)
            sent, ticks, cpu = sampler.commands_sent, sampler.ticks, time.process_time()
            plain = await tick_times(sampler, 200)
            cpu_ms = (time.process_time() - cpu) * 1000 / 200
            per_tick = (sampler.commands_sent - sent) / (sampler.ticks - ticks)
            print(
                f"  {label:<22} median tick {statistics.median(plain) * 1000:6.2f} ms, CPU {cpu_ms:5.2f} ms, "
                f"{per_tick:.1f} commands/tick"
            )
            await sampler.stop()
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
