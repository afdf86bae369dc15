"""One Redis vs a Redis Cluster: publish throughput and live fan-out at a fixed p99, and the cost of ``WAIT``.

``python -m bench.cluster [--rates 1000,2000,...] [--seconds 4] [--p99-ms 50] [--plot docs/cluster-bench.png]``
starts, in turn, one redis-server, then a 3-master + 3-replica cluster (loopback, started and stopped by PID).
For each configuration and each offered rate (ascending) it runs, for ``--seconds``:

* two publisher processes that together offer that rate of ``RedisStreamsBroker.publish`` calls (the real Lua
  script) over 300 channels, open loop (paced by the clock, up to 256 in flight each), recording each publish's
  latency (call to acknowledgement);
* two subscriber processes ("pods") that watch all 300 channels through the broker's live reader and record each
  event's publish-to-delivery latency (the event carries its send time).

A rate is *sustained* when at least 97 % of it was acknowledged and delivered to both subscribers and both p99s
(publish, delivery) stay under ``--p99-ms``. The table shows every step; the summary the highest sustained rate
per configuration, with the Redis CPU per event of the busiest master (user + system seconds from ``/proc``). The
CPU per event says where one Redis process saturates (1 / CPU per event on one core) even when, as on a small
shared machine, the Python clients run out of CPU first. Configurations: ``standalone`` (one server),
``cluster`` (3 masters, each with a replica) and ``cluster+wait1`` (``wait_replicas=1``).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import subprocess
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
IN_FLIGHT = 256
PUBLISHERS = 2
SUBSCRIBERS = 2
KEEP = Retention(max_events=1000)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of latencies in seconds, in ms (infinite when nothing was measured)."""
    if not values:
        return float("inf")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def p99(values: list[float]) -> float:
    return quantile(values, 0.99)


