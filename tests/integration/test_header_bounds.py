"""Request heads are bounded: size (431), read time (408), and count against --max-connections (issue 13).

A real pod process, attacked over real loopback sockets, while a normal client publishes and reads over SSE.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage, InvalidStatus

from tests.support.clients import SseFrame, publish, sse_frames, ws_client, ws_recv, ws_subscribe
from tests.support.gateway import QUICK_STOP, GatewayProcess, gateway

HEADER_TIMEOUT = 2.0
MiB = 1024 * 1024


def rss_bytes(pod: GatewayProcess) -> int:
    assert pod.proc is not None
    for line in Path(f"/proc/{pod.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def open_stalled(port: int, partial: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(partial)
    await writer.drain()
    return reader, writer


async def answer_of(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Everything the server sends until it closes (b"" for a bare close or a reset)."""
    try:
        async with asyncio.timeout(timeout):
            return await reader.read()
    except ConnectionError:
        return b""


async def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()
    for writer in writers:
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def huge_header(port: int) -> bytes:
    """Send a request whose one header never ends (20 MiB); return what the server answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: ")
        chunk = b"a" * MiB
        with contextlib.suppress(ConnectionError):
            for _ in range(20):
                writer.write(chunk)
                await writer.drain()
        return await answer_of(reader, 10)
    finally:
        await close_all([writer])


@contextlib.asynccontextmanager
async def steady_client(pod: GatewayProcess) -> AsyncIterator[list[str]]:
    """A normal client for the block: publishes every 50 ms and reads its events over SSE; yields the ids
    published. On exit it checks that every one of them arrived."""
    published: list[str] = []
    received: list[str] = []
    async with (
        httpx.AsyncClient(base_url=pod.url, timeout=10) as client,
        httpx.AsyncClient(base_url=pod.url, timeout=None) as reader,
        reader.stream("GET", "/v1/channels/steady/events", headers={"Accept": "text/event-stream"}) as response,
    ):
        assert response.status_code == 200

        async def read() -> None:
            async for frame in sse_frames(response):
                if isinstance(frame, SseFrame) and frame.event == "message":
                    assert frame.id is not None
                    received.append(frame.id)

        async def write() -> None:
            while True:
                published.append(await publish(client, "steady", {"n": len(published)}))
                await asyncio.sleep(0.05)

        reading = asyncio.create_task(read())
        writing = asyncio.create_task(write())
        try:
            yield published
            assert not writing.done(), writing  # a failed publish ends the writer early: surface it
        finally:
            writing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writing
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    while set(published) - set(received):
                        await asyncio.sleep(0.05)
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
    assert published
    assert set(published) <= set(received), "the normal client missed events during the attack"


@pytest.fixture(scope="module")
def pod() -> Iterator[GatewayProcess]:
    with gateway("--anonymous", "--header-timeout", str(HEADER_TIMEOUT), *QUICK_STOP) as pod:
        yield pod


async def test_huge_unterminated_headers_are_cut_and_cost_little(pod: GatewayProcess) -> None:
    """Ten clients each sending a 20 MiB header that never ends get 431 (or a closed connection); the pod's
    RSS grows by less than 10 MiB; a normal client publishes and reads throughout."""
    async with steady_client(pod) as published:
        await asyncio.sleep(0.3)
        before = rss_bytes(pod)
        answers = await asyncio.gather(*(huge_header(pod.port) for _ in range(10)))
        grown = rss_bytes(pod) - before
        count = len(published)
        await asyncio.sleep(0.3)
        assert len(published) > count, "publishing stalled"
    for answer in answers:
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert any(answers), "at least one client should have read the 431 before its connection closed"
    assert b'"code":"headers_too_large"' in next(a for a in answers if a)
    assert grown < 10 * MiB, f"RSS grew {grown / MiB:.1f} MiB"
    assert "Traceback" not in pod.log()


async def test_slow_header_writers_are_cut_at_the_timeout(pod: GatewayProcess) -> None:
    """1,000 connections that send half a request line and stall are answered 408 and closed at the header
    timeout (not before); a normal client is served throughout."""
    async with steady_client(pod):
        started = time.monotonic()
        stalled = await asyncio.gather(*(open_stalled(pod.port, b"GET /heal") for _ in range(1000)))
        try:
            answers = await asyncio.gather(*(answer_of(reader, HEADER_TIMEOUT + 8) for reader, _ in stalled))
            elapsed = time.monotonic() - started
        finally:
            await close_all([writer for _, writer in stalled])
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers), {a[:40] for a in answers}
    assert HEADER_TIMEOUT * 0.9 <= elapsed <= HEADER_TIMEOUT + 6, elapsed


async def test_huge_websocket_handshake_is_refused_with_431(pod: GatewayProcess) -> None:
    """A WebSocket handshake is an HTTP request until its head is complete: 64 KiB of headers get 431."""
    with pytest.raises(InvalidStatus) as refused:
        async with ws_client(pod.ws_url, additional_headers={f"x-pad-{i}": "p" * 4000 for i in range(16)}):
            pass
    assert refused.value.response.status_code == 431
    async with ws_client(pod.ws_url) as ws:
        await ws_subscribe(ws, "after")


async def test_keep_alive_requests_keep_their_head_bounds(pod: GatewayProcess) -> None:
    """A second request on a kept-alive connection is bounded too: a stalled second head is cut at the timeout."""
    reader, writer = await asyncio.open_connection("127.0.0.1", pod.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(b'"ok"}'), 5)
        assert first.startswith(b"HTTP/1.1 200 ")
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        await writer.drain()
        assert (await answer_of(reader, HEADER_TIMEOUT + 5)).startswith(b"HTTP/1.1 408 ")
    finally:
        await close_all([writer])


async def test_connections_sending_headers_count_against_max_connections() -> None:
    """With --max-connections 5, stalled heads fill the pod: further connections are closed at once, a
    WebSocket client cannot get in; once the stalled ones are cut at the timeout, it can."""
    with gateway("--anonymous", "--max-connections", "5", "--header-timeout", str(HEADER_TIMEOUT), *QUICK_STOP) as pod:
        stalled = [await open_stalled(pod.port, b"GET / HTTP/1.1\r\n") for _ in range(6)]
        try:
            extra_reader, extra_writer = await open_stalled(pod.port, b"GET / HTTP/1.1\r\n")
            assert await answer_of(extra_reader, 1) == b"", "a connection past the limit is closed at once"
            await close_all([extra_writer])
            with pytest.raises(InvalidMessage):  # closed before any answer to the handshake
                async with connect(pod.ws_url, open_timeout=2):
                    pass
            for reader, _ in stalled:
                assert (await answer_of(reader, HEADER_TIMEOUT + 5)).startswith(b"HTTP/1.1 408 ")
        finally:
            await close_all([writer for _, writer in stalled])
        async with ws_client(pod.ws_url) as ws:
            await ws_subscribe(ws, "room")
            async with httpx.AsyncClient(base_url=pod.url) as client:
                await publish(client, "room", 1)
            assert (await ws_recv(ws))["op"] == "event"
