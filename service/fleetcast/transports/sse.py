"""``GET /v1/channels/{channel}/events``: the Server-Sent Events edge.

One channel per stream. Resume comes from the ``Last-Event-ID`` header (what a browser's ``EventSource`` sends
on its own reconnects) or ``?lastEventId=`` (a page's first load). The stream starts with a jittered ``retry:``
and sends ``: ping`` comments while idle.

A transient refusal (broker down, pod draining or full) is never a non-200 answer: a browser's ``EventSource``
treats any non-200 as final and stops reconnecting. It gets 200, a ``fleetcast.reconnect`` event with
``retry:`` and the end of the stream. Non-200 is for what retrying cannot fix (400, 401, 403, 404).

The status line goes out only once the subscription is registered with the hub: a client that has the 200
receives every event published after it. Each batch is one ``http.response.body`` message holding all of its
events. The request task is the writer: it waits for the session's wire to fill, then sends; a second task per
stream only listens for the disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Literal

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from fleetcast.auth.principal import Principal
from fleetcast.contract.policy import ChannelPolicy
from fleetcast.core import disconnects, sse
from fleetcast.core.backoff import server_delay_ms
from fleetcast.core.disconnects import Disconnect
from fleetcast.core.messages import Ref
from fleetcast.errors import BrokerUnavailable, Unavailable
from fleetcast.hub.batch import Batch
from fleetcast.hub.notice import Notice
from fleetcast.pod import Pod

HIGH_WATER_BYTES = 64 * 1024
"""Queued bytes above which a subscriber counts as lagging (its policy may then park or drop events)."""
SEND_TIMEOUT_SECONDS = 10.0
"""A client that takes no bytes for this long while we have some to send is cut off."""

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
    # When a stream ends (drain, refusal), the browser's reconnect must open a new connection, so that it goes
    # back through the Service to a ready pod instead of reusing a kept-alive one to this pod.
    (b"connection", b"close"),
]


class SseCodec:
    def events(self, batch: Batch) -> bytes:
        return batch.sse()

    def subscribed(self, channel: str, ref: Ref, recovered: bool, latest: str | None) -> bytes:
        return b""

    def gap(self, channel: str, requested: str, earliest: str | None) -> bytes:
        return sse.gap(requested, earliest)

    def unsubscribed(self, channel: str, reason: str) -> bytes:
        return b""  # an SSE stream has no refresh that could end one subscription

    def presence(self, notice: Notice) -> bytes:
        return notice.sse()


class SseWire:
    """An outbox of bytes that the request task sends, one ``http.response.body`` per wake-up."""

    kind: Literal["sse"] = "sse"

    def __init__(self, send: Send) -> None:
        self._send = send
        self._chunks: list[bytes] = []
        self._size = 0
        self.ready = asyncio.Event()
        self.ending: bytes | None = None
        """Set when the session ends: the last bytes to send before the end of the stream."""
        self.disconnected = False
        self._started = False
        self._on_writable: Callable[[], None] | None = None

    @property
    def closed(self) -> bool:
        return self.ending is not None or self.disconnected

    def write(self, data: bytes) -> int:
        if self.closed:
            return 0
        if data:
            self._chunks.append(data)
            self._size += len(data)
            self.ready.set()
        return self._size

    def buffered(self) -> int:
        return self._size

    @property
    def writable(self) -> bool:
        return self._size < HIGH_WATER_BYTES

    def set_on_writable(self, callback: Callable[[], None]) -> None:
        self._on_writable = callback

    async def drain(self, timeout: float) -> bool:
        return await self.flush(timeout)

    def close(self, disconnect: Disconnect, after_ms: int) -> None:
        if self.closed:
            return
        if disconnect == disconnects.SLOW_CONSUMER:
            # Whatever is queued is what the client failed to take; the resume brings it back.
            self._chunks.clear()
            self._size = 0
        self.ending = sse.reconnect(disconnect.reason, after_ms) if disconnect.reconnect else b""
        self.ready.set()

    def take(self) -> bytes:
        """Everything queued, removed from the queue."""
        body = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        return body

    async def _send_body(self, body: bytes, *, more: bool) -> None:
        if not self._started:
            # The status line goes out with the first bytes, after the subscription is registered: a client
            # that has the 200 is subscribed, and an event published after that reaches it.
            self._started = True
            await self._send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await self._send({"type": "http.response.body", "body": body, "more_body": more})

    async def flush(self, timeout: float) -> bool:
        """Send what is queued as one body message; False if the client did not take it in time."""
        if not self._chunks:
            return True
        body = self.take()
        try:
            async with asyncio.timeout(timeout):
                await self._send_body(body, more=True)
        except TimeoutError:
            self.disconnected = True
            return False
        if self._on_writable is not None and not self.closed:
            self._on_writable()
        return True

    async def finish(self) -> None:
        """End the response: what is still queued (events written just before a drain, the first ``retry:``),
        then the session's last words, if the client is still there to read them."""
        if self.ending is None or self.disconnected:
            return
        body = self.take() + self.ending
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                await self._send_body(body, more=False)


class SseStream(Response):
    """The ASGI response of an SSE subscription. Validation and the access check happened before it was built
    (a refusal must be a 4xx, which an open stream can no longer send)."""

    def __init__(
        self,
        pod: Pod,
        channel: str,
        since: str | None,
        policy: ChannelPolicy,
        principal: Principal,
        client: str | None = None,
    ) -> None:
        # A Response only so that routing returns it as it is; it writes its own start and body.
        self.status_code = 200
        self.background = None
        self.raw_headers = list(HEADERS)
        self.pod = pod
        self.channel = channel
        self.since = since
        self.policy = policy
        self.principal = principal
        self.client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pod = self.pod
        wire = SseWire(send)
        retry_ms = pod.settings.limits.sse_retry_ms
        wire.write(sse.retry(server_delay_ms(1, base_ms=retry_ms, cap_ms=2 * retry_ms)))  # [retry, 2 retry]
        refusal = pod.admission()
        if refusal is not None:
            # Never a 5xx for a transient refusal: EventSource would give up for good. 200, then come back.
            wire.close(refusal, pod.refusal_delay_ms(refusal))
            await wire.finish()
            return
        session = pod.open_session(wire, SseCodec(), self.principal, self.client)
        listener = asyncio.create_task(wait_for_disconnect(receive, wire), name="sse-disconnect")
        try:
            try:
                await session.join(self.channel, self.policy, self.since)
            except Unavailable as refusal:
                # Transient (broker down, channel full): "come back later", never a 5xx, which EventSource
                # would take as final.
                broker = isinstance(refusal, BrokerUnavailable)
                session.close(disconnects.BROKER_DOWN if broker else disconnects.OVERLOADED)
            await pump(wire, pod.settings.limits.sse_heartbeat_seconds)
            await wire.finish()
        finally:
            pod.close_session(session)
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener


async def pump(wire: SseWire, heartbeat: float) -> None:
    """Send queued batches as they come, and a ping comment when idle, until the session ends."""
    while not wire.closed:
        if not await wire.flush(SEND_TIMEOUT_SECONDS):
            return
        if wire.closed:
            return
        wire.ready.clear()
        try:
            async with asyncio.timeout(heartbeat):
                await wire.ready.wait()
        except TimeoutError:
            wire.write(sse.PING)


async def wait_for_disconnect(receive: Receive, wire: SseWire) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            wire.disconnected = True
            wire.ready.set()
            return
