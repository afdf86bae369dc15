"""Server CPU per delivery: one multiplexed SSE stream of 20 channels against 20 single-channel streams.

``python -m bench.multiplex`` starts its own redis-server and one fleetcast pod (processes, loopback, stopped by
pid). Each run connects ``--dashboards`` clients that each follow ``--channels`` channels, either as one
``GET /v1/events?channel=...`` stream ("mux") or as one ``GET /v1/channels/<c>/events`` stream per channel
("separate"), then publishes ``--events`` events per channel straight into Redis (the real publish script, from
this process, so the pod only reads and delivers) and waits until every client has every event. The figure is
the pod's CPU seconds (utime + stime from ``/proc``) over the run divided by the deliveries (events x clients).

Two workloads: "paced" publishes at ``--rate`` events/s over all channels (batches of about one event, the
dashboard case and the worst for the mux stream's per-event ``id:`` line) and "burst" as fast as 16 concurrent
publishes go (larger batches). The machine is shared with other work, so the two kinds alternate within each
repetition (their order flips every repetition) and the report gives medians. Clients count ``data:`` lines and
discard the bytes; they run in this process, not in the pod's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `fleetcast` and `bench` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.suite.procs import Pod, http_json, pod, raise_fd_limit, redis_server
from bench.ws_fastpath import HOST, machine
from fleetcast.broker.base import Retention
from fleetcast.broker.redis_streams import RedisStreamsBroker

RETENTION = Retention(max_events=5000)
PAYLOAD = b'{"widget":"cpu","value":42.5,"unit":"%","host":"node-17.example.internal"}'
MARK = b"data: "


class Stream(asyncio.Protocol):
    """One SSE connection that counts ``data:`` lines and keeps nothing else."""

    def __init__(self, path: str) -> None:
        self.request = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nAccept: text/event-stream\r\n\r\n".encode()
        self.events = 0
        self.opened = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        chunk = self._tail + data
        if not self.opened.done():
            if b"\r\n\r\n" not in chunk:
                self._tail = chunk
                return
            status = chunk.split(b" ", 2)[1]
            if status != b"200":
                self.opened.set_exception(RuntimeError(f"stream answered {status.decode()}: {chunk[:300]!r}"))
                return
            self.opened.set_result(None)
        self.events += chunk.count(MARK)
        self._tail = chunk[-(len(MARK) - 1) :]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(RuntimeError(f"stream closed before its answer: {exc}"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass
class Run:
    workload: str
    kind: str
    connections: int
    deliveries: int
    cpu_seconds: float
    seconds: float

    @property
    def us_per_delivery(self) -> float:
        return self.cpu_seconds / self.deliveries * 1e6


async def open_streams(port: int, paths: Sequence[str]) -> list[Stream]:
    loop = asyncio.get_running_loop()
    streams = []
    for path in paths:
        stream = Stream(path)
        await loop.create_connection(lambda s=stream: s, HOST, port)  # type: ignore[misc]
        streams.append(stream)
    async with asyncio.timeout(60):
        await asyncio.gather(*(s.opened for s in streams))
    return streams


async def publish(broker: RedisStreamsBroker, channels: Sequence[str], events: int, rate: float) -> None:
    """``events`` per channel, round-robin; at ``rate`` events/s over all channels, or as fast as 16 go (0)."""
    order = [channels[i % len(channels)] for i in range(events * len(channels))]
    if rate:
        start = time.monotonic()
        for n, channel in enumerate(order):
            await broker.publish(channel, PAYLOAD, "metric", retention=RETENTION)
            delay = start + (n + 1) / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        return

    async def worker(offset: int) -> None:
        for channel in order[offset::16]:
            await broker.publish(channel, PAYLOAD, "metric", retention=RETENTION)

    await asyncio.gather(*(worker(i) for i in range(16)))


async def measure(
    target: Pod, broker: RedisStreamsBroker, workload: str, rate: float, kind: str, args: argparse.Namespace, run: int
) -> Run:
    channels = [f"bench-{run}-{kind}:w{i}" for i in range(args.channels)]
    if kind == "mux":
        query = "&".join(f"channel={c}" for c in channels)
        paths = [f"/v1/events?{query}"] * args.dashboards
    else:
        paths = [f"/v1/channels/{c}/events" for _ in range(args.dashboards) for c in channels]
    streams = await open_streams(target.port, paths)
    try:
        for channel in channels:  # every subscription is registered (the 200 says so; this double-checks)
            _, info = await http_json(target.port, "GET", f"/v1/channels/{channel}")
            assert info["subscribers"] == args.dashboards, info
        expected = args.events * args.channels * args.dashboards
        cpu_before, started = target.cpu(), time.monotonic()
        await publish(broker, channels, args.events, rate)
        async with asyncio.timeout(120):
            while sum(s.events for s in streams) < expected:
                await asyncio.sleep(0.02)
        cpu = target.cpu() - cpu_before
        return Run(workload, kind, len(streams), expected, cpu, time.monotonic() - started)
    finally:
        for stream in streams:
            stream.close()
        await asyncio.sleep(0.5)  # let the pod close the streams before the next run measures


async def main_async(args: argparse.Namespace) -> list[Run]:
    raise_fd_limit()
    workloads = [("paced", args.rate), ("burst", 0.0)]
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="fleetcast-bench-mux-") as tmp:
        workdir = Path(tmp)
        async with redis_server(workdir) as redis, pod("fleetcast", redis, workdir, "mux", ["--anonymous"]) as target:
            broker = RedisStreamsBroker(redis.url, timeout=5.0)
            await broker.start(lambda channel, events: None)
            try:
                for rep in range(args.reps):
                    for workload, rate in workloads:
                        kinds = ["mux", "separate"] if rep % 2 == 0 else ["separate", "mux"]
                        for kind in kinds:
                            result = await measure(target, broker, workload, rate, kind, args, len(runs))
                            runs.append(result)
                            print(
                                f"rep {rep + 1} {workload:6} {kind:8} {result.connections:5} connections "
                                f"{result.deliveries} deliveries {result.cpu_seconds:.2f} cpu-s "
                                f"{result.us_per_delivery:.2f} us/delivery",
                                flush=True,
                            )
            finally:
                await broker.close()
    return runs


def report(runs: Sequence[Run], args: argparse.Namespace) -> str:
    lines = [
        f"{args.dashboards} clients x {args.channels} channels, {args.events} events per channel, "
        f"{args.reps} repetitions; {machine()}",
        "",
        "| workload | mux: us CPU per delivery (median) | separate: us CPU per delivery (median) | mux / separate |",
        "| --- | --- | --- | --- |",
    ]
    for workload in dict.fromkeys(r.workload for r in runs):
        mux = statistics.median(r.us_per_delivery for r in runs if r.workload == workload and r.kind == "mux")
        separate = statistics.median(r.us_per_delivery for r in runs if r.workload == workload and r.kind == "separate")
        lines.append(f"| {workload} | {mux:.2f} | {separate:.2f} | {mux / separate:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dashboards", type=int, default=50, help="clients, each following every channel")
    parser.add_argument("--channels", type=int, default=20, help="channels per client")
    parser.add_argument("--events", type=int, default=100, help="events published per channel and run")
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s of the paced workload")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (kinds alternate within each)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        print(report(asyncio.run(main_async(args)), args))


if __name__ == "__main__":
    main()
