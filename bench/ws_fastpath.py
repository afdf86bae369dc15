"""Server CPU per delivered WebSocket event, three ways, on one machine in one run.

The question behind fleetcast's WebSocket fast path (docs/decisions.md, "WebSocket fast path"): at fan-out, what
does ASGI's one ``send`` per message per connection cost, against writing one pre-built frame buffer per
connection per batch through fleetcast's uvicorn protocol subclass? Variants:

1. ``send_text``: a plain FastAPI app (:mod:`bench.ws_naive_app`) whose publish endpoint calls
   ``await websocket.send_text(json.dumps(message))`` for each subscriber (JSON encoded per subscriber);
2. ``asgi-send``: the same app with the message encoded once, still one ASGI ``send`` per subscriber;
3. ``fleetcast``: the real ``fleetcast serve`` on its embedded broker; publishes arrive in waves, so the broker
   hands the hub batches and each subscriber gets one ``transport.write`` per batch;
4. ``fleetcast-1``: the same, one publish at a time, so every batch holds one event (the fast path without the
   batching).

Every server runs uvicorn with the same settings (httptools, uvloop, the sans-I/O WebSocket protocol,
permessage-deflate off). One client process (:mod:`bench.ws_clients`) holds the subscribers and counts what
arrives; this process publishes over HTTP. Server CPU is utime+stime from ``/proc/<pid>/stat`` from the first
publish until the clients counted every delivery, so it includes the HTTP publishes (the same number for
every variant). Loopback only; every process is stopped by its pid.

Run: ``.venv/bin/python -m bench.ws_fastpath`` (``--help`` for sizes, ``--profile DIR`` for py-spy).
It does not measure latency, Redis, SSE or more than one channel.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

HOST = "127.0.0.1"
CHANNEL = "bench"
ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 20.0


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    wave: int
    """Publishes in flight at once; the embedded broker batches those that land in one loop turn."""
    fleetcast: bool
    mode: str = ""

    def server_command(self, port: int) -> list[str]:
        if self.fleetcast:
            return [sys.executable, "-m", "fleetcast", "serve", "--port", str(port), "--log-level", "warning",
                    "--admin-port", "0"]  # fmt: skip
        return [sys.executable, "-m", "bench.ws_naive_app", "--mode", self.mode, "--port", str(port)]

    def client_path(self) -> str:
        return "/v1/ws" if self.fleetcast else f"/v1/ws?channel={CHANNEL}"


def variants(wave: int) -> list[Variant]:
    return [
        Variant("send_text", "(1) FastAPI `send_text`, JSON per subscriber", wave, False, "naive"),
        Variant("asgi-send", "(2) ASGI `send` per message, pre-encoded", wave, False, "preencoded"),
        Variant("fleetcast", f"(3) fleetcast FrameWriter, 1 buffer/batch (waves of {wave})", wave, True),
        Variant("fleetcast-1", "(3') fleetcast FrameWriter, 1 event/batch", 1, True),
    ]


@dataclass(frozen=True)
class Result:
    variant: Variant
    deliveries: int
    expected: int
    server_user: float
    server_system: float
    client_cpu: float
    wall: float
    closed: int

    @property
    def server_cpu(self) -> float:
        return self.server_user + self.server_system

    @property
    def per_cpu_second(self) -> float:
        return self.deliveries / self.server_cpu if self.server_cpu else float("inf")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """utime and stime of a process, in seconds (clock-tick resolution)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def child_env() -> dict[str, str]:
    """This environment without FLEETCAST_* settings, with the repo on the path for ``-m bench...``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCAST_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


async def stop(process: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> None:
    """Stop one process by its pid: the signal, a bounded wait, then SIGKILL."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, sig)
    try:
        await asyncio.wait_for(process.wait(), 5)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        await process.wait()


@contextlib.asynccontextmanager
async def started(
    command: Sequence[str], log: Path, stdout: int | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, env=child_env(), stdin=asyncio.subprocess.DEVNULL, stdout=stdout, stderr=stderr
        )
    try:
        yield process
    finally:
        await stop(process)


