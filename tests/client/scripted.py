"""Scripted servers for client tests: each connection plays the next step of a script, so a test can send the
exact close code, ``after_ms`` or ``retry:`` it wants to see the client obey. Loopback only, closed by the test."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

WsStep = Callable[[ServerConnection, dict[str, Any]], Awaitable[None]]
"""One connection of a scripted WebSocket server, given the client's first message (its subscribe)."""


class SleepRecorder:
    """A client's ``sleep``: records each delay and waits only a moment, so tests measure advice, not clocks."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0.01)


@asynccontextmanager
async def ws_script(*steps: WsStep) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A WebSocket server on a free loopback port; yields its URL and the subscribes it received."""
    received: list[dict[str, Any]] = []
    remaining = list(steps)

    async def handler(ws: ServerConnection) -> None:
        first = json.loads(await ws.recv())
        received.append(first)
        if remaining:
            await remaining.pop(0)(ws, first)
        else:
            await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, subprotocols=[Subprotocol("fleetcast.v1")]) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/v1/ws", received


async def ws_reply_subscribed(ws: ServerConnection, subscribe: dict[str, Any], *events: str) -> None:
    await ws.send(json.dumps({"op": "subscribed", "channel": subscribe["channel"], "ref": subscribe["ref"],
                              "recovered": True, "latest": None}))  # fmt: skip
    for event_id in events:
        await ws.send(json.dumps({"op": "event", "channel": subscribe["channel"], "id": event_id, "type": "message",
                                  "data": {"id": event_id}}))  # fmt: skip


@asynccontextmanager
async def http_script(*responses: bytes) -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """An HTTP server answering each request with the next raw response, then closing the connection; yields
    its base URL and the headers of each request (lower-case names)."""
    requests: list[dict[str, str]] = []
    remaining = list(responses)
    finished = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")[1:]
        requests.append({k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)})
        if remaining:
            writer.write(remaining.pop(0))
            await writer.drain()
        else:
            await finished.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", requests
    finally:
        finished.set()
        server.close()
        await server.wait_closed()


def sse_response(body: str) -> bytes:
    head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
    return (head + body).encode()


def json_response(status: int, reason: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n"
    return head.encode() + b"connection: close\r\n\r\n" + data
