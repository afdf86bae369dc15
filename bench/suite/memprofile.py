"""Where fleetcast's idle memory per connection goes: ``fleetcast serve`` under tracemalloc, snapshotted on demand.

Run as ``python -m bench.suite.memprofile OUT -- <fleetcast serve flags>``: it starts tracemalloc (8 frames),
then the real ``fleetcast serve`` in this process. The first SIGUSR1 takes a baseline snapshot; each later one
writes to OUT the allocations grown since the baseline, grouped by the innermost fleetcast/uvicorn/websockets
frame and by full traceback. :func:`profile_idle` drives it: baseline, N idle WebSocket connections, snapshot.
tracemalloc sees Python allocations only (not the kernel's socket buffers, not C libraries' own mallocs), so
its total is less than the RSS growth; it slows the server, so its numbers are not benchmark numbers.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

from bench.suite import procs
from bench.ws_fastpath import free_port, wait_healthy

FRAMES = 8
INTERESTING = ("fleetcast", "uvicorn", "websockets", "starlette", "fastapi", "asyncio", "uvloop")


def _report(snapshot: tracemalloc.Snapshot, baseline: tracemalloc.Snapshot, connections: int) -> str:
    lines = []
    total = sum(s.size_diff for s in snapshot.compare_to(baseline, "filename"))
    lines.append(f"Python heap growth: {total / 2**20:.1f} MiB, {total / max(1, connections) / 1024:.2f} KiB/conn\n")
    packages: dict[str, int] = {}
    for stat in snapshot.compare_to(baseline, "filename"):
        name = stat.traceback[0].filename
        package = next((p for p in INTERESTING if f"/{p}/" in name or f"/{p}." in name), "other")
        packages[package] = packages.get(package, 0) + stat.size_diff
    lines.append("By package of the allocating line:")
    for package, size in sorted(packages.items(), key=lambda item: -item[1]):
        lines.append(f"{size / max(1, connections):8.0f} B/conn  {package}")
    lines.append("\nBy file (top 15):")
    for stat in snapshot.compare_to(baseline, "filename")[:15]:
        lines.append(f"{stat.size_diff / max(1, connections):8.0f} B/conn  {stat.traceback[0].filename}")
    lines.append("\nBy line (top 25):")
    for stat in snapshot.compare_to(baseline, "lineno")[:25]:
        frame = stat.traceback[0]
        lines.append(f"{stat.size_diff / max(1, connections):8.0f} B/conn  {stat.count_diff:+8d}  "
                     f"{frame.filename}:{frame.lineno}")  # fmt: skip
    lines.append("\nBy traceback (top 12), innermost last:")
    for stat in snapshot.compare_to(baseline, "traceback")[:12]:
        lines.append(f"--- {stat.size_diff / max(1, connections):.0f} B/conn, {stat.count_diff:+d} blocks")
        lines.extend(f"    {f.filename}:{f.lineno}" for f in stat.traceback)
    return "\n".join(lines)


def serve_profiled(out: Path, argv: list[str]) -> None:
    tracemalloc.start(FRAMES)
    state: dict[str, tracemalloc.Snapshot] = {}

    def snap(signum: int, frame: FrameType | None) -> None:
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        if "baseline" not in state:
            state["baseline"] = snapshot
            out.write_text("baseline\n")
        else:
            connections = int(out.read_text().split()[-1])
            out.write_text(_report(snapshot, state["baseline"], connections))

    signal.signal(signal.SIGUSR1, snap)
    from fleetcast.__main__ import main

    sys.argv = ["fleetcast", "serve", *argv]
    main()


def _read(path: Path) -> str:
    return path.read_text()


def _write(path: Path, text: str) -> None:
    path.write_text(text)


async def profile_idle(out: Path, connections: int, workdir: Path) -> str:
    """Baseline, ``connections`` idle fleetcast.v1 WebSocket subscribers, snapshot; the report's text."""
    async with procs.redis_server(workdir) as redis:
        port = free_port()
        command = [sys.executable, "-m", "bench.suite.memprofile", str(out), "--",
                   *procs.fleetcast_command(port, redis, "mem")[4:]]  # fmt: skip
        async with procs.process(command, out.with_suffix(".log")) as child, procs.load_client(workdir) as client:
            await wait_healthy(port, child)
            await asyncio.sleep(1.0)
            child.send_signal(signal.SIGUSR1)
            await asyncio.sleep(2.0)
            await client.connect(kind="ws", port=port, n=connections,
                                 channels=[f"idle-{i}" for i in range(connections // 5)])  # fmt: skip
            await asyncio.sleep(2.0)
            _write(out, f"connections {connections}")
            child.send_signal(signal.SIGUSR1)
            for _ in range(240):  # bounded: a snapshot of a large heap takes a while
                await asyncio.sleep(0.5)
                if _read(out).startswith("Python heap"):
                    break
    return _read(out)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[2] == "--":
        serve_profiled(Path(sys.argv[1]), sys.argv[3:])
        return
    import tempfile

    procs.raise_fd_limit()
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "memprofile.txt").resolve()
    with tempfile.TemporaryDirectory(prefix="memprofile.") as tmp:
        print(asyncio.run(profile_idle(out, int(sys.argv[2]) if len(sys.argv) > 2 else 2000, Path(tmp))))


if __name__ == "__main__":
    main()
