"""The workloads (docs/benchmarks.md), each one function run once per server with the same load client and
publisher; each returns a flat dict of measurements for the run's JSON file.

Server CPU is utime+stime of the pod process from ``/proc`` across the measured span (Redis's own CPU is
recorded beside it, not added); memory is RSS from ``/proc``. A workload fails loudly if deliveries are short.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.suite import procs
from bench.suite.loadclient import CONNECT_CONCURRENCY
from bench.suite.procs import Pod, Redis
from bench.suite.publisher import Publisher
from bench.ws_fastpath import stop

KIND = {"fleetcast": "ws", "socketio": "sio", "nchan": "nchan-ws", "nchan-mem": "nchan-ws"}
"""Each server's WebSocket wire in the load client."""
SSE_KIND = {"fleetcast": "sse", "nchan": "nchan-sse", "nchan-mem": "nchan-sse"}
NCHAN = ("nchan", "nchan-mem")
DRAIN_FLAGS = ["--drain-rate", "1000", "--drain-propagation", "0.5", "--drain-reconnect-delay-ms", "500"]
DRAIN_CONFIGURED_SECONDS = 0.5 + 5000 / 1000


@dataclass
class Sizes:
    w1_subscribers: int = 5000
    w1_events: int = 100
    w2_channels: int = 1000
    w2_per_channel: int = 5
    w2_events: int = 5000
    w3_subscribers: int = 1000
    w3_seconds: float = 20.0
    w4_clients: int = 1000
    w4_behind: int = 1000
    w5_connections: int = 5000
    w6_connections: int = 5000
    w7_connections: int = 10_000
    w7_seconds: float = 600.0
    """Per server; ``--soak-seconds`` shortens it."""
    w8_connections: int = 5000


QUICK = Sizes(w1_events=40, w3_seconds=10.0, w8_connections=1000)


@dataclass
class Context:
    workdir: Path
    redis: Redis
    sizes: Sizes
    profile: Path | None = None
    notes: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def profiled(ctx: Context, pid: int, name: str) -> AsyncIterator[None]:
    """With a profile directory, sample ``pid`` with py-spy (raw collapsed stacks) while the body runs."""
    if ctx.profile is None:
        yield
        return
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "--pid", str(pid), "--rate", "200", "--nonblocking", "--format", "raw",
               "--output", str(ctx.profile / f"{name}.txt")]  # fmt: skip
    async with procs.process(command, ctx.profile / f"{name}.py-spy.log") as child:
        await asyncio.sleep(1.0)  # py-spy attaches
        yield
        await stop(child, signal.SIGINT)