async def _publish(url: str, mode: str, wait: int, rate: float, seconds: float, out: Any) -> None:
    broker = RedisStreamsBroker(url, mode=mode, wait_replicas=wait, max_connections=64)  # type: ignore[arg-type]
    await broker.start(lambda channel, batch: None)
    latencies: list[float] = []
    slots = asyncio.Semaphore(IN_FLIGHT)
    tasks: set[asyncio.Task[None]] = set()

    async def one(n: int) -> None:
        began = time.perf_counter()
        data = b'{"t":%.6f}' % time.time()
        try:
            await broker.publish(CHANNELS[n % len(CHANNELS)], data, "m", retention=KEEP)
            latencies.append(time.perf_counter() - began)
        except Exception:  # counted as not acknowledged
            pass
        finally:
            slots.release()

    start = time.perf_counter()
    n = 0
    while (now := time.perf_counter() - start) < seconds:
        due = int(now * rate) if rate else n + IN_FLIGHT  # rate 0: closed loop, as fast as the slots free up
        while n < due and time.perf_counter() - start < seconds:
            await slots.acquire()
            task = asyncio.create_task(one(n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.sleep(0.002)
    await asyncio.gather(*tasks)
    await broker.close()
    out.put((n, latencies))


def publisher(url: str, mode: str, wait: int, rate: float, seconds: float, out: Any) -> None:
    asyncio.run(_publish(url, mode, wait, rate, seconds, out))


async def _subscribe(url: str, mode: str, ready: Any, stop: Any, out: Any) -> None:
    latencies: list[float] = []

    def deliver(channel: str, batch: Any) -> None:
        now = time.time()
        for event in batch:
            latencies.append(now - float(event.data[5:-1]))

    broker = RedisStreamsBroker(url, mode=mode)  # type: ignore[arg-type]
    await broker.start(deliver)
    for channel in CHANNELS:
        await broker.watch(channel)
    ready.set()
    while not stop.is_set():
        await asyncio.sleep(0.05)
    await broker.close()
    out.put(latencies)


def subscriber(url: str, mode: str, ready: Any, stop: Any, out: Any) -> None:
    asyncio.run(_subscribe(url, mode, ready, stop, out))


def step(url: str, mode: str, wait: int, rate: float, seconds: float, masters: list[int]) -> dict[str, float]:
    """One offered rate: publishers and subscribers as processes; the busiest master's CPU per event."""
    ctx = multiprocessing.get_context("spawn")
    out, delivered_q, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    readies = [ctx.Event() for _ in range(SUBSCRIBERS)]
    subs = [ctx.Process(target=subscriber, args=(url, mode, r, stop, delivered_q)) for r in readies]
    for proc in subs:
        proc.start()
    for ready in readies:
        ready.wait(60)
    # Each master's idle CPU rate (cluster gossip, cron, the subscribers' pings), subtracted below.
    idle_from = {pid: cpu_seconds(pid) for pid in masters}
    time.sleep(1.0)
    idle = {pid: cpu_seconds(pid) - before for pid, before in idle_from.items()}
    cpu_before = {pid: cpu_seconds(pid) for pid in masters}
    began = time.monotonic()
    share = rate / PUBLISHERS
    pubs = [ctx.Process(target=publisher, args=(url, mode, wait, share, seconds, out)) for _ in range(PUBLISHERS)]
    for proc in pubs:
        proc.start()
    offered, acked = 0, []
    for _ in pubs:
        sent, latencies = out.get(timeout=seconds + 120)
        offered += sent
        acked += latencies
    spent = time.monotonic() - began
    cpu = max(cpu_seconds(pid) - before - idle[pid] * spent for pid, before in cpu_before.items())
    time.sleep(1.0)  # the last deliveries arrive
    stop.set()
    delivered = [delivered_q.get(timeout=seconds + 120) for _ in subs]
    for proc in (*pubs, *subs):
        proc.join()
    return {
        "offered": rate or len(acked) / seconds,
        "closed_loop": float(not rate),
        "acked_per_s": len(acked) / seconds,
        "publish_p50_ms": quantile(acked, 0.5),
        "publish_p99_ms": p99(acked),
        "delivered_per_s": min(len(d) for d in delivered) / seconds,
        "delivery_p99_ms": max(p99(d) for d in delivered),
        "busiest_master_cpu_ms_per_event": cpu / max(1, len(acked)) * 1000,
    }


def sweep(
    url: str, mode: str, wait: int, rates: list[float], args: argparse.Namespace, masters: list[int]
) -> list[dict[str, float]]:
    rows = []
    for rate in rates:
        row = step(url, mode, wait, rate, args.seconds, masters)
        row["sustained"] = float(sustained(row, args.p99_ms))
        rows.append(row)
        label = "closed loop" if row["closed_loop"] else f"{rate:>7.0f}/s offered"
        print(
            f"  {label}: acked {row['acked_per_s']:>7.0f}/s p50 {row['publish_p50_ms']:>6.1f} p99 "
            f"{row['publish_p99_ms']:>7.1f} ms, delivered {row['delivered_per_s']:>7.0f}/s p99 "
            f"{row['delivery_p99_ms']:>7.1f} ms, busiest master "
            f"{row['busiest_master_cpu_ms_per_event'] * 1000:.1f} us/event{'' if row['sustained'] else '  (missed)'}",
            flush=True,
        )
        misses = [r["sustained"] for r in rows[-2:]]
        if len(misses) == 2 and not any(misses):
            break  # two offered rates in a row missed: the next ones would too
    # Last, as fast as the clients go: the most load, so the fairest CPU per event (fixed costs spread thinnest).
    row = step(url, mode, wait, 0, args.seconds, masters)
    row["sustained"] = 0.0
    rows.append(row)
    print(
        f"  closed loop: acked {row['acked_per_s']:>7.0f}/s p99 {row['publish_p99_ms']:>7.1f} ms, delivered "
        f"{row['delivered_per_s']:>7.0f}/s, busiest master {row['busiest_master_cpu_ms_per_event'] * 1e3:.1f} us/event",
        flush=True,
    )
    return rows


def sustained(row: dict[str, float], p99_ms: float) -> bool:
    return (
        row["acked_per_s"] >= 0.97 * row["offered"]
        and row["delivered_per_s"] >= 0.97 * row["offered"]
        and row["publish_p99_ms"] <= p99_ms
        and row["delivery_p99_ms"] <= p99_ms
    )


def server_ceiling(ports: list[int], cluster: bool, masters: list[int], requests: int = 200_000) -> dict[str, float]:
    """The publish script driven by ``redis-benchmark`` (C, 32 connections, pipelines of 8): what the Redis side
    does when Python clients are not the limit. Channels: 300 random ones on one server; on a cluster
    ``redis-benchmark --cluster`` gives each master keys of its own (``{tag}``). No subscribers."""
    from fleetcast.broker import redis_scripts

    script = redis_scripts.PUBLISH
    tag = "{tag}" if cluster else "{c__rand_int__}"
    command = ["EVALSHA", script.sha, "1", f"fc:b/b:{tag}:s", '{"n":1}', "m", "", "1000", "", "300000"]
    command += [f"fc:b/b:{tag}:n", "", "SPUBLISH" if cluster else "PUBLISH"]
    args = ["redis-benchmark", "-p", str(ports[0]), "-n", str(requests), "-c", "32", "-P", "8", "-r", "300", "-q"]
    args += ["--threads", "2", *(["--cluster"] if cluster else [])]
    for port in ports:  # EVALSHA needs the script on every master
        subprocess.run(["redis-cli", "-p", str(port), "SCRIPT", "LOAD", script.text], capture_output=True, check=True)
    before = {pid: cpu_seconds(pid) for pid in masters}
    began = time.monotonic()
    out = subprocess.run([*args, *command], capture_output=True, text=True, timeout=600, check=True)
    wall = time.monotonic() - began
    used = [cpu_seconds(pid) - before[pid] for pid in masters]
    rate = float(out.stdout.strip().splitlines()[-1].split(":")[-1].split("requests")[0])
    return {
        "events_per_s": rate,
        "busiest_master_core_share": max(used) / wall,
        "masters_cpu_us_per_event": sum(used) / requests * 1e6,
        "busiest_master_cpu_us_per_event": max(used) / requests * 1e6,
    }


def main() -> None:
    # SIGTERM ends the run through the context managers, so every redis-server it started is stopped by PID.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rates", default="500,1000,2000,3000,4000,6000,8000", help="offered publishes/s, ascending")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--p99-ms", type=float, default=50.0)
    parser.add_argument("--only", default="", help="comma-separated configurations to run (default: all)")
    parser.add_argument("--plot", type=Path, default=None, help="write the chart (PNG) here")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r.strip()]  # empty: the closed-loop step alone
    only = set(filter(None, args.only.split(",")))
    results: dict[str, list[dict[str, float]]] = {}

    def wanted(name: str) -> bool:
        return not only or name in only

    ceilings: dict[str, dict[str, float]] = {}
    if wanted("standalone"):
        with redis_server() as server:
            assert server.proc is not None
            print("standalone", flush=True)
            results["standalone"] = sweep(server.url, "standalone", 0, rates, args, [server.proc.pid])
            ceilings["standalone"] = server_ceiling([server.port], False, [server.proc.pid])
    for name, wait in (("cluster", 0), ("cluster+wait1", 1)):
        if not wanted(name):
            continue
        with redis_cluster() as cluster:
            masters = [n.proc.pid for n in cluster.masters() if n.proc is not None]
            print(name, flush=True)
            results[name] = sweep(cluster.url, "cluster", wait, rates, args, masters)
            if wait == 0:
                ports = [n.port for n in cluster.masters()]
                ceilings[name] = server_ceiling(ports, True, masters)
    print("\nthe publish script from redis-benchmark (C client, pipelined, no subscribers):")
    for name, c in ceilings.items():
        print(
            f"  {name:<15} {c['events_per_s']:>8.0f} events/s; busiest master "
            f"{c['busiest_master_core_share']:.0%} of a core, {c['busiest_master_cpu_us_per_event']:.1f} us/event; "
            f"all masters {c['masters_cpu_us_per_event']:.1f} us/event"
        )
    print(f"\nhighest rate sustained with publish and delivery p99 <= {args.p99_ms:.0f} ms:")
    for name, rows in results.items():
        good = [r for r in rows if r["sustained"]]
        top = rows[-1]  # the closed-loop step
        per_event = top["busiest_master_cpu_ms_per_event"]
        held = f"{good[-1]['offered']:>6.0f} events/s (x{SUBSCRIBERS} delivered)" if good else "none of the rates"
        print(
            f"  {name:<15} {held}; closed loop {top['acked_per_s']:.0f}/s, busiest master {per_event * 1000:.1f} us "
            f"CPU per fleet event -> saturates one core near {1000 / per_event:,.0f} events/s"
        )
    if args.plot is not None:
        plot(results, ceilings, args.plot, args.p99_ms)


def plot(
    results: dict[str, list[dict[str, float]]], ceilings: dict[str, dict[str, float]], path: Path, p99_ms: float
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for index, (name, rows) in enumerate(results.items()):
        paced = [r for r in rows if not r["closed_loop"]]
        color = f"C{index}"
        rates = [r["offered"] for r in paced]
        left.plot(rates, [r["publish_p99_ms"] for r in paced], marker="o", color=color, label=f"{name} p99")
        left.plot(
            rates, [r["publish_p50_ms"] for r in paced], marker="x", linestyle=":", color=color, label=f"{name} p50"
        )
    left.axhline(p99_ms, color="grey", linestyle="--", linewidth=1)
    left.set_yscale("log")
    left.set_xlabel("offered publishes/s (2 publisher processes, 2 subscriber processes)")
    left.set_title("publish latency, ms (2 shared cores, load average 8-12)")
    left.legend(fontsize=7)
    names = list(results)
    width = 0.38
    xs = range(len(names))
    python = [results[n][-1]["busiest_master_cpu_ms_per_event"] * 1000 for n in names]
    native = [ceilings.get(n, {}).get("busiest_master_cpu_us_per_event", 0.0) for n in names]
    right.bar([x - width / 2 for x in xs], python, width, label="Python clients, closed loop")
    right.bar([x + width / 2 for x in xs], native, width, label="redis-benchmark (C, pipelined)")
    right.set_xticks(list(xs), names, fontsize=8)
    right.set_title("busiest master: CPU us per fleet event\n(one core saturates at 1,000,000 / this)")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
