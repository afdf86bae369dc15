"""A strict client of multiplexed SSE streams (``GET /v1/events``) that remembers ids the way a browser does.

A browser keeps a "last event id buffer": an ``id:`` line sets it, and every blank line (with or without
data) makes it the stream's last event id, which the next connection sends as ``Last-Event-ID``. The opening
frame of a multiplexed stream is an ``id:`` alone, so a client that only looked at dispatched events would
resume from the wrong place.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.gateway import GatewayProcess


@dataclass
class MuxFrame:
    event: str
    data: Any
    """The parsed JSON payload."""
    last_id: str | None
    """The stream's last event id when this frame was dispatched."""


@dataclass
class MuxStream:
    """One open stream: iterate :meth:`frames`; :attr:`last_id` is what a browser would send back."""

    response: httpx.Response
    last_id: str | None = None
    retries: list[int] = field(default_factory=list)

    _blocks: AsyncIterator[MuxFrame | None] | None = None

    def frames(self) -> AsyncIterator[MuxFrame]:
        """The dispatched frames (those with data), from where the stream was left."""
        return (frame async for frame in self._parsed() if frame is not None)

    async def opening(self) -> str:
        """Read up to the stream's opening cursor (after its ``retry:``) and return it."""
        async for frame in self._parsed():
            assert frame is None, f"an event before the opening cursor: {frame}"
            if self.last_id is not None:
                break
        assert self.last_id is not None, "the stream opened without a cursor"
        return self.last_id

    def _parsed(self) -> AsyncIterator[MuxFrame | None]:
        if self._blocks is None:
            self._blocks = self._parse()
        return self._blocks

    async def _parse(self) -> AsyncIterator[MuxFrame | None]:
        """Every blank line: the frame it dispatched, or None if it had no data."""
        event, data, buffer = "message", [], self.last_id
        async for line in self.response.aiter_lines():
            if line == "":
                self.last_id = buffer
                yield MuxFrame(event, json.loads("\n".join(data)), self.last_id) if data else None
                event, data = "message", []
            elif line.startswith(":"):
                continue
            else:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "data":
                    data.append(value)
                elif name == "event":
                    event = value
                elif name == "id":
                    buffer = value
                elif name == "retry":
                    self.retries.append(int(value))


def events_url(channels: list[str], **query: str) -> str:
    params = [("channel", c) for c in channels] + list(query.items())
    return "/v1/events?" + str(httpx.QueryParams(params))


@asynccontextmanager
async def mux_stream(
    client: httpx.AsyncClient, channels: list[str], last_id: str | None = None, **query: str
) -> AsyncIterator[MuxStream]:
    """Open a multiplexed stream (failing unless it answers 200); closing the block drops the connection."""
    headers = {"Accept": "text/event-stream"}
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    async with client.stream("GET", events_url(channels, **query), headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        yield MuxStream(response, last_id)


def admin_client(pod: GatewayProcess) -> httpx.AsyncClient:
    """A client of the pod's admin endpoints (``/metrics``, ``/internal/drain``): on its admin port with its token
    where the pod has one, else on its public port."""
    url: str = getattr(pod, "admin_url", pod.url)
    headers: dict[str, str] = getattr(pod, "admin_headers", {})
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=10)
