"""One channel's events fed to one consumer, history then live, with no hole and no duplicate: a sans-I/O state
machine.

Two drivers use it: the session core (one feed per client subscription: resume, then live, then parked while a
slow client lags) and the Redis live reader (one feed per watched channel, replayed after every reconnect of
its connection). Neither awaits anything here. The driver reads history and writes bytes; it tells the feed what
happened (:meth:`Feed.live`, :meth:`Feed.history`, :meth:`Feed.lost`, :meth:`Feed.close`...) and the feed
answers what to deliver. It holds no reference to a hub, a broker, a connection or an event loop, so every
transition is a plain function call in the tests (``tests/unit/test_feed.py``), the way python-websockets keeps
its protocol apart from its sockets.

States and transitions::

    REPLAYING --go_live()--> LIVE --live(lagging, parks)--> PARKED
        ^                     |  ^                            |
        |                     |  +---------unpark()-----------+
        +-----resync()--------+------------------------------+
    any --close()--> CLOSED (final)

``REPLAYING``
    The consumer is already registered for live events, but the history after :attr:`Feed.last` is still being
    read. Live events are buffered, at most ``buffer_limit`` of them. Past that the buffer is emptied and marked
    overflowed: the stream still holds what was dropped, so :meth:`Feed.history` asks for one more read (or the
    read reports the gap, if the stream lost it meanwhile). A lost-history signal does the same.
``LIVE``
    Live events are delivered as they come. Right after a replay a live batch may still carry events the
    replay already read (appended before the read, delivered after it): they are dropped up to the *floor*,
    the last replayed id, until the first event above it.
``PARKED``
    The client lags and the channel's slow-consumer policy keeps slow clients (``dropOldest``, ``conflate``):
    live events go to the driver's backlog until the client takes bytes again.
``CLOSED``
    Unsubscribed, unwatched or disconnected: every input is ignored.

What this module deliberately does not do: encode, decide what a slow client's backlog keeps (the driver's
``Backlog``), or judge a slow consumer by bytes (only the wire knows them).

The live path is hot (every subscriber, every batch): :meth:`Feed.live` allocates nothing and answers with a
small int, the offset of the first event to deliver (0: the whole batch, so its shared encoding is reused), or
:data:`IGNORE`, or an answer at or below :data:`PARK`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from fleetcast.core import ids


class State(enum.Enum):
    REPLAYING = "replaying"
    LIVE = "live"
    PARKED = "parked"
    CLOSED = "closed"


REPLAYING = State.REPLAYING
LIVE = State.LIVE
PARKED = State.PARKED
CLOSED = State.CLOSED

IGNORE = -1
"""Answer of :meth:`Feed.live`: nothing to do (buffered while replaying, at or below the floor, closed)."""
PARK = -2
"""Answer of :meth:`Feed.live`: park the whole batch in the slow client's backlog. ``PARK - n`` (below it):
park the events from offset ``n`` on (the ones before are at or below the floor); :func:`park_offset` reads it."""


def park_offset(answer: int) -> int:
    """The offset of the first event to park, for an answer of :meth:`Feed.live` at or below :data:`PARK`."""
    return PARK - answer


class Gap(enum.Enum):
    """Answer of :meth:`Feed.lost`: what the driver does about events the broker no longer has."""

    NOW = "now"
    """Tell the consumer now: it is live and up to date, so the gap comes before the next events."""
    AFTER_BACKLOG = "after_backlog"
    """Note it in the backlog: the consumer must get the events parked before the hole first."""
    NONE = "none"
    """Nothing: replaying (the next history read applies the gap rule and reports it in order) or closed."""


class HasId(Protocol):
    @property
    def id(self) -> str: ...


E = TypeVar("E", bound=HasId)


class Feed(Generic[E]):
    """The state of one channel's feed to one consumer. See the module docstring for the states."""

    __slots__ = ("_buffer", "_floor", "_limit", "last", "overflowed", "parks", "state")

    def __init__(
        self, *, buffer_limit: int, last: str | None = None, parks: bool = False, state: State = REPLAYING
    ) -> None:
        if state is not REPLAYING and state is not LIVE:
            raise ValueError(f"a feed starts replaying or live, not {state.value}")
        self.state = state
        self.last = last
        """The id of the last event the consumer got (replayed or live); where the next history read starts.
        None while unknown: a subscription without ``since``, or a watch whose stream position is not read yet."""
        self.parks = parks
        """Whether a lagging consumer's events are parked (``dropOldest``, ``conflate``) rather than written."""
        self.overflowed = False
        """The buffer overflowed (or history was lost) since the last :meth:`read_from`: read the stream again."""
        self._limit = buffer_limit
        self._buffer: list[E] = []
        self._floor: ids.EventId | None = None

    def __repr__(self) -> str:
        return f"<Feed {self.state.value} last={self.last} buffered={len(self._buffer)}>"

    @property
    def buffered(self) -> int:
        """Live events held while replaying."""
        return len(self._buffer)

    # -- live events ------------------------------------------------------------------------------------------

    def live(self, events: Sequence[E], writable: bool = True) -> int:
        """Live events arrived (in id order). Answers the offset of the first event to deliver now (0: all of
        them; the consumer then got up to the last one), :data:`IGNORE`, or an answer at or below :data:`PARK`
        (put the events from :func:`park_offset` on in the backlog). ``events`` is never empty. ``writable``:
        False while the consumer lags (drivers need only ask the wire for feeds that park)."""
        state = self.state
        if state is LIVE:
            start = 0
            floor = self._floor
            if floor is not None:
                start = self._above(events, floor)
                if start < 0:
                    return IGNORE
            if not writable and self.parks:
                self.state = PARKED
                return PARK - start
            self.last = events[-1].id
            return start
        if state is PARKED:
            return PARK
        if state is REPLAYING:
            buffer = self._buffer
            buffer.extend(events)
            if len(buffer) > self._limit:
                # The stream still has these events; the replay reads them again (see the module docstring).
                buffer.clear()
                self.overflowed = True
        return IGNORE

    def _above(self, events: Sequence[E], floor: ids.EventId) -> int:
        """Offset of the first event above the floor (the floor goes once one is found), or -1."""
        for index, event in enumerate(events):
            if ids.parse(event.id) > floor:
                self._floor = None
                return index
        return IGNORE

    def unpark(self, last: str | None) -> None:
        """The lagging consumer took bytes again and got its backlog (up to ``last``, if it held events)."""
        if self.state is PARKED:
            self.state = LIVE
            if last is not None:
                self.last = last

    def lost(self) -> Gap:
        """The broker's live delivery skipped events it no longer has: what to do about it (see :class:`Gap`).
        While replaying, the buffer is emptied and marked overflowed, so the replay reads once more."""
        state = self.state
        if state is LIVE:
            return Gap.NOW
        if state is PARKED:
            return Gap.AFTER_BACKLOG
        if state is REPLAYING:
            self._buffer.clear()
            self.overflowed = True
        return Gap.NONE

    # -- history ----------------------------------------------------------------------------------------------

    def read_from(self) -> str:
        """A history read is about to be sent: the id it reads after. Anything that overflows from now on
        may be missing from its answer, so the overflow mark starts afresh here."""
        if self.state is not REPLAYING:
            raise RuntimeError(f"history is read while replaying, not while {self.state.value}")
        if self.last is None:
            raise RuntimeError("the feed does not know where its history starts (no last id)")
        self.overflowed = False
        return self.last

    def history(self, events: Sequence[E], *, full: bool) -> bool:
        """A page of history arrived (the events after :meth:`read_from`'s id, already written by the driver).
        ``full``: the page held as many events as asked for. Answers whether to read again: the page was full,
        or live events were dropped from the buffer while it was read."""
        if self.state is not REPLAYING:
            raise RuntimeError(f"history arrives while replaying, not while {self.state.value}")
        if events:
            self.last = events[-1].id
        return full or self.overflowed

    def rewind(self) -> None:
        """The stream no longer holds what follows :attr:`last` (lost, or recreated with lower ids after a
        restart): start again from its beginning."""
        self.last = ids.format_id(ids.ZERO)

    def go_live(self, last: str | None = None) -> list[E]:
        """The replay is done (with ``last``: everything up to that id was covered elsewhere). Answers the
        buffered events it did not cover, to hand to :meth:`live` like any live batch; if none, later live
        events are dropped up to the last replayed id (the floor)."""
        if self.state is not REPLAYING:
            raise RuntimeError(f"a feed goes live from replaying, not from {self.state.value}")
        if last is not None:
            self.last = last
        buffered, self._buffer = self._buffer, []
        self.state = LIVE
        self.overflowed = False
        if self.last is None:
            return buffered
        floor = ids.parse(self.last)
        fresh = [e for e in buffered if ids.parse(e.id) > floor]
        if not fresh:
            self._floor = floor
        return fresh

    def resync(self) -> None:
        """Replay again from :attr:`last` (the live source reconnected and may have missed events); live events
        are buffered until :meth:`go_live`."""
        if self.state is CLOSED:
            raise RuntimeError("a closed feed stays closed")
        self.state = REPLAYING
        self._buffer = []
        self._floor = None
        self.overflowed = False

    def close(self) -> None:
        """Final: every later input is ignored."""
        self.state = CLOSED
        self._buffer = []
        self._floor = None
