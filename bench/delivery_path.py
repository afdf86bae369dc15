"""Live delivery path benchmark: XREAD BLOCK over watched streams vs PUBLISH notification + SUBSCRIBE.

Runs ``python -m bench.delivery_path`` (or ``python bench/delivery_path.py``); starts its own redis-server on a
free loopback port and stops it by PID. For each path and workload it measures, on one "pod" process:

* publish -> delivery latency (p50/p99/max) at a fixed publish rate, and the pod's and Redis's CPU;
* delivered events/s when a separate publisher process publishes as fast as it can (16 concurrent publishes).

Subscribers are simulated at the Delivery callback level (the hub and sessions are not part of this bench):
each subscriber is a bounded deque that receives a reference to every batch of its channel, the cost of
"one write per connection per batch". Publishing goes through ``RedisStreamsBroker.publish`` (the real Lua
script) from another process, so the pod's CPU is the reader's and the fan-out's only. Every process of
the run shares one machine: read the numbers as a comparison of the two paths, not as capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `fleetcast` and `bench` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

import redis.asyncio

from fleetcast.broker.base import Event, Retention
from fleetcast.broker.redis_streams import LivePath, RedisStreamsBroker

RETENTION = Retention(max_events=1000)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server (no persistence) on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    directory = tempfile.mkdtemp(prefix="fleetcast-bench-")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class Workload:
    name: str
    channels: int
    subscribers: int
    rate: int
    """Events per second, all channels together, in the latency phase."""


WORKLOADS = (
    Workload("1 channel x 1,000 subscribers", channels=1, subscribers=1000, rate=2000),
    Workload("1,000 channels x 5 subscribers", channels=1000, subscribers=5, rate=2000),
)


def publisher(url: str, channels: Sequence[str], rate: int, seconds: float, results: Any) -> None:
    """Another process: publish round-robin over ``channels`` at ``rate``/s (0: as fast as possible)."""
    results.put(asyncio.run(_publish(url, channels, rate, seconds)))


async def _publish(url: str, channels: Sequence[str], rate: int, seconds: float) -> int:
    broker = RedisStreamsBroker(url, timeout=5.0)
    await broker.start(lambda channel, events: None)
    count = 0

    async def one(channel: str) -> None:
        nonlocal count
        await broker.publish(channel, b'{"t":%d}' % time.time_ns(), "tick", retention=RETENTION)
        count += 1

    end = time.monotonic() + seconds
    try:
        if rate:
            tick, per_tick, n = 0.005, max(1, rate // 200), 0
            next_at = time.monotonic()
            while next_at < end:
                await asyncio.gather(*(one(channels[(n + i) % len(channels)]) for i in range(per_tick)))
                n += per_tick
                next_at += tick
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        else:

            async def worker(offset: int) -> None:
                n = offset
                while time.monotonic() < end:
                    await one(channels[n % len(channels)])
                    n += 16

            await asyncio.gather(*(worker(i) for i in range(16)))
    finally:
        await broker.close()
    return count


@dataclass
class Result:
    path: str
    workload: str
    phase: str
    published: int
    delivered: int
    seconds: float
    latencies_ms: list[float]
    pod_cpu: float
    redis_cpu: float

    def row(self) -> list[str]:
        lat = sorted(self.latencies_ms) or [float("nan")]
        return [
            self.workload,
            self.path,
            self.phase,
            f"{self.delivered / self.seconds:,.0f}",
            f"{self.delivered * self.fanout / self.seconds:,.0f}",
            f"{statistics.median(lat):.2f}",
            f"{lat[int(len(lat) * 0.99) - 1 if len(lat) > 1 else 0]:.2f}",
            f"{lat[-1]:.1f}",
            f"{100 * self.pod_cpu / self.seconds:.0f}%",
            f"{100 * self.redis_cpu / self.seconds:.0f}%",
            "ok" if self.delivered == self.published else f"LOST {self.published - self.delivered}",
        ]

    fanout: int = 1


async def redis_cpu(client: redis.asyncio.Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def run(url: str, path: LivePath, workload: Workload, phase: str, seconds: float) -> Result:
    channels = [f"bench:c{n}" for n in range(workload.channels)]
    subscribers = {c: [deque[Sequence[Event]](maxlen=4) for _ in range(workload.subscribers)] for c in channels}
    latencies: list[float] = []
    delivered = 0
    measuring = False
    progressed = asyncio.Event()

    def deliver(channel: str, batch: Sequence[Event]) -> None:
        nonlocal delivered
        now = time.time_ns()
        delivered += len(batch)
        if measuring:
            latencies.extend((now - int(e.data[5:-1])) / 1e6 for e in batch)
        for subscriber in subscribers[channel]:
            subscriber.append(batch)
        progressed.set()

    broker = RedisStreamsBroker(url, live=path, read_count=100, timeout=5.0)
    await broker.start(deliver)
    stats = redis.asyncio.Redis.from_url(url)
    try:
        for start in range(0, len(channels), 100):
            await asyncio.gather(*(broker.watch(c) for c in channels[start : start + 100]))
        await asyncio.sleep(0.2)
        rate = workload.rate if phase == "latency" else 0
        results: Any = multiprocessing.get_context("spawn").Queue()
        proc = multiprocessing.get_context("spawn").Process(
            target=publisher, args=(url, channels, rate, seconds, results), daemon=True
        )
        cpu0, rcpu0 = time.process_time(), await redis_cpu(stats)
        proc.start()
        await asyncio.sleep(0.5)  # the publisher process starting up
        measuring = True
        began = time.monotonic()
        published = await asyncio.to_thread(results.get, True, seconds + 30)
        await asyncio.to_thread(proc.join, 10)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):  # the last events still in flight
                while delivered < published:
                    progressed.clear()
                    await progressed.wait()
        elapsed = time.monotonic() - began
        cpu, rcpu = time.process_time() - cpu0, await redis_cpu(stats) - rcpu0
    finally:
        await stats.aclose()
        await broker.close()
    return Result(
        path=path,
        workload=workload.name,
        phase=phase,
        published=published,
        delivered=delivered,
        seconds=elapsed,
        latencies_ms=latencies,
        pod_cpu=cpu,
        redis_cpu=rcpu,
        fanout=workload.subscribers,
    )


HEADER = [
    "workload",
    "path",
    "phase",
    "events/s",
    "deliveries/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "pod CPU",
    "Redis CPU",
    "check",
]


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)) + " |"
    rule = "| " + " | ".join("-" * w for w in widths) + " |"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join([line, rule, *body])


async def main(seconds: float, paths: Sequence[LivePath]) -> None:
    rows = []
    with redis_server() as url:
        for workload in WORKLOADS:
            for phase in ("latency", "throughput"):
                for path in paths:
                    result = await run(url, path, workload, phase, seconds)
                    rows.append(result.row())
                    print(" ".join(rows[-1]), file=sys.stderr)
    print(f"\nfleetcast live delivery path, {seconds:.0f} s per run, {os.cpu_count()} CPUs shared by all processes")
    print("latency phase: 2,000 events/s in total; throughput phase: 16 concurrent publishes, as fast as they go")
    print(table(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="publishing time per run")
    parser.add_argument("--path", choices=["notify", "xread"], action="append", help="default: both")
    options = parser.parse_args()
    asyncio.run(main(options.seconds, options.path or ["xread", "notify"]))
