"""The reference client of fleetcast (asyncio): WebSocket and SSE, reconnecting and resuming on their own.

Quick start::

    async with WsClient("ws://127.0.0.1:8000/v1/ws", ["chat:room-1"]) as client:
        await client.publish("chat:room-1", {"text": "hi"})
        async for event in client:
            print(event.channel, event.id, event.data)

    async with SseClient("http://127.0.0.1:8000", "chat:room-1", on_gap=print) as client:
        async for event in client:
            ...

Both resume from the last event id they delivered after any reconnect, obey the server's ``after_ms`` /
``retry:``, back off with full jitter otherwise, stop with :class:`Refused` on a terminal answer, and count what
happened in ``client.stats``. It imports nothing of the server but the sans-I/O :mod:`fleetcast.core` and the
error tree :mod:`fleetcast.errors`, which is what lets ``clients/python`` ship the three as a distribution of
their own (``fleetcast-client``) without the server's dependencies. Both clients take a ``token`` (JWT), sent as
``Authorization: Bearer`` on every connection.
"""

from fleetcast.client.backoff import Backoff, advice_for, full_jitter_ms
from fleetcast.client.base import Sleep, Timeouts
from fleetcast.client.events import (
    ClientClosed,
    ClientError,
    ConnectionLost,
    Event,
    EventCallback,
    GapCallback,
    Refused,
    RequestFailed,
    Stats,
)
from fleetcast.client.sse import SseClient
from fleetcast.client.ws import Subscribed, WsClient

__all__ = [
    "Backoff",
    "ClientClosed",
    "ClientError",
    "ConnectionLost",
    "Event",
    "EventCallback",
    "GapCallback",
    "Refused",
    "RequestFailed",
    "Sleep",
    "SseClient",
    "Stats",
    "Subscribed",
    "Timeouts",
    "WsClient",
    "advice_for",
    "full_jitter_ms",
]
