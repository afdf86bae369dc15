"""``GET /v1/events?channel=a&channel=b``: many channels on one Server-Sent Events stream.

A page with eight live widgets would otherwise open eight ``EventSource``s, and over HTTP/1.1 a browser opens at
most six connections per host. This stream is one :class:`~fleetcast.session.session.Session` with one
subscription per channel, exactly as the single-channel stream (:mod:`fleetcast.transports.sse`) has one: resume,
slow consumers, drain, limits and metrics are the session core's. Only the framing differs:

- an event is ``id: <cursor>``, ``event: <type>``, ``data: {"channel", "id", "data"}``; the cursor is the
  stream's position in *every* channel after that frame (:mod:`fleetcast.core.multiplex`), because the browser
  sends back only the last ``id:`` it saw;
- the stream opens with ``retry:`` and the cursor alone, so a stream that drops before its first event resumes
  from where it began;
- a gap signal names its channel.

Where a channel starts: at the position the request's cursor gives (``Last-Event-ID``, or ``?lastEventId=`` on a
first load), else at the channel's newest event when the stream opens. Either way the channel joins *with* that
position, so an event published while the other channels join is replayed, not lost.

Access to every channel is checked, and the cursor parsed, before this response exists: a refusal is a 4xx, which
an open stream can no longer send.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from fleetcast.auth.principal import Principal
from fleetcast.contract.policy import ChannelPolicy
from fleetcast.core import disconnects, ids, multiplex, sse
from fleetcast.core.messages import Ref
from fleetcast.errors import BrokerUnavailable, Unavailable
from fleetcast.hub.batch import Batch
from fleetcast.hub.notice import Notice
from fleetcast.pod import Pod
from fleetcast.session.session import Session
from fleetcast.transports.sse import HEADERS, SseWire, pump, wait_for_disconnect

BASE_MS = time.time_ns() // 1_000_000
"""The base of every cursor this process writes: the same for all its streams, so a batch encodes each event's
position token once for all of them (:meth:`~fleetcast.hub.batch.Batch.mux`)."""


class MuxCodec:
    """Frames for a multiplexed stream; it owns the stream's cursor and moves it as it encodes events."""

    def __init__(self, channels: Sequence[str]) -> None:
        self.channels = tuple(channels)
        self._index = {channel: i for i, channel in enumerate(channels)}
        self.cursor: multiplex.Cursor | None = None
        """Set by :meth:`begin`, before the first channel joins."""

    def begin(self, positions: Sequence[ids.EventId]) -> bytes:
        """Where each channel starts; returns the opening frame that states it."""
        self.cursor = multiplex.Cursor(self.channels, positions, BASE_MS)
        return self.cursor.id_frame()

    def events(self, batch: Batch) -> bytes:
        cursor = self.cursor
        assert cursor is not None, "events before the stream began"
        tokens, frames = batch.mux(cursor.base)
        return cursor.frames(self._index[batch.channel], tokens, frames)

    def subscribed(self, channel: str, ref: Ref, recovered: bool, latest: str | None) -> bytes:
        return b""

    def gap(self, channel: str, requested: str, earliest: str | None) -> bytes:
        return multiplex.gap(channel, requested, earliest)

    def unsubscribed(self, channel: str, reason: str) -> bytes:
        return b""  # an SSE stream has no refresh that could end one subscription

    def presence(self, notice: Notice) -> bytes:
        return notice.mux()


class MuxStream(Response):
    """The ASGI response of a multiplexed SSE stream; ``policies`` are the access checks' results, one per
    channel, and ``positions`` the request's cursor (None: a new stream)."""

    def __init__(
        self,
        pod: Pod,
        channels: Sequence[str],
        policies: Sequence[ChannelPolicy],
        positions: Sequence[ids.EventId] | None,
        principal: Principal,
        client: str | None = None,
    ) -> None:
        # A Response only so that routing returns it as it is; it writes its own start and body.
        self.status_code = 200
        self.background = None
        self.raw_headers = list(HEADERS)
        self.pod = pod
        self.channels = tuple(channels)
        self.policies = tuple(policies)
        self.positions = positions
        self.principal = principal
        self.client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pod = self.pod
        wire = SseWire(send)
        retry_ms = pod.settings.limits.sse_retry_ms
        wire.write(sse.retry(retry_ms + random.randint(0, retry_ms)))
        refusal = pod.admission()
        if refusal is not None:
            # Never a 5xx for a transient refusal: EventSource would give up for good. 200, then come back.
            wire.close(refusal, pod.refusal_delay_ms(refusal))
            await wire.finish()
            return
        codec = MuxCodec(self.channels)
        session = pod.open_session(wire, codec, self.principal, self.client)
        pod.multiplexed.opened(len(self.channels))
        listener = asyncio.create_task(wait_for_disconnect(receive, wire), name="sse-mux-disconnect")
        try:
            try:
                await self._join_all(session, codec, wire)
            except Unavailable as refusal:
                # Transient (broker down, channel full): "come back later", never a 5xx.
                broker = isinstance(refusal, BrokerUnavailable)
                session.close(disconnects.BROKER_DOWN if broker else disconnects.OVERLOADED)
            await pump(wire, pod.settings.limits.sse_heartbeat_seconds)
            await wire.finish()
        finally:
            pod.multiplexed.closed()
            pod.close_session(session)
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _join_all(self, session: Session, codec: MuxCodec, wire: SseWire) -> None:
        """Fix every channel's starting position, send it as the first cursor, then join each channel from it."""
        positions = self.positions
        if positions is None:
            latest = [(await self.pod.broker.info(channel)).latest for channel in self.channels]
            positions = [ids.parse(last) if last is not None else ids.ZERO for last in latest]
        wire.write(codec.begin(positions))
        for channel, policy, start in zip(self.channels, self.policies, positions, strict=True):
            if wire.closed:
                return
            await session.join(channel, policy, ids.format_id(start))
