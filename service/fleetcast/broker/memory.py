"""The embedded broker: every channel's stream in this process's memory.

For a laptop and for tests of the layers above: one process is the whole fleet. It keeps the semantics of
:mod:`fleetcast.broker.base` exactly (ids, ordering, gaps, idempotency), and trims retention exactly where
Redis trims approximately. Live delivery is batched: events published in one turn of the event loop reach the
hub as one batch per channel, as a Redis reader's ``XREAD COUNT`` batch would.

It deliberately does not persist anything or share anything between processes; a restart loses history, and a
client resuming with an id from before the restart is told so with a gap.

Memory is bounded by forgetting: a channel nobody watches and nobody published to for its idle TTL (the
broker's ``idle_channel_ttl``, or the channel's ``Retention.idle_seconds`` if shorter) is dropped with its
history, as Redis drops an expired stream key. A sweep task owned by the broker does this, a slice of channels
at a time so that the loop is never held long; a resume from an id of a forgotten channel is a gap.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Sequence

from fleetcast.broker.base import IDEMPOTENCY_SECONDS, Delivery, Event, History, Lost, Retention, StreamInfo
from fleetcast.core import ids
from fleetcast.core.ids import EventId

SWEEP_SLICE = 5000
"""Channels looked at per turn of the event loop by the idle sweep."""


class _Stream:
    __slots__ = ("events", "forget_at", "idle_seconds", "ids", "last", "max_deleted")

    def __init__(self) -> None:
        self.ids: deque[EventId] = deque()
        self.events: deque[Event] = deque()
        self.last: EventId = ids.ZERO
        self.max_deleted: EventId = ids.ZERO
        self.forget_at = float("inf")
        """``time.monotonic()`` after which the channel is forgotten unless watched (refreshed by publishes)."""
        self.idle_seconds = float("inf")
        """The idle TTL of the last publish's retention (or the broker's, if shorter)."""

    def append(self, event_id: EventId, event: Event, retention: Retention, now_ms: int) -> None:
        self.ids.append(event_id)
        self.events.append(event)
        self.last = event_id
        if retention.max_events is not None:
            while len(self.ids) > retention.max_events:
                self._pop_head()
        if retention.max_age_seconds is not None:
            oldest_ms = now_ms - int(retention.max_age_seconds * 1000)
            while self.ids and self.ids[0][0] < oldest_ms:
                self._pop_head()

    def _pop_head(self) -> None:
        self.max_deleted = self.ids.popleft()
        self.events.popleft()

    def knows(self, event_id: EventId) -> bool:
        """Whether ``event_id`` was ever an event of this stream (retained now, or trimmed)."""
        if event_id <= self.max_deleted:
            return True
        index = bisect.bisect_left(self.ids, event_id)
        return index < len(self.ids) and self.ids[index] == event_id


class MemoryBroker:
    """An in-process :class:`fleetcast.broker.base.Broker`. ``idle_channel_ttl``: seconds after which a channel
    nobody watches or publishes to is forgotten (None: never)."""

    def __init__(self, *, idle_channel_ttl: float | None = 3600.0) -> None:
        self._idle_ttl = idle_channel_ttl
        self._sweeper: asyncio.Task[None] | None = None
        self._streams: dict[str, _Stream] = {}
        self._watched: set[str] = set()
        self._deliver: Delivery | None = None
        self._pending: dict[str, list[Event]] = {}
        self._flush_scheduled = False
        self._idempotency: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()

    @property
    def ready(self) -> bool:
        return True

    def ready_for(self, channel: str) -> bool:
        return True

    @property
    def shards(self) -> None:
        return None

    @property
    def channels_held(self) -> int:
        return len(self._streams)

    async def start(self, deliver: Delivery, lost: Lost | None = None) -> None:
        """``lost`` is accepted for the protocol and never called: a channel is forgotten only while nobody
        watches it."""
        self._deliver = deliver
        if self._idle_ttl is not None and self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(self._idle_ttl), name="fleetcast-memory-sweep")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        self._deliver = None
        self._watched.clear()
        self._pending.clear()

    async def publish(
        self,
        channel: str,
        data: bytes,
        type: str,
        *,
        retention: Retention,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
    ) -> str:
        now = time.time()
        if idempotency_key is not None:
            self._expire_idempotency(now)
            remembered = self._idempotency.get((channel, idempotency_key))
            if remembered is not None:
                return remembered[0]
        stream = self._streams.get(channel)
        if stream is None:
            stream = self._streams[channel] = _Stream()
        stream.idle_seconds = self._idle_seconds(retention)
        stream.forget_at = time.monotonic() + stream.idle_seconds
        now_ms = int(now * 1000)
        event_id = ids.next_id(stream.last, now_ms)
        event = Event(ids.format_id(event_id), type, data, traceparent)
        stream.append(event_id, event, retention, now_ms)
        if idempotency_key is not None:
            self._idempotency[(channel, idempotency_key)] = (event.id, now + IDEMPOTENCY_SECONDS)
        if channel in self._watched:
            self._pending.setdefault(channel, []).append(event)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)
        return event.id

    def _idle_seconds(self, retention: Retention) -> float:
        ttls = [ttl for ttl in (self._idle_ttl, retention.idle_seconds) if ttl is not None]
        return min(ttls) if ttls else float("inf")

    async def _sweep_forever(self, ttl: float) -> None:
        # A channel is forgotten between ttl and ttl + interval after it went idle.
        interval = min(max(ttl / 4, 0.05), 60.0)
        while True:
            await asyncio.sleep(interval)
            await self.sweep()

    async def sweep(self) -> int:
        """Forget every channel past its idle deadline that nobody watches; return how many. Yields to the loop
        after each :data:`SWEEP_SLICE` channels (publishes in between are seen: each channel is rechecked)."""
        self._expire_idempotency(time.time())
        forgotten = 0
        names = list(self._streams)
        for start in range(0, len(names), SWEEP_SLICE):
            now = time.monotonic()
            for channel in names[start : start + SWEEP_SLICE]:
                stream = self._streams.get(channel)
                if stream is not None and stream.forget_at <= now and channel not in self._watched:
                    del self._streams[channel]
                    forgotten += 1
            await asyncio.sleep(0)
        return forgotten

    def _expire_idempotency(self, now: float) -> None:
        # Entries are kept in insertion order, which is expiry order: pop from the front while expired.
        while self._idempotency:
            key, (_, expires) = next(iter(self._idempotency.items()))
            if expires > now:
                break
            del self._idempotency[key]

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        deliver = self._deliver
        if deliver is None:
            return
        for channel, events in pending.items():
            if channel in self._watched:
                deliver(channel, events)

    async def read(self, channel: str, since: str, limit: int) -> History:
        since_id = ids.parse(since)
        stream = self._streams.get(channel)
        if stream is None:
            # This process never saw the channel: a non-zero position means history was lost (a restart).
            return History(events=(), gap=since_id > ids.ZERO, earliest=None, latest=None)
        gap = stream.max_deleted > since_id or (since_id > ids.ZERO and not stream.knows(since_id))
        start = 0 if gap else bisect.bisect_right(stream.ids, since_id)
        events: Sequence[Event] = [stream.events[i] for i in range(start, min(start + limit, len(stream.events)))]
        return History(
            events=events,
            gap=gap,
            earliest=stream.events[0].id if stream.events else None,
            latest=ids.format_id(stream.last) if stream.last > ids.ZERO else None,
        )

    async def info(self, channel: str) -> StreamInfo:
        stream = self._streams.get(channel)
        if stream is None or not stream.events:
            return StreamInfo(length=0, earliest=None, latest=None)
        return StreamInfo(length=len(stream.events), earliest=stream.events[0].id, latest=stream.events[-1].id)

    async def watch(self, channel: str) -> None:
        self._watched.add(channel)

    async def unwatch(self, channel: str) -> None:
        self._watched.discard(channel)
        self._pending.pop(channel, None)
        stream = self._streams.get(channel)
        if stream is not None:
            # Idle from now on: the last subscriber leaving counts as activity, like a publish.
            stream.forget_at = max(stream.forget_at, time.monotonic() + stream.idle_seconds)