class Span:
    """Server and Redis CPU across a measured span."""

    def __init__(self, pod: Pod, redis: Redis) -> None:
        self.pod, self.redis = pod, redis

    def __enter__(self) -> Span:
        self.wall = time.monotonic()
        self.cpu = self.pod.cpu()
        self.redis_cpu = procs.cpu_total(self.redis.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self.wall
        self.cpu = self.pod.cpu() - self.cpu
        self.redis_cpu = procs.cpu_total(self.redis.pid) - self.redis_cpu


async def redis_used(ctx: Context, server: str, name: str) -> None:
    """Nchan's Redis kind must have kept its messages in Redis: a config where the storage directive did not
    take effect would silently measure the memory store."""
    if server == "nchan" and int((await ctx.redis.command("DBSIZE")).strip() or 0) == 0:
        raise RuntimeError(f"{name}: Nchan (Redis) left nothing in Redis; its storage is not Redis")


def expect(answer: dict[str, Any], expected: int, what: str) -> None:
    if answer["events"] < expected:
        raise RuntimeError(f"{what}: {answer['events']:,} of {expected:,} deliveries ({answer['errors']})")


async def lockstep(publisher: Publisher, client: procs.LoadClient, channel: str, events: int, n: int) -> None:
    """One event at a time, the next only once every subscriber holds the previous one: no two events can share
    a server write or a client read, however fast either side is."""
    for i in range(events):
        await publisher.waves([channel], 1)
        answer = await client.call(cmd="wait", expected=(i + 1) * n, timeout=30)
        if answer["events"] < (i + 1) * n:
            return  # short: the caller's check reports it


async def fan_out(ctx: Context, server: str, kind: str, channels: list[str], per_channel: int, events: int,
                  name: str, paced: bool = False) -> dict[str, Any]:  # fmt: skip
    """Subscribers spread evenly over ``channels``, ``events`` publishes round-robin over them, in waves of 20
    (``paced``: one channel, lock-step, see :func:`lockstep`). Every subscriber must end with exactly its
    channel's events: none lost, none twice."""
    n = len(channels) * per_channel
    async with procs.pod(server, ctx.redis, ctx.workdir, "a") as pod, procs.load_client(ctx.workdir) as client:
        await client.connect(kind=kind, port=pod.port, n=n, channels=channels, probe=min(n, 200), track=paced)
        await asyncio.sleep(1.0)  # the handshakes' work settles out of the measurement
        await client.call(cmd="reset")
        before = await client.call(cmd="stats")
        expected = events * per_channel
        async with Publisher(pod.port, 20, server) as publisher, profiled(ctx, pod.pid, f"{name}-{server}"):
            with Span(pod, ctx.redis) as span:
                if paced:
                    await lockstep(publisher, client, channels[0], events, n)
                else:
                    await publisher.waves(channels, events)
                answer = await client.call(cmd="wait", expected=expected, timeout=120)
        expect(answer, expected, name)
        await redis_used(ctx, server, name)
        each = events // len(channels)
        if answer["min_per_conn"] != each or answer["max_per_conn"] != each or answer["duplicates"] or answer["gaps"]:
            raise RuntimeError(f"{name}: per subscriber {answer['min_per_conn']}..{answer['max_per_conn']} events, "
                               f"expected {each} ({answer['errors']})")  # fmt: skip
    return {
        "deliveries": answer["events"],
        "expected": expected,
        "server_cpu_s": span.cpu,
        "redis_cpu_s": span.redis_cpu,
        "client_cpu_s": answer["cpu_seconds"] - before["cpu_seconds"],
        "wall_s": span.wall,
        "deliveries_per_cpu_s": answer["events"] / span.cpu if span.cpu else float("inf"),
        "p50_ms": answer["p50_ms"],
        "p99_ms": answer["p99_ms"],
        "closed": answer["closed"],
        "deliveries_per_read": answer["events"] / answer["reads"] if answer["reads"] else 0.0,
        "paced": paced,
    }


async def w1(ctx: Context, server: str) -> dict[str, Any]:
    s = ctx.sizes
    return await fan_out(ctx, server, KIND[server], ["fanout"], s.w1_subscribers, s.w1_events, "W1")


async def w1p(ctx: Context, server: str) -> dict[str, Any]:
    """W1 in lock-step: the cost of one event over WebSocket with nothing to merge (W1 measures bursts)."""
    s = ctx.sizes
    return await fan_out(ctx, server, KIND[server], ["fanout"], s.w1_subscribers, s.w1_events, "W1p", paced=True)


async def w1s(ctx: Context, server: str) -> dict[str, Any]:
    s = ctx.sizes
    return await fan_out(ctx, server, SSE_KIND[server], ["fanout"], s.w1_subscribers, s.w1_events, "W1s", paced=True)


async def w2(ctx: Context, server: str) -> dict[str, Any]:
    s = ctx.sizes
    channels = [f"many-{i}" for i in range(s.w2_channels)]
    return await fan_out(ctx, server, KIND[server], channels, s.w2_per_channel, s.w2_events, "W2")


async def w3(ctx: Context, server: str) -> dict[str, Any]:
    """Subscribers on pod b, publishes on pod a at 20 events/s: every delivery crosses Redis."""
    s = ctx.sizes
    async with (
        procs.pod(server, ctx.redis, ctx.workdir, "a") as a,
        procs.pod(server, ctx.redis, ctx.workdir, "b") as b,
        procs.load_client(ctx.workdir) as client,
    ):
        # tracked: the publisher sends one at a time, so seq order is the servers' order
        await client.connect(kind=KIND[server], port=b.port, n=s.w3_subscribers, channels=["latency"], probe=-1,
                             track=True)  # fmt: skip
        await asyncio.sleep(1.0)
        await client.call(cmd="reset")
        async with Publisher(a.port, 4, server) as publisher, profiled(ctx, b.pid, f"W3-{server}"):
            with Span(b, ctx.redis) as span:
                sent = await publisher.at_rate("latency", 20.0, s.w3_seconds)
                answer = await client.call(cmd="wait", expected=sent * s.w3_subscribers, timeout=30, detail=True)
        expect(answer, sent * s.w3_subscribers, "W3")
        if answer["min_per_conn"] != sent or answer["max_per_conn"] != sent or answer["duplicates"] or answer["gaps"]:
            raise RuntimeError(f"W3: per subscriber {answer['min_per_conn']}..{answer['max_per_conn']} of {sent} "
                               f"({answer['errors']})")  # fmt: skip
    return {
        "events": sent,
        "deliveries": answer["events"],
        "p50_ms": answer["p50_ms"],
        "p99_ms": answer["p99_ms"],
        "max_ms": answer["max_ms"],
        "receiving_pod_cpu_s": span.cpu,
        "latency_quantiles_ms": answer["latency_quantiles_ms"],
    }


async def w4(ctx: Context, server: str, kind: str | None = None) -> dict[str, Any]:
    """Clients receive one event, all disconnect, ``behind`` events are published, all come back at once and
    resume from their last event; the time until every client holds every missed event."""
    s = ctx.sizes
    kind = kind or ("sse" if server == "fleetcast" else "sio")
    extra = ["--recovery"] if server == "socketio" else []
    channel = f"resume-{kind}"
    async with (
        procs.pod(server, ctx.redis, ctx.workdir, "a", extra) as pod,
        procs.load_client(ctx.workdir) as client,
        Publisher(pod.port, 1) as publisher,  # one at a time: seq order is then the server's order
    ):
        await client.connect(kind=kind, port=pod.port, n=s.w4_clients, channels=[channel], track=True)
        await publisher.waves([channel], 1)
        expect(await client.call(cmd="wait", expected=s.w4_clients, timeout=20), s.w4_clients, "W4 first event")
        await client.call(cmd="drop")
        await publisher.waves([channel], s.w4_behind)
        await client.call(cmd="reset")
        expected = s.w4_clients * s.w4_behind
        async with profiled(ctx, pod.pid, f"W4-{kind}-{server}"):
            with Span(pod, ctx.redis) as span:
                resumed = await client.call(cmd="resume")
                answer = await client.call(cmd="wait", expected=expected, timeout=60)
        expect(answer, expected, "W4")
    return {
        "transport": kind,
        "caught_up_s": span.wall,
        "reconnected_s": resumed["seconds"],
        "deliveries": answer["events"],
        "server_cpu_s": span.cpu,
        "duplicates": answer["duplicates"],
        "gaps": answer["gaps"],
        "resume_failed": resumed["failed"],
        "client_cpu_s": answer["cpu_seconds"],
        "anomalies": answer["errors"],
    }


async def w4ws(ctx: Context, server: str) -> dict[str, Any]:
    return await w4(ctx, server, "ws")


async def idle_memory(ctx: Context, server: str, kind: str, n: int) -> dict[str, Any]:
    async with procs.pod(server, ctx.redis, ctx.workdir, "a") as pod, procs.load_client(ctx.workdir) as client:
        await asyncio.sleep(2.0)
        before = pod.rss()
        await client.connect(kind=kind, port=pod.port, n=n, channels=[f"idle-{i}" for i in range(n // 5)])
        await asyncio.sleep(3.0)
        after = pod.rss()
    return {
        "connections": n,
        "transport": kind,
        "rss_before_mib": before / 2**20,
        "rss_after_mib": after / 2**20,
        "kib_per_connection": (after - before) / n / 1024,
    }


async def w5(ctx: Context, server: str) -> dict[str, Any]:
    return await idle_memory(ctx, server, KIND[server], ctx.sizes.w5_connections)


async def w5s(ctx: Context, server: str) -> dict[str, Any]:
    return await idle_memory(ctx, server, SSE_KIND[server], ctx.sizes.w5_connections)


async def w6(ctx: Context, server: str, rate: float = 50.0) -> dict[str, Any]:
    """Drain pod a under ``rate`` events/s (published through pod b) while its clients resume on pod b."""
    s = ctx.sizes
    async with (
        procs.pod(server, ctx.redis, ctx.workdir, "a", DRAIN_FLAGS) as a,
        procs.pod(server, ctx.redis, ctx.workdir, "b") as b,
        procs.load_client(ctx.workdir) as client,
        Publisher(b.port, 4) as publisher,
    ):
        await client.connect(kind="ws", port=a.port, alt_port=b.port, n=s.w6_connections, channels=["drain"],
                             track=True)  # fmt: skip
        publishing = asyncio.create_task(publisher.at_rate("drain", rate, 14.0))
        await asyncio.sleep(2.0)
        async with profiled(ctx, a.pid, "W6-drained-pod"):
            started = time.monotonic()
            token = a.admin_token()
            status, _ = await procs.http_json(a.admin_port, "POST", "/internal/drain?exit=false", token=token)
            if status != 202:
                raise RuntimeError(f"drain answered {status}")
            state: dict[str, Any] = {}
            while time.monotonic() - started < 60:
                _, state = await procs.http_json(a.admin_port, "GET", "/internal/drain", token=token)
                if state["state"] == "drained":
                    break
                await asyncio.sleep(0.05)
            duration = time.monotonic() - started
        sent = await publishing
        final = sent - 1
        answer: dict[str, Any] = {}
        for _ in range(200):  # bounded: 20 s for the last resumes and deliveries
            answer = await client.call(cmd="stats", final=final)
            if answer["last_seq_min"] >= final:
                break
            await asyncio.sleep(0.1)
    return {
        "connections": s.w6_connections,
        "events_per_s": rate,
        "drain_s": duration,
        "configured_s": DRAIN_CONFIGURED_SECONDS,
        "closed_by_drain": state.get("closed"),
        "pacing": state.get("pacing"),
        "reconnects": answer["reconnects"],
        "gaps": answer["gaps"],
        "duplicates": answer["duplicates"],
        "all_reached_final": answer["last_seq_min"] >= final,
        "zero_loss": answer["gaps"] == 0 and answer["last_seq_min"] >= final,
        "lost": answer["gaps"] + answer["behind"],
        "behind_conns": answer["behind_conns"],
        "final_seq": final,
        "last_seq_min": answer["last_seq_min"],
        "open_after": answer["open"],
        "client_errors": answer["errors"],
        "events": sent,
    }


async def w6l(ctx: Context, server: str) -> dict[str, Any]:
    """W6 under a lighter load, 10 events/s: separates the drain's pace from a pod saturated by live fan-out."""
    return await w6(ctx, server, 10.0)


async def w7(ctx: Context, server: str) -> dict[str, Any]:
    """Connections spread over 100 channels, 10 events/s round-robin, RSS sampled every 5 s."""
    s = ctx.sizes
    channels = [f"soak-{i}" for i in range(100)]
    samples: list[tuple[float, float]] = []
    async with (
        procs.pod(server, ctx.redis, ctx.workdir, "a") as pod,
        procs.load_client(ctx.workdir) as client,
        Publisher(pod.port, 2) as publisher,
    ):
        await client.connect(kind=KIND[server], port=pod.port, n=s.w7_connections, channels=channels)
        start = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - start) < s.w7_seconds:
            samples.append((elapsed, pod.rss() / 2**20))
            tick = time.monotonic()
            await publisher.waves(channels[sent % 100 : sent % 100 + 50], 50)
            sent += 50
            await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - tick)))
        samples.append((time.monotonic() - start, pod.rss() / 2**20))
        answer = await client.call(cmd="stats")
    first = samples[min(2, len(samples) - 1)][1]  # after the first 10 s: connections settled
    return {
        "connections": s.w7_connections,
        "seconds": s.w7_seconds,
        "rss_start_mib": first,
        "rss_end_mib": samples[-1][1],
        "rss_drift_mib": samples[-1][1] - first,
        "rss_max_mib": max(v for _, v in samples),
        "samples": samples,
        "deliveries": answer["events"],
        "still_open": answer["open"],
    }


