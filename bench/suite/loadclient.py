"""The load client: thousands of WebSocket, SSE and Socket.IO connections in one process, driven over stdin.

Each connection is a raw asyncio protocol (no task per connection, no library frame objects), so one process
holds 10,000 connections and parses what arrives at a fraction of a server's cost. It speaks five wires
(:mod:`bench.suite.wire`): fleetcast.v1 over WebSocket (``ws``), fleetcast's SSE (``sse``), Socket.IO v5
over Engine.IO v4 on a raw WebSocket (``sio``), and Nchan's subscriber at ``/sub/<channel>`` over WebSocket
(``nchan-ws``: the upgrade is the subscription, every text frame is one message's body) and EventSource
(``nchan-sse``: ``data:`` is the body, ``id:`` Nchan's message id, which a resume sends as ``Last-Event-ID``).
Events carry ``seq`` and ``ts`` (publisher's ``time.time()``) in their data; "probe" connections record
publish-to-receive latency from ``ts``, "tracked" ones check ``seq`` for gaps and duplicates and follow drains:
on fleetcast's ``reconnect`` they wait ``after_ms`` and resume on ``alt_port`` from their last id (WS ``since``,
SSE ``Last-Event-ID``).

Protocol: one JSON command per stdin line, one JSON answer per stdout line. Commands (``cmd``): ``connect``,
``reset``, ``wait``, ``stats``, ``drop``, ``resume``, ``close``, ``exit``; see :func:`handle`.
Run by the harness as ``python -m bench.suite.loadclient``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time
from typing import Any, cast

import uvloop

from bench.suite import wire

HOST = "127.0.0.1"
CONNECT_CONCURRENCY = 200
SUBSCRIBE_TIMEOUT = 30.0
LATENCY_CAP = 3_000_000
WS_EVENT = b'{"op":"event"'
WS_SUBSCRIBED = b'{"op":"subscribed"'
WS_RECONNECT = b'{"op":"reconnect"'
SIO_EVENT = b'42["event"'
SIO_SUBSCRIBED = b'42["subscribed"'


class Tally:
    """What every connection adds to; ``done`` is set when ``events`` reaches ``expected``."""

    def __init__(self) -> None:
        self.events = 0
        self.expected = 0
        self.done = asyncio.Event()
        self.latencies: list[float] = []
        self.closed = 0
        self.reads = 0
        """``data_received`` calls: deliveries per read above 1 means events arrived merged (a lagging reader or
        a server that batches)."""
        self.reconnects = 0
        self.gaps = 0
        self.duplicates = 0
        self.errors: list[str] = []

    def add(self, count: int) -> None:
        self.events += count
        if self.expected and self.events >= self.expected:
            self.done.set()


class Conn(asyncio.Protocol):
    """One connection of any kind; ``subscribed`` resolves once it is ready to receive events."""

    def __init__(self, pool: Pool, spec: dict[str, Any], channel: str, probe: bool) -> None:
        self.pool = pool
        self.kind: str = spec["kind"]
        self.sse = self.kind.endswith("sse")
        self.port: int = spec["port"]
        self.alt_port: int | None = spec.get("alt_port")
        self.track: bool = spec.get("track", False)
        self.channel = channel
        self.probe = probe
        self.events = 0
        self.last_id: str | None = spec.get("since")
        self.next_seq: int | None = None
        self.last_seq = -1
        self.sio_pid: str | None = None
        self.sio_sid: str | None = None
        self.sio_offset: str | None = None
        self.reconnect_after: float | None = None
        self.transport: asyncio.Transport | None = None
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reset_wire()

    def _reset_wire(self) -> None:
        self._head_done = False
        self._buffer = b""
        self._dechunk: wire.Dechunker | None = None
        self._recovering = self.kind == "sio" and self.sio_pid is not None

    def request(self) -> bytes:
        if self.kind == "ws":
            return wire.upgrade_request(HOST, self.port, "/v1/ws", "fleetcast.v1")
        if self.kind == "sio":
            return wire.upgrade_request(HOST, self.port, "/socket.io/?EIO=4&transport=websocket", None)
        if self.kind == "nchan-ws":
            return wire.upgrade_request(HOST, self.port, f"/sub/{self.channel}", None)
        if self.kind == "nchan-sse":
            return wire.sse_request(HOST, self.port, f"/sub/{self.channel}", self.last_id)
        return wire.sse_request(HOST, self.port, f"/v1/channels/{self.channel}/events", self.last_id)

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.transport.write(self.request())

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.pool.tally.closed += 1
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError(f"closed before subscribed ({exc})"))
        if self.reconnect_after is not None and self.alt_port is not None:
            delay, self.reconnect_after = self.reconnect_after, None
            self.port = self.alt_port
            asyncio.get_running_loop().call_later(delay, self.pool.reopen, self)

    def data_received(self, data: bytes) -> None:
        self.pool.tally.reads += 1
        buffer = self._buffer + data if self._buffer else data
        if not self._head_done:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self._buffer = buffer
                return
            head = buffer[:end]
            expected = b"HTTP/1.1 200" if self.sse else b"HTTP/1.1 101"
            if not head.startswith(expected):
                self._fail(head.decode("latin-1")[:200])
                return
            self._head_done = True
            buffer = buffer[end + 4 :]
            if self.kind == "ws":
                self._send_ws(self._subscribe_op())
            elif self.kind.startswith("nchan") and not self.subscribed.done():
                self.subscribed.set_result(None)  # Nchan subscribes before it answers the request
            if self.sse and b"chunked" in head.lower():
                self._dechunk = wire.Dechunker()
        if self.sse:
            self._buffer = self._sse(buffer)
        else:
            self._buffer = self._ws(buffer)

    # protocols

    def _fail(self, message: str) -> None:
        if len(self.pool.tally.errors) < 20:
            self.pool.tally.errors.append(message)
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError(message))
        if self.transport is not None:
            self.transport.abort()

    def _send_ws(self, payload: bytes) -> None:
        if self.transport is not None:
            self.transport.write(wire.client_frame(wire.TEXT, payload))

    def _subscribe_op(self) -> bytes:
        op: dict[str, Any] = {"op": "subscribe", "channel": self.channel, "ref": 1}
        if self.last_id is not None:
            op["since"] = self.last_id
        return json.dumps(op).encode()

    def _ws(self, buffer: bytes) -> bytes:
        frames, rest = wire.parse_frames(buffer)
        events = 0
        for opcode, start, end in frames:
            if opcode == wire.TEXT:
                if self.kind == "ws":
                    events += self._ws_text(buffer, start, end)
                elif self.kind == "nchan-ws":
                    self._event(buffer[start:end])
                    events += 1
                else:
                    events += self._sio_text(buffer, start, end)
            elif opcode == wire.PING and self.transport is not None:
                self.transport.write(wire.client_frame(wire.PONG, buffer[start:end]))
            elif opcode == wire.CLOSE and self.transport is not None:
                self.transport.write(wire.client_frame(wire.CLOSE, buffer[start : start + 2]))
                self.transport.close()
        if events:
            self.events += events
            self.pool.tally.add(events)
        return buffer[rest:]

    def _ws_text(self, buffer: bytes, start: int, end: int) -> int:
        if buffer.startswith(WS_EVENT, start):
            payload = buffer[start:end]
            self._event(payload)
            if self.track:
                self.last_id = wire.string_after(payload, b'"id":"')
            return 1
        if buffer.startswith(WS_SUBSCRIBED, start):
            if not self.subscribed.done():
                self.subscribed.set_result(None)
        elif buffer.startswith(WS_RECONNECT, start):
            after = wire.number_after(buffer[start:end], b'"after_ms":')
            self.reconnect_after = (after or 0) / 1000
        return 0

    def _sio_text(self, buffer: bytes, start: int, end: int) -> int:
        if buffer.startswith(SIO_EVENT, start):
            payload = buffer[start:end]
            self._event(payload)
            if self.track:
                self.sio_offset = wire.trailing_string(payload) or self.sio_offset
            return 1
        packet = buffer[start:end]
        if packet == b"2":
            self._send_ws(b"3")
        elif packet.startswith(b"0{"):
            if self._recovering:
                self._send_ws(b"40" + json.dumps({"pid": self.sio_pid, "offset": self.sio_offset}).encode())
            else:
                self._send_ws(b"40")
        elif packet.startswith(b"40"):
            answer = json.loads(packet[2:] or b"{}")
            recovered = self._recovering and answer.get("sid") == self.sio_sid
            self.sio_sid, self.sio_pid = answer.get("sid"), answer.get("pid", self.sio_pid)
            if recovered:
                self.pool.tally.reconnects += 1
                if not self.subscribed.done():
                    self.subscribed.set_result(None)
            else:
                self._send_ws(b'42["subscribe",' + json.dumps(self.channel).encode() + b"]")
        elif packet.startswith(SIO_SUBSCRIBED):
            if not self.subscribed.done():
                self.subscribed.set_result(None)
        elif packet.startswith(b"44"):
            self._fail(packet.decode()[:200])
        return 0

    def _sse(self, data: bytes) -> bytes:
        if self._dechunk is not None:
            data = self._dechunk.feed(data)
            buffer = self._sse_rest + data if self._sse_rest else data
        else:
            buffer = data
        blocks, rest = wire.sse_blocks(buffer)
        events = 0
        for block in blocks:
            if block.startswith(b"retry:"):
                if not self.subscribed.done():
                    self.subscribed.set_result(None)
                continue
            kind = wire.sse_field(block, b"event")
            if kind is not None and kind.startswith(b"fleetcast."):
                if kind == b"fleetcast.reconnect":
                    after = wire.number_after(block, b'"after_ms":')
                    self.reconnect_after = (after or 0) / 1000
                continue
            data_line = wire.sse_field(block, b"data")
            if data_line is None:
                continue
            self._event(data_line)
            self.last_id = (wire.sse_field(block, b"id") or b"").decode() or self.last_id
            events += 1
        if events:
            self.events += events
            self.pool.tally.add(events)
        if self._dechunk is not None:
            self._sse_rest = buffer[rest:]
            if self._dechunk.finished and self.transport is not None:
                self.transport.close()  # the response ended; the connection would otherwise stay kept alive
            return b""
        return buffer[rest:]

    _sse_rest = b""

    def _event(self, payload: bytes) -> None:
        if self.probe:
            sent = wire.number_after(payload, b'"ts":')
            tally = self.pool.tally
            if sent is not None and len(tally.latencies) < LATENCY_CAP:
                tally.latencies.append(time.time() - sent)
        if self.track:
            seq = wire.number_after(payload, b'"seq":')
            if seq is None:
                return
            n = int(seq)
            if self.next_seq is not None and n != self.next_seq:
                tally = self.pool.tally
                if len(tally.errors) < 10:
                    tally.errors.append(f"{self.kind} conn {id(self):x}: expected seq {self.next_seq}, got {n}")
                if n < self.next_seq:
                    tally.duplicates += 1
                    return
                tally.gaps += n - self.next_seq
            self.next_seq = n + 1
            self.last_seq = n


class Pool:
    def __init__(self) -> None:
        self.conns: list[Conn] = []
        self.tally = Tally()
        self.gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        self.tasks: set[asyncio.Task[None]] = set()

    async def open(self, conn: Conn) -> None:
        async with self.gate:
            conn._reset_wire()
            conn._sse_rest = b""
            loop = asyncio.get_running_loop()
            conn.subscribed = loop.create_future()
            await loop.create_connection(lambda: conn, HOST, conn.port)
            await asyncio.wait_for(conn.subscribed, SUBSCRIBE_TIMEOUT)

    def reopen(self, conn: Conn) -> None:
        """Reconnect a drained connection in the background (its resume state carries over)."""

        async def again() -> None:
            self.tally.reconnects += 1
            try:
                await self.open(conn)
            except (OSError, TimeoutError, ConnectionError) as e:
                self._note(f"reconnect failed: {e!r}")

        task = asyncio.get_running_loop().create_task(again())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _note(self, message: str) -> None:
        if len(self.tally.errors) < 20:
            self.tally.errors.append(message)

    async def connect_all(self, conns: list[Conn]) -> int:
        """Open every connection; the number that failed."""
        results = await asyncio.gather(*(self.open(c) for c in conns), return_exceptions=True)
        failed = 0
        for result in results:
            if isinstance(result, BaseException):
                failed += 1
                self._note(repr(result))
        return failed


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def stats(pool: Pool, latency_detail: bool) -> dict[str, Any]:
    tally = pool.tally
    counts = [c.events for c in pool.conns] or [0]
    ms = [x * 1000 for x in tally.latencies]
    ordered = sorted(ms)
    answer: dict[str, Any] = {
        "events": tally.events,
        "min_per_conn": min(counts),
        "max_per_conn": max(counts),
        "conns": len(pool.conns),
        "open": sum(1 for c in pool.conns if c.transport is not None),
        "closed": tally.closed,
        "reads": tally.reads,
        "reconnects": tally.reconnects,
        "gaps": tally.gaps,
        "duplicates": tally.duplicates,
        "errors": tally.errors[:5],
        "latency_n": len(ms),
        "p50_ms": percentile(ordered, 0.50),
        "p99_ms": percentile(ordered, 0.99),
        "max_ms": ordered[-1] if ordered else float("nan"),
        "last_seq_min": min((c.last_seq for c in pool.conns), default=-1),
        "cpu_seconds": time.process_time(),
    }
    if latency_detail and ordered:
        step = max(1, len(ordered) // 1000)
        answer["latency_quantiles_ms"] = ordered[::step]
    return answer


async def handle(pool: Pool, command: dict[str, Any]) -> dict[str, Any]:
    """``connect`` {kind, port, n, channels, probe?, track?, alt_port?, since?}: open n more connections, the
    i-th on ``channels[i % len]``, the first ``probe`` of them recording latency (-1: all);
    ``reset``: zero the counters; ``wait`` {expected, timeout}: until that many events arrived since the reset;
    ``stats`` {detail?}; ``drop``: abort every connection, keeping its resume state; ``resume`` {port?}: reopen
    them all from that state; ``close``: abort and forget every connection."""
    cmd = command["cmd"]
    started = time.monotonic()
    if cmd == "connect":
        probe = command.get("probe", 0)
        channels = command["channels"]
        base = len(pool.conns)
        new = [Conn(pool, command, channels[i % len(channels)], probe < 0 or i < probe) for i in range(command["n"])]
        pool.conns.extend(new)
        failed = await pool.connect_all(new)
        return {"connected": len(new) - failed, "failed": failed, "seconds": time.monotonic() - started,
                "first": base, "errors": pool.tally.errors[:5]}  # fmt: skip
    if cmd == "reset":
        pool.tally = Tally()
        for c in pool.conns:
            c.events = 0
        return {"ok": True}
    if cmd == "wait":
        pool.tally.expected = command["expected"]
        if pool.tally.events >= pool.tally.expected:
            pool.tally.done.set()
        else:
            pool.tally.done.clear()  # a later wait for more (lock-step publishing) waits again
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pool.tally.done.wait(), command["timeout"])
        return {"seconds": time.monotonic() - started, **stats(pool, command.get("detail", False))}
    if cmd == "stats":
        answer = stats(pool, command.get("detail", False))
        if "final" in command:  # how many events connections are short of the final seq (drain check)
            final = command["final"]
            answer["behind"] = sum(final - c.last_seq for c in pool.conns if c.last_seq < final)
            answer["behind_conns"] = sum(1 for c in pool.conns if c.last_seq < final)
        return answer
    if cmd == "drop":
        for c in pool.conns:
            if c.transport is not None:
                c.transport.abort()
        await asyncio.sleep(0.2)
        return {"dropped": len(pool.conns)}
    if cmd == "resume":
        for c in pool.conns:
            c.port = command.get("port", c.port)
        failed = await pool.connect_all(pool.conns)
        return {"failed": failed, "seconds": time.monotonic() - started}
    if cmd == "close":
        for c in pool.conns:
            c.reconnect_after = None
            if c.transport is not None:
                c.transport.abort()
        pool.conns.clear()
        await asyncio.sleep(0.2)
        return {"ok": True}
    raise ValueError(f"unknown command {cmd!r}")


async def serve() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pool = Pool()
    print(json.dumps({"ready": True}), flush=True)
    while line := await reader.readline():
        command = json.loads(line)
        if command["cmd"] == "exit":
            break
        try:
            answer = await handle(pool, command)
        except Exception as e:  # the harness reads the error and fails the workload
            answer = {"error": repr(e)}
        print(json.dumps(answer), flush=True)
    for c in pool.conns:
        if c.transport is not None:
            c.transport.abort()


def main() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(serve())


if __name__ == "__main__":
    main()
