"""The Broker protocol: what every broker (embedded memory, Redis Streams) guarantees.

A broker keeps one append-only stream of events per channel and delivers newly appended events to the pod's
hub. The semantics below are the contract that ``tests/contract`` checks against every implementation.

Ids
    Every appended event gets an id ``<ms>-<seq>`` (see :mod:`fleetcast.core.ids`), strictly greater than every
    id appended before it to the same channel. Ids of different channels are unrelated.

Ordering and atomicity
    :meth:`Broker.publish` is atomic: when it returns an id, the event is in the stream (and, for Redis, it is
    as durable as the server's persistence makes it); when it raises, nothing was appended. Live delivery hands
    each channel's events to the delivery callback in id order, each exactly once per ``watch``, in batches.

Retention
    A channel keeps at least ``Retention.max_events`` events and events younger than ``max_age_seconds``.
    The memory broker trims exactly; a Redis broker may keep more (callers may rely on "at least" only).
    Trimming removes events from the head, oldest first, and the broker remembers the newest id it trimmed
    (Redis 7.0 does not do so itself when trimming; the Redis broker records it, see ``redis_scripts``).

Reading after an id
    :meth:`Broker.read` returns events with id greater than ``since``, oldest first. The read has a *gap*
    when events after ``since`` existed but are no longer retained: the broker deleted an event newer than
    ``since`` (Redis ``max-deleted-entry-id`` > since), or the stream does not know ``since`` at all (neither
    retained nor deleted: history was lost, for example by a Redis restart without persistence). After a gap
    the read continues from the oldest retained event, and the caller tells the client so.

Live delivery
    After :meth:`Broker.watch` returns, every event appended to that channel later is delivered, until
    :meth:`Broker.unwatch`. A watch that starts at a point where the caller needs no loss must be followed by a
    :meth:`read` from the caller's position: the read covers everything up to the watch's start.

Lost history on the live path
    Live delivery never skips an event silently. When it resumes after an outage and the gap rule (above),
    applied to a watched channel's last delivered id, says events after it are gone (trimmed before they were
    delivered, or lost by a Redis restart without persistence), the broker calls the ``lost`` callback given to
    :meth:`Broker.start` with ``(channel, requested, earliest)`` *before* it delivers any later event of that
    channel: ``requested`` is the last id delivered (or the stream's last id at watch time), ``earliest`` the
    oldest retained id (None if the stream holds nothing). Delivery then continues from the oldest retained
    event, and ids may restart below ``requested`` (a new stream). The memory broker never loses history while
    it runs, so it never calls ``lost``. Without a ``lost`` callback the signal is dropped (and logged).

Faults
    While the backing store is unreachable, ``publish``, ``read``, ``info`` and ``watch`` raise
    :class:`fleetcast.errors.BrokerUnavailable` quickly (they never hang) and :attr:`Broker.ready` is False; a
    ``watch`` that raised watches nothing. A store made of shards (Redis Cluster) may be down in part: then only
    the channels of the missing shard raise, :meth:`Broker.ready_for` is False for them alone, and ``ready``
    stays True while any shard is reachable. Live delivery resumes by itself after the store comes back, from the
    last delivered id of each channel, without duplicates; history the store lost meanwhile is reported through
    ``lost`` (see above) before the events that follow it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Event:
    """One event as stored and delivered."""

    id: str
    type: str
    data: bytes
    """The event's payload as compact JSON text (one line), encoded once when it was published."""
    traceparent: str | None = None
    """W3C trace context of the publish, so delivery spans can link to it."""


@dataclass(frozen=True, slots=True)
class Retention:
    """How much history a channel keeps. ``None`` means no limit of that kind."""

    max_events: int | None = 1000
    max_age_seconds: float | None = None
    idle_seconds: float | None = None
    """A channel nobody published to for this long may be forgotten with its history (Redis: the stream key's
    TTL, refreshed by every publish); a later resume from one of its ids is then a gap. None: kept forever."""


@dataclass(frozen=True, slots=True)
class History:
    """The answer to :meth:`Broker.read`."""

    events: Sequence[Event]
    gap: bool
    """True if events after ``since`` were trimmed or lost before this read."""
    earliest: str | None
    """Id of the oldest retained event at read time; None if the stream is empty."""
    latest: str | None
    """Id of the newest event at read time; None if the stream is empty."""


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What a channel's stream holds right now."""

    length: int
    earliest: str | None
    latest: str | None


Delivery = Callable[[str, Sequence[Event]], None]
"""Called by the broker with a batch of new events of one channel, in id order. Must not block or raise."""

Lost = Callable[[str, str, str | None], None]
"""``lost(channel, requested, earliest)``: live delivery of ``channel`` resumes after history it can no longer
deliver; called before the next batch of that channel. Must not block or raise."""


class Broker(Protocol):
    """A channel store with live delivery. See the module docstring for the semantics."""

    @property
    def ready(self) -> bool:
        """True while the backing store is reachable."""
        ...

    def ready_for(self, channel: str) -> bool:
        """True while the store holding ``channel`` is reachable. Equal to :attr:`ready` where one store holds
        every channel; on a Redis Cluster only the channels of a shard that is down answer False."""
        ...

    @property
    def shards(self) -> dict[str, bool] | None:
        """Each shard of the store (``host:port``) and whether it is reachable; None where there is one store."""
        ...

    @property
    def channels_held(self) -> int | None:
        """Channels whose history this process holds in its memory; None where the store is elsewhere (Redis)."""
        ...

    async def start(self, deliver: Delivery, lost: Lost | None = None) -> None:
        """Begin; live batches go to ``deliver``, lost-history signals to ``lost``. Returns even if the store is
        down (``ready`` tells)."""
        ...

    async def close(self) -> None:
        """Stop delivering and release every connection and task."""
        ...

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
        """Append one event and return its id. With ``idempotency_key``, a publish repeated within
        :data:`IDEMPOTENCY_SECONDS` returns the first publish's id and appends nothing."""
        ...

    async def read(self, channel: str, since: str, limit: int) -> History:
        """Up to ``limit`` events with id greater than ``since`` (``0-0``: from the start), oldest first."""
        ...

    async def info(self, channel: str) -> StreamInfo: ...

    async def watch(self, channel: str) -> None:
        """Deliver this channel's new events from now on."""
        ...

    async def unwatch(self, channel: str) -> None:
        """Stop delivering this channel."""
        ...


IDEMPOTENCY_SECONDS = 300.0
"""How long an ``Idempotency-Key`` is remembered."""
