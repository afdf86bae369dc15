"""The hub: channel -> local subscribers, fed by the broker's live delivery.

The broker calls :meth:`Hub.deliver` with each batch; the hub wraps it in one :class:`Batch` and hands it to
every local subscriber of the channel, synchronously, with no task and no encoding per subscriber. A channel is
watched at the broker while it has subscribers here; an emptied channel is unwatched after a grace period, so a
client that reconnects at once does not make the pod drop and re-add the channel.

Per batch the hub also observes the publish-to-write lag (one histogram step) and, only when tracing is on,
wraps the fan-out in the ``process <channel>`` span (:mod:`fleetcast.observability.tracing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

from opentelemetry.trace import Tracer, use_span

from fleetcast.broker.base import Broker, Event
from fleetcast.core.channels import family
from fleetcast.hub.batch import Batch
from fleetcast.hub.notice import Notice
from fleetcast.observability import tracing
from fleetcast.observability.metrics import LagHistogram

log = logging.getLogger(__name__)

_REPLAY_CACHE = 32
"""History pages kept encoded for sessions replaying the same page (at most 32 x a page of events)."""


class Subscriber(Protocol):
    def deliver(self, batch: Batch) -> None:
        """Take a batch; must not block or raise."""
        ...

    def lost(self, requested: str, earliest: str | None) -> None:
        """Live delivery skipped events after ``requested`` that the broker no longer has (history lost)."""
        ...

    def presence(self, notice: Notice) -> None:
        """A presence join or leave of the channel, in order with its batches; must not block or raise."""
        ...


class _Room:
    __slots__ = ("empty_since", "lock", "subscribers", "watched")

    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self.watched = False
        self.lock = asyncio.Lock()
        self.empty_since: float | None = None


class Hub:
    def __init__(self, broker: Broker, *, unwatch_grace_seconds: float = 5.0, tracer: Tracer | None = None) -> None:
        self._broker = broker
        self._tracer = tracer
        """None when tracing is off: then delivery touches no span or context at all."""
        self._rooms: dict[str, _Room] = {}
        self._grace = unwatch_grace_seconds
        self._sweeper: asyncio.Task[None] | None = None
        self._replays: OrderedDict[tuple[str, str, int, int], Batch] = OrderedDict()
        self.delivered_events = 0
        """Events handed to local subscribers (one per subscriber), for metrics."""
        self.lag = LagHistogram()
        """Publish-to-write lag, observed once per delivered batch."""

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="hub-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def join(self, channel: str, subscriber: Subscriber) -> None:
        """Register ``subscriber`` for live batches of ``channel``; returns once the broker watches it."""
        room = self._rooms.get(channel)
        if room is None:
            room = self._rooms[channel] = _Room()
        room.subscribers.add(subscriber)
        room.empty_since = None
        if not room.watched:
            async with room.lock:
                if not room.watched:
                    await self._broker.watch(channel)
                    room.watched = True

    def leave(self, channel: str, subscriber: Subscriber) -> None:
        room = self._rooms.get(channel)
        if room is None:
            return
        room.subscribers.discard(subscriber)
        if not room.subscribers:
            room.empty_since = time.monotonic()

    def deliver(self, channel: str, events: Sequence[Event]) -> None:
        """The broker's delivery callback."""
        room = self._rooms.get(channel)
        if room is None or not room.subscribers or not events:
            return
        self.lag.observe_id(events[0].id, time.time_ns() // 1_000_000)
        if self._tracer is None:
            self._fan_out(room, Batch(channel, events))
            return
        span = tracing.start_consumer(self._tracer, channel, events, len(room.subscribers))
        # Current while it runs, so a slow consumer's disconnect lands on it as an event.
        with use_span(span, end_on_exit=True):
            self._fan_out(room, Batch(channel, events))

    def _fan_out(self, room: _Room, batch: Batch) -> None:
        for subscriber in tuple(room.subscribers):
            try:
                subscriber.deliver(batch)
            except Exception:  # one broken session must not starve the others
                log.exception("delivery to a subscriber of %s failed", batch.channel)
        self.delivered_events += len(batch.events) * len(room.subscribers)

    def lost(self, channel: str, requested: str, earliest: str | None) -> None:
        """The broker's signal that live delivery of ``channel`` resumes after lost history: every local
        subscriber is told with a gap before the events that follow."""
        room = self._rooms.get(channel)
        if room is None:
            return
        for subscriber in tuple(room.subscribers):
            try:
                subscriber.lost(requested, earliest)
            except Exception:
                log.exception("gap signal to a subscriber of %s failed", channel)

    def presence(self, channel: str, kind: str, record: bytes) -> None:
        """The broker's (or the embedded presence store's) announcement of a join or leave: one :class:`Notice`,
        encoded once per wire format, for every local subscriber of the channel."""
        room = self._rooms.get(channel)
        if room is None or not room.subscribers:
            return
        try:
            notice = Notice(channel, kind, record)
            notice.public()
        except ValueError:
            log.warning("ignoring a malformed presence announcement on %s", channel)
            return
        for subscriber in tuple(room.subscribers):
            try:
                subscriber.presence(notice)
            except Exception:
                log.exception("presence announcement to a subscriber of %s failed", channel)

    def replay_batch(self, channel: str, events: Sequence[Event]) -> Batch:
        """A history page as a batch, shared by every session replaying the same page: a thousand clients
        resuming from one id then cost one encoding per wire format, not a thousand (docs/benchmarks.md, W4)."""
        # The same read shared by the coalescer yields the very same Event objects; keying on the first one's
        # identity (alive while cached, so never reused) makes a hit mean "the same page", never "equal ids".
        key = (channel, events[0].id, len(events), id(events[0]))
        batch = self._replays.get(key)
        if batch is None:
            batch = self._replays[key] = Batch(channel, events)
            if len(self._replays) > _REPLAY_CACHE:
                self._replays.popitem(last=False)
        else:
            self._replays.move_to_end(key)
        return batch

    def subscriber_count(self, channel: str) -> int:
        room = self._rooms.get(channel)
        return len(room.subscribers) if room is not None else 0

    def subscriptions_by_family(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for channel, room in self._rooms.items():
            if room.subscribers:
                key = family(channel)
                counts[key] = counts.get(key, 0) + len(room.subscribers)
        return counts

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(max(self._grace / 2, 0.5))
            await self.sweep()

    async def sweep(self) -> None:
        """Unwatch channels that have been empty for the grace period, and forget them."""
        now = time.monotonic()
        for channel, room in list(self._rooms.items()):
            if room.subscribers or room.empty_since is None or now - room.empty_since < self._grace:
                continue
            async with room.lock:
                if room.subscribers:
                    continue
                if room.watched:
                    # Mark first: a join that arrives during the await waits for the lock and watches again.
                    room.watched = False
                    try:
                        await self._broker.unwatch(channel)
                    except Exception:
                        room.watched = True
                        log.warning("unwatching %s failed; will retry", channel, exc_info=True)
                        continue
                if not room.subscribers and self._rooms.get(channel) is room:
                    del self._rooms[channel]
