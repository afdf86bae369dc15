"""Is W3's latency tail garbage collection? W3 with the receiving pod's collections timed.

Run as ``python -m bench.suite.gcprobe [SECONDS]``: W3's set-up (pod a takes publishes at 20 events/s, 1,000
WebSocket subscribers on pod b), except that pod b is ``fleetcast serve`` run in-process under a
``gc.callbacks`` timer that logs every collection's generation and duration to its stderr (``GC <gen> <ms>``).
It prints W3's p50/p99 and the collections, so a tail can be laid against pauses. Not a benchmark number: one
run, no peer.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.suite import procs
from bench.suite.publisher import Publisher
from bench.ws_fastpath import free_port, wait_healthy


def serve_timed(argv: list[str]) -> None:
    started: dict[str, float] = {}

    def timer(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started["t"] = time.perf_counter()
        elif "t" in started:
            ms = (time.perf_counter() - started.pop("t")) * 1000
            print(f"GC {info['generation']} {ms:.2f}", file=sys.stderr, flush=True)

    gc.callbacks.append(timer)
    from fleetcast.__main__ import main

    sys.argv = ["fleetcast", "serve", *argv]
    main()


def _read(path: Path) -> str:
    return path.read_text()


async def probe(seconds: float, workdir: Path) -> None:
    async with procs.redis_server(workdir) as redis, procs.pod("fleetcast", redis, workdir, "a") as a:
        port = free_port()
        command = [sys.executable, "-m", "bench.suite.gcprobe", "--serve",
                   *procs.fleetcast_command(port, redis, "b")[4:]]  # fmt: skip
        log = workdir / "b.log"
        async with procs.process(command, log) as b, procs.load_client(workdir) as client:
            await wait_healthy(port, b)
            await client.connect(kind="ws", port=port, n=1000, channels=["latency"], probe=-1)
            await asyncio.sleep(1.0)
            await client.call(cmd="reset")
            mark = len(_read(log))
            async with Publisher(a.port, 4) as publisher:
                sent = await publisher.at_rate("latency", 20.0, seconds)
            answer = await client.call(cmd="wait", expected=sent * 1000, timeout=30)
            text = _read(log)[mark:]
    pauses = [
        (int(g), float(ms)) for _, g, ms in (line.split() for line in text.splitlines() if line.startswith("GC "))
    ]
    print(f"{answer['events']:,} deliveries, p50 {answer['p50_ms']:.1f} ms, p99 {answer['p99_ms']:.1f} ms, "
          f"max {answer['max_ms']:.1f} ms")  # fmt: skip
    for generation in (0, 1, 2):
        times = sorted(ms for g, ms in pauses if g == generation)
        if times:
            print(f"gen {generation}: {len(times)} collections, max {times[-1]:.1f} ms, total {sum(times):.0f} ms")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve_timed(sys.argv[2:])
        return
    procs.raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="gcprobe.") as tmp:
        asyncio.run(probe(float(sys.argv[1]) if len(sys.argv) > 1 else 20.0, Path(tmp)))


if __name__ == "__main__":
    main()
