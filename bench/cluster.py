"""One Redis vs a Redis Cluster: publish throughput, live fan-out and the cost of ``WAIT``.

``python -m bench.cluster [--seconds 5] [--publishers 2] [--plot docs/cluster-bench.png]`` starts, in turn, one
redis-server, then a 3-master + 3-replica cluster (loopback, started and stopped by PID), and for each:

* ``--publishers`` processes each publish as fast as 32 concurrent ``RedisStreamsBroker.publish`` calls allow
  (the real Lua script) on 300 channels, for ``--seconds``; each records every publish's latency;
* one subscriber process watches all 300 channels through the broker's live reader and counts deliveries.

It prints acknowledged events/s, publish latency p50/p99, delivered events/s, and the Redis servers' CPU seconds
(user + system from ``/proc``, summed over every redis-server of the run) per 1,000 events. Configurations:
``standalone`` (one server, no replica), ``cluster`` (3 masters, each with a replica) and ``cluster+wait1``
(``wait_replicas=1``). This is a closed loop: the rate is what the clients reach, the p99 the latency they saw
at that rate. Every process shares the machine, so on a small machine the Python clients, not Redis, may be the
limit: read the server CPU per event to see where one Redis would saturate.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.cluster import redis_cluster  # noqa: E402
from tests.support.processes import redis_server  # noqa: E402

from fleetcast.broker.base import Retention  # noqa: E402
from fleetcast.broker.redis_streams import RedisStreamsBroker  # noqa: E402

CHANNELS = [f"bench:c{i}" for i in range(300)]
CONCURRENCY = 32
KEEP = Retention(max_events=1000)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _publish(url: str, mode: str, wait: int, seconds: float, out: Any) -> None:
    broker = RedisStreamsBroker(url, mode=mode, wait_replicas=wait, max_connections=CONCURRENCY)  # type: ignore[arg-type]
    await broker.start(lambda channel, batch: None)
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def worker(offset: int) -> None:
        n = offset
        while time.monotonic() < deadline:
            began = time.perf_counter()
            await broker.publish(CHANNELS[n % len(CHANNELS)], b'{"n":1}', "m", retention=KEEP)
            latencies.append(time.perf_counter() - began)
            n += CONCURRENCY

    await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
    await broker.close()
    out.put(latencies)


def publisher(url: str, mode: str, wait: int, seconds: float, out: Any) -> None:
    asyncio.run(_publish(url, mode, wait, seconds, out))


async def _subscribe(url: str, mode: str, seconds: float, ready: Any, out: Any) -> None:
    delivered = 0

    def deliver(channel: str, batch: Any) -> None:
        nonlocal delivered
        delivered += len(batch)

    broker = RedisStreamsBroker(url, mode=mode)  # type: ignore[arg-type]
    await broker.start(deliver)
    for channel in CHANNELS:
        await broker.watch(channel)
    ready.set()
    await asyncio.sleep(seconds + 2)
    await broker.close()
    out.put(delivered)


def subscriber(url: str, mode: str, seconds: float, ready: Any, out: Any) -> None:
    asyncio.run(_subscribe(url, mode, seconds, ready, out))


def run(url: str, mode: str, wait: int, pids: list[int], seconds: float, publishers: int) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    out, delivered_q, ready = ctx.Queue(), ctx.Queue(), ctx.Event()
    sub = ctx.Process(target=subscriber, args=(url, mode, seconds, ready, delivered_q))
    sub.start()
    ready.wait(60)
    cpu_before = sum(cpu_seconds(p) for p in pids)
    procs = [ctx.Process(target=publisher, args=(url, mode, wait, seconds, out)) for _ in range(publishers)]
    for proc in procs:
        proc.start()
    latencies: list[float] = []
    for _ in procs:
        latencies += out.get(timeout=seconds + 60)
    for proc in procs:
        proc.join()
    cpu = sum(cpu_seconds(p) for p in pids) - cpu_before
    delivered = delivered_q.get(timeout=seconds + 60)
    sub.join()
    latencies.sort()
    events = len(latencies)
    return {
        "events_per_s": events / seconds,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(events * 0.99)] * 1000,
        "delivered_per_s": delivered / seconds,
        "redis_cpu_s_per_1k": cpu / events * 1000,
        "redis_cpu_s": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--plot", type=Path, default=None, help="write a bar chart (PNG) here")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with redis_server() as server:
        assert server.proc is not None
        results["standalone"] = run(server.url, "standalone", 0, [server.proc.pid], args.seconds, args.publishers)
    with redis_cluster() as cluster:
        pids = [n.proc.pid for n in cluster.nodes if n.proc is not None]
        results["cluster"] = run(cluster.url, "cluster", 0, pids, args.seconds, args.publishers)
        results["cluster+wait1"] = run(cluster.url, "cluster", 1, pids, args.seconds, args.publishers)
    print(f"{'config':<15}{'acked/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'delivered/s':>13}{'redis CPU s/1k':>16}")
    for name, r in results.items():
        print(
            f"{name:<15}{r['events_per_s']:>10.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
            f"{r['delivered_per_s']:>13.0f}{r['redis_cpu_s_per_1k']:>16.3f}"
        )
    if args.plot is not None:
        plot(results, args.plot)


def plot(results: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.bar(names, [results[n]["events_per_s"] for n in names], color="#4477aa")
    left.set_title("acknowledged publishes/s (closed loop)")
    right.bar(names, [results[n]["redis_cpu_s_per_1k"] * 1000 for n in names], color="#aa7744")
    right.set_title("Redis CPU ms per 1,000 events (all nodes)")
    for axis in (left, right):
        axis.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
