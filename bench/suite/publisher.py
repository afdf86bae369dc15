"""The one publisher that drives every server: HTTP POSTs of ``{"data": {"seq", "ts", "text"}}`` over keep-alive
connections, either in waves (as fast as the server answers) or at a fixed rate. ``ts`` is ``time.time()`` at
send, which the load client subtracts from its own clock (same machine) for publish-to-receive latency.
fleetcast and Socket.IO take it at ``/v1/channels/<ch>/events``; Nchan at ``/pub/<ch>``, the same bytes as the
message (so its subscribers receive the whole body, ``seq`` and ``ts`` inside).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence

from bench.ws_fastpath import HttpConnection

TEXT = "fleetcast benchmark payload, about the size of a small app event"


def body(seq: int) -> bytes:
    return json.dumps({"data": {"seq": seq, "ts": time.time(), "text": TEXT}}).encode()


class Publisher:
    def __init__(self, port: int, width: int, server: str = "fleetcast") -> None:
        self.port = port
        self.width = width
        self.nchan = server.startswith("nchan")
        self.connections: list[HttpConnection] = []
        self.seq = 0
        self.ids: dict[int, str] = {}
        """seq -> event id, as the server answered (fleetcast only; the peer answers no id)."""

    async def __aenter__(self) -> Publisher:
        self.connections = [await HttpConnection.open(self.port) for _ in range(self.width)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for connection in self.connections:
            connection.close()

    async def _one(self, connection: HttpConnection, channel: str) -> None:
        seq = self.seq
        self.seq += 1
        if self.nchan:  # 201 when it had subscribers, 202 when it only stored the message
            status, answer = await connection.request("POST", f"/pub/{channel}", body(seq))
            if status not in (201, 202):
                raise RuntimeError(f"publish answered {status}: {answer[:200]!r}")
            return
        status, answer = await connection.request("POST", f"/v1/channels/{channel}/events", body(seq))
        if status != 201:
            raise RuntimeError(f"publish answered {status}: {answer[:200]!r}")
        event_id = json.loads(answer).get("id")
        if event_id:
            self.ids[seq] = event_id

    async def waves(self, channels: Sequence[str], events: int) -> None:
        """``events`` publishes spread round-robin over ``channels``, ``width`` in flight at a time."""
        for first in range(0, events, self.width):
            count = min(self.width, events - first)
            await asyncio.gather(
                *(self._one(self.connections[i], channels[(first + i) % len(channels)]) for i in range(count))
            )

    async def at_rate(self, channel: str, rate: float, seconds: float) -> int:
        """One publish every ``1/rate`` seconds on the clock (late ticks do not bunch up); how many were sent."""
        start = time.monotonic()
        total = int(rate * seconds)
        for n in range(total):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._one(self.connections[n % self.width], channel)
        return total