class HttpConnection:
    """One keep-alive HTTP/1.1 connection that sends pre-built requests; just enough for the benchmark."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, port: int) -> HttpConnection:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    async def request(self, method: str, path: str, body: bytes = b"", token: str = "") -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len(body)}\r\n"
        if token:
            head += f"Authorization: Bearer {token}\r\n"
        if body:
            head += "Content-Type: application/json\r\n"
        self._writer.write(head.encode() + b"\r\n" + body)
        headers = await self._reader.readuntil(b"\r\n\r\n")
        status = int(headers.split(b" ", 2)[1])
        length = 0
        for line in headers.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self._reader.readexactly(length)

    def close(self) -> None:
        self._writer.close()


async def wait_healthy(port: int, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            connection = await HttpConnection.open(port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        try:
            status, _ = await connection.request("GET", "/healthz")
        finally:
            connection.close()
        if status == 200:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"server on port {port} not healthy after {START_TIMEOUT} s")


def event_body(seq: int) -> bytes:
    return json.dumps({"data": {"seq": seq, "kind": "bench", "text": "fleetcast fan-out benchmark payload"}}).encode()


async def publish_all(port: int, events: int, wave: int) -> None:
    """``events`` publishes, ``wave`` at a time over as many keep-alive connections, each wave awaited."""
    connections = [await HttpConnection.open(port) for _ in range(wave)]
    path = f"/v1/channels/{CHANNEL}/events"
    try:
        for first in range(0, events, wave):
            count = min(wave, events - first)
            answers = await asyncio.gather(
                *(connections[i].request("POST", path, event_body(first + i)) for i in range(count))
            )
            for status, body in answers:
                if status != 201:
                    raise RuntimeError(f"publish answered {status}: {body[:200]!r}")
    finally:
        for connection in connections:
            connection.close()


async def measure(variant: Variant, subscribers: int, events: int, workdir: Path, profile: Path | None) -> Result:
    port = free_port()
    expected = subscribers * events
    delivery_timeout = 90.0
    async with started(variant.server_command(port), workdir / f"{variant.key}.server.log") as server:
        await wait_healthy(port, server)
        client_command = [
            sys.executable, "-m", "bench.ws_clients", HOST, str(port), variant.client_path(),
            str(subscribers), str(expected), str(delivery_timeout),
        ]  # fmt: skip
        if variant.fleetcast:
            client_command += ["--subscribe", CHANNEL]
        client_log = workdir / f"{variant.key}.client.log"
        async with started(client_command, client_log, stdout=asyncio.subprocess.PIPE) as client:
            assert client.stdout is not None
            ready = await asyncio.wait_for(client.stdout.readline(), START_TIMEOUT)
            if ready.strip() != b"ready":
                raise RuntimeError(f"clients failed: {ready!r} {client_log.read_text()[-2000:]}")
            await asyncio.sleep(0.5)  # let the handshakes' work settle out of the measurement
            async with profiled(server.pid, variant, profile):
                cpu_before = cpu_seconds(server.pid)
                wall_before = time.monotonic()
                await publish_all(port, events, variant.wave)
                line = await asyncio.wait_for(client.stdout.readline(), delivery_timeout + 10)
                wall = time.monotonic() - wall_before
                cpu_after = cpu_seconds(server.pid)
    counts = json.loads(line)
    user, system = (after - before for after, before in zip(cpu_after, cpu_before, strict=True))
    return Result(variant, counts["events"], expected, user, system, counts["cpu_seconds"], wall, counts["closed"])


@contextlib.asynccontextmanager
async def profiled(pid: int, variant: Variant, profile: Path | None) -> AsyncIterator[None]:
    """With ``profile``, sample the server with py-spy while the body runs (raw collapsed stacks)."""
    if profile is None:
        yield
        return
    output = profile / f"{variant.key}.txt"
    command = [
        str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--rate", "250",
        "--nonblocking", "--format", "raw", "--output", str(output),
    ]  # fmt: skip
    async with started(command, profile / f"{variant.key}.py-spy.log", asyncio.subprocess.DEVNULL) as spy:
        await asyncio.sleep(1.0)  # py-spy attaches
        yield
        await stop(spy, signal.SIGINT)


def top_frames(collapsed: Path, limit: int = 8) -> list[tuple[str, float]]:
    """The leaf frames holding most samples in a py-spy raw (collapsed) file, with their share."""
    leaves: Counter[str] = Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            leaves[stack.rsplit(";", 1)[-1]] += int(count)
    total = sum(leaves.values()) or 1
    return [(frame, n / total) for frame, n in leaves.most_common(limit)]


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in ("uvicorn", "websockets", "uvloop", "fastapi"))
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, {versions}"


def table(results: Sequence[Result]) -> str:
    base = results[0].per_cpu_second
    rows = [
        "| variant | deliveries (verified) | server CPU s (user) | deliveries / server CPU-s "
        "| µs CPU / delivery | vs (1) | wall s | client CPU s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        verified = f"{r.deliveries:,}" + ("" if r.deliveries == r.expected else f" of {r.expected:,}!")
        rows.append(
            f"| {r.variant.label} | {verified} | {r.server_cpu:.2f} ({r.server_user:.2f}) "
            f"| {r.per_cpu_second:,.0f} | {1e6 / r.per_cpu_second:.2f} | {r.per_cpu_second / base:.2f}x "
            f"| {r.wall:.2f} | {r.client_cpu:.2f} |"
        )
    return "\n".join(rows)


async def main_async(args: argparse.Namespace, profile: Path | None) -> int:
    chosen = [v for v in variants(args.wave) if not args.only or v.key in args.only]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="ws_fastpath.") as tmp:
        for variant in chosen:
            result = await measure(variant, args.subscribers, args.events, Path(tmp), profile)
            print(f"{variant.key}: {result.per_cpu_second:,.0f} deliveries per server CPU-second", file=sys.stderr)
            results.append(result)
    print(f"{args.subscribers:,} subscribers on one channel, {args.events:,} events; {machine()}\n")
    print(table(results))
    if profile is not None:
        for variant in chosen:
            print(f"\npy-spy, {variant.label}: top leaf frames")
            for frame, share in top_frames(profile / f"{variant.key}.txt"):
                print(f"- {share:5.1%} {frame}")
    return 0 if all(r.deliveries == r.expected and r.closed == 0 for r in results) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=1000, help="WebSocket subscribers (%(default)s)")
    parser.add_argument("--events", type=int, default=1000, help="events published (%(default)s)")
    parser.add_argument("--wave", type=int, default=20, help="publishes in flight at once (%(default)s)")
    parser.add_argument("--only", nargs="*", metavar="VARIANT", help="run only these variants (by key)")
    parser.add_argument("--profile", metavar="DIR", help="record each server with py-spy into DIR")
    args = parser.parse_args()
    profile = Path(args.profile).resolve() if args.profile else None
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
    sys.exit(asyncio.run(main_async(args, profile)))


if __name__ == "__main__":
    main()
