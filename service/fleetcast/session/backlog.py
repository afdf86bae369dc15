"""What a slow subscriber could not take yet, bounded and shaped by its channel's slow-consumer policy.

A subscriber falls behind when its connection stops taking bytes (the transport is above its high-water mark).
Under ``disconnect`` the session writes on until the outbox limit and then closes the connection with 4108; the
client resumes from its last id. The two other policies keep the connection and park events here instead:

``dropOldest``
    Keep the newest ``buffer`` events; drop from the head. The client is told with a gap
    (``requested`` = the last id it got, ``earliest`` = the first it gets next) before the events that follow.
``conflate``
    Keep only the newest event per key (the event ``type``, or a top-level field of ``data``), for scoreboards
    and tickers where only the latest value matters: superseded values vanish without a gap. If more keys than
    ``buffer`` pile up, the oldest keys are dropped and that *is* reported as a gap.

Both also bound the bytes they hold (the session's outbox limit). Parked events are encoded per subscriber when
they are finally written: that is the slow path, and it only runs for subscribers that are slow.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import orjson

from fleetcast.broker.base import Event
from fleetcast.contract.policy import ChannelPolicy


def conflation_key(event: Event, by: str) -> str:
    """The value events replace each other by: ``type``, or a top-level field of ``data`` (else the type)."""
    if by == "type":
        return event.type
    try:
        data: Any = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return event.type
    if isinstance(data, dict) and by in data:
        return f"{by}={data[by]!r}"
    return event.type


class Backlog:
    __slots__ = (
        "_by", "_conflate", "_events", "_max_bytes", "_max_events", "bytes", "dropped", "floor", "gap_from", "lost",
    )  # fmt: skip

    def __init__(self, policy: ChannelPolicy, *, max_bytes: int, floor: str) -> None:
        self._conflate = policy.slow_consumer == "conflate"
        self._by = policy.conflate_by
        self._max_events = policy.slow_consumer_buffer
        self._max_bytes = max_bytes
        self._events: OrderedDict[str, Event] = OrderedDict()
        self.bytes = 0
        self.dropped = 0
        """Events dropped (not superseded) since the backlog was made, for metrics."""
        self.floor = floor
        """The last id the client was given (``0-0`` if none yet): where a hole starts if events are dropped."""
        self.gap_from: str | None = None
        """Set when events were dropped: the last id the client has before the hole."""
        self.lost: tuple[str, str | None] | None = None
        """The broker lost history after this id (``requested``, ``earliest``): reported after older events."""

    def note_lost(self, requested: str, earliest: str | None) -> None:
        if self.lost is None:
            self.lost = (requested, earliest)

    def __len__(self) -> int:
        return len(self._events)

    def add(self, events: Sequence[Event]) -> None:
        for event in events:
            key = conflation_key(event, self._by) if self._conflate else event.id
            previous = self._events.pop(key, None)
            if previous is not None:
                self.bytes -= len(previous.data)  # superseded: conflation, not loss
            self._events[key] = event
            self.bytes += len(event.data)
        while self._events and (len(self._events) > self._max_events or self.bytes > self._max_bytes):
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, event = self._events.popitem(last=False)
        self.bytes -= len(event.data)
        self.dropped += 1
        if self.gap_from is None:
            self.gap_from = self.floor

    def take(self) -> tuple[str | None, list[Event]]:
        """Everything parked, oldest id first, and where a gap starts (None: no gap)."""
        events = sorted(self._events.values(), key=lambda e: _id_key(e.id))
        gap_from = self.gap_from
        self._events.clear()
        self.bytes = 0
        self.gap_from = None
        self.lost = None
        if events:
            self.floor = events[-1].id
        return gap_from, events


def _id_key(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)
