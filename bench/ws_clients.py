"""Many cheap WebSocket subscribers in one process, counting ``event`` messages: the client side of
:mod:`bench.ws_fastpath`.

Each subscriber is a raw asyncio protocol (no per-connection task, no library frame object), so one process
holds a thousand connections and parses every frame at a small fraction of the server's cost. It speaks just
enough RFC 6455 for a benchmark: the upgrade, masked client text frames, answering pings, counting server text
frames whose payload starts with ``{"op":"event"``. It does not validate UTF-8 or handle fragmented messages.

Run by the benchmark as ``python -m bench.ws_clients HOST PORT PATH N EXPECTED TIMEOUT [--subscribe CHANNEL]``:
connects N subscribers, prints ``ready`` once every one has its ``subscribed`` answer, then waits until they hold
EXPECTED events in total (or TIMEOUT seconds pass) and prints one JSON line of counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from typing import cast

import uvloop

from bench.suite.wire import PING, PONG, TEXT, client_frame, parse_frames, upgrade_request

EVENT = b'{"op":"event"'
SUBSCRIBED = b'{"op":"subscribed"'
CONNECT_CONCURRENCY = 100


class Tally:
    """Counts shared by all subscribers; ``done`` is set when ``events`` reaches ``expected``."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.events = 0
        self.closed = 0
        self.done = asyncio.Event()


class Subscriber(asyncio.Protocol):
    def __init__(self, request: bytes, subscribe: bytes | None, tally: Tally) -> None:
        self._request = request
        self._subscribe = subscribe
        self._tally = tally
        self._upgraded = False
        self._buffer = b""
        self.events = 0
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        self._tally.closed += 1
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError("closed before subscribed"))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self._buffer = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.subscribed.set_exception(ConnectionError(buffer[:end].decode("latin-1")))
                return
            self._upgraded = True
            buffer = buffer[end + 4 :]
            if self._subscribe is not None:
                assert self.transport is not None
                self.transport.write(client_frame(0x1, self._subscribe))
        self._buffer = self._parse(buffer)

    def _parse(self, buffer: bytes) -> bytes:
        """Consume complete frames; return the incomplete rest."""
        frames, rest = parse_frames(buffer)
        events = 0
        for opcode, start, end in frames:
            if opcode == TEXT:
                if buffer.startswith(EVENT, start):
                    events += 1
                elif buffer.startswith(SUBSCRIBED, start) and not self.subscribed.done():
                    self.subscribed.set_result(None)
            elif opcode == PING and self.transport is not None:
                self.transport.write(client_frame(PONG, buffer[start:end]))
        if events:
            self.events += events
            tally = self._tally
            tally.events += events
            if tally.events >= tally.expected:
                tally.done.set()
        return buffer[rest:]


async def run(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    tally = Tally(args.expected)
    subscribe = None
    if args.subscribe is not None:
        subscribe = json.dumps({"op": "subscribe", "channel": args.subscribe, "ref": 1}).encode()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect() -> Subscriber:
        async with gate:
            request = upgrade_request(args.host, args.port, args.path, "fleetcast.v1")
            _, subscriber = await loop.create_connection(
                lambda: Subscriber(request, subscribe, tally), args.host, args.port
            )
            await asyncio.wait_for(subscriber.subscribed, 10)
            return subscriber

    subscribers = await asyncio.gather(*(connect() for _ in range(args.n)))
    print("ready", flush=True)
    started = time.monotonic()
    cpu_started = time.process_time()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(tally.done.wait(), args.timeout)
    counts = [s.events for s in subscribers]
    result = {
        "events": tally.events,
        "min": min(counts),
        "max": max(counts),
        "closed": tally.closed,
        "seconds": time.monotonic() - started,
        "cpu_seconds": time.process_time() - cpu_started,
    }
    print(json.dumps(result), flush=True)
    for s in subscribers:
        if s.transport is not None:
            s.transport.abort()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("path")
    parser.add_argument("n", type=int)
    parser.add_argument("expected", type=int)
    parser.add_argument("timeout", type=float)
    parser.add_argument("--subscribe", metavar="CHANNEL", help="send a fleetcast.v1 subscribe op after the upgrade")
    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