async def w8(ctx: Context, server: str) -> dict[str, Any]:
    """Connection set-up: ``w8_connections`` WebSocket clients connect and subscribe, 5 per channel, at the load
    client's fixed concurrency (``CONNECT_CONCURRENCY`` in flight), each counted once the server confirmed the
    subscription (fleetcast ``subscribed``, Socket.IO its ``subscribed`` event, Nchan the 101 of ``/sub/<ch>``)."""
    n = ctx.sizes.w8_connections
    channels = [f"setup-{i}" for i in range(max(1, n // 5))]
    async with procs.pod(server, ctx.redis, ctx.workdir, "a") as pod, procs.load_client(ctx.workdir) as client:
        await asyncio.sleep(1.0)  # start-up work out of the span
        async with profiled(ctx, pod.pid, f"W8-{server}"):
            with Span(pod, ctx.redis) as span:
                answer = await client.connect(kind=KIND[server], port=pod.port, n=n, channels=channels)
    return {
        "connections": n,
        "concurrency": CONNECT_CONCURRENCY,
        "connect_s": answer["seconds"],
        "connections_per_s": n / answer["seconds"],
        "server_cpu_s": span.cpu,
        "server_cpu_ms_per_connection": span.cpu / n * 1000,
        "redis_cpu_s": span.redis_cpu,
    }


Workload = Callable[[Context, str], Awaitable[dict[str, Any]]]

WORKLOADS: dict[str, tuple[Workload, tuple[str, ...]]] = {
    "W1": (w1, ("fleetcast", "socketio", *NCHAN)),
    "W1p": (w1p, ("fleetcast", "socketio", *NCHAN)),
    "W1s": (w1s, ("fleetcast", *NCHAN)),
    "W2": (w2, ("fleetcast", "socketio", *NCHAN)),
    "W3": (w3, ("fleetcast", "socketio", "nchan")),  # two pods through Redis: Nchan's memory store is one pod's
    "W4": (w4, ("fleetcast", "socketio")),
    "W4ws": (w4ws, ("fleetcast",)),
    "W5": (w5, ("fleetcast", "socketio", *NCHAN)),
    "W5s": (w5s, ("fleetcast", *NCHAN)),
    "W6": (w6, ("fleetcast",)),
    "W6l": (w6l, ("fleetcast",)),
    "W7": (w7, ("fleetcast", "socketio")),
    "W8": (w8, ("fleetcast", "socketio", *NCHAN)),
}
