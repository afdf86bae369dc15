"""Minimal, strict test clients for the wire protocol: they record exactly what the server sent.

They are deliberately not the reference client (``fleetcast.client``), which reconnects and resumes on its own:
these let a test control each connection, and see every frame.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from fleetcast.client.sse_parse import Retry, SseParser


@dataclass
class SseFrame:
    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


async def sse_frames(response: httpx.Response) -> AsyncIterator[SseFrame | int]:
    """Parse an SSE body with the reference client's parser: yields frames, and the value of each ``retry:`` line
    as an int."""
    parser = SseParser()
    async for line in response.aiter_lines():
        item = parser.feed(line)
        if isinstance(item, Retry):
            yield item.ms
        elif item is not None:
            yield SseFrame(item.event, item.data, item.id)


async def collect_sse(
    base_url: str, channel: str, *, count: int, last_event_id: str | None = None, timeout: float = 20.0
) -> list[SseFrame]:
    """Subscribe over SSE and return the first ``count`` frames (events and control events)."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    frames: list[SseFrame] = []
    url = f"/v1/channels/{channel}/events"
    async with (
        asyncio.timeout(timeout),
        httpx.AsyncClient(base_url=base_url, timeout=None) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        async for frame in sse_frames(response):
            if isinstance(frame, SseFrame):
                frames.append(frame)
                if len(frames) >= count:
                    break
    return frames


@asynccontextmanager
async def ws_client(url: str, **kwargs: Any) -> AsyncIterator[ClientConnection]:
    async with connect(url, subprotocols=["fleetcast.v1"], open_timeout=10, close_timeout=5, **kwargs) as ws:  # type: ignore[list-item]
        yield ws


async def ws_send(ws: ClientConnection, **message: Any) -> None:
    await ws.send(json.dumps(message))


async def ws_recv(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), timeout)
    message: dict[str, Any] = json.loads(raw)
    return message


async def ws_subscribe(ws: ClientConnection, channel: str, since: str | None = None, ref: Any = 1) -> dict[str, Any]:
    """Subscribe and return the ``subscribed`` reply (failing on an ``error``)."""
    await ws_send(ws, op="subscribe", channel=channel, ref=ref, **({"since": since} if since else {}))
    reply = await ws_recv(ws)
    assert reply["op"] == "subscribed", reply
    return reply


async def publish(client: httpx.AsyncClient, channel: str, data: Any, **kwargs: Any) -> str:
    response = await client.post(f"/v1/channels/{channel}/events", json={"data": data, **kwargs})
    assert response.status_code == 201, response.text
    event_id: str = response.json()["id"]
    return event_id


async def wait_subscribers(base_url: str, channel: str, count: int, *, timeout: float = 15.0) -> None:
    """Wait until the pod at ``base_url`` counts ``count`` local subscribers of ``channel`` (channel info)."""
    async with asyncio.timeout(timeout), httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        while (await client.get(f"/v1/channels/{channel}")).json()["subscribers"] < count:
            await asyncio.sleep(0.05)
