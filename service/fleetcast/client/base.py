"""What the WebSocket and SSE clients share: one owned task, in-order delivery, resume positions, the iterator.

Delivery. Events reach the user in the order the server sent them, from the client's one reader task: either
through ``on_event`` (an async callback is awaited before the next event is read) or, without a callback, through
a bounded queue read by ``async for event in client``. When the queue is full the reader waits and stops reading
the socket: the server's buffers fill and its slow-consumer policy for the channel acts (``disconnect``: the
client is closed with 4108 and resumes from its last id; ``dropOldest``: a gap signal). Nothing is dropped
silently on the client side, and the client's memory stays bounded by ``max_queue`` events.

Resume position. ``last_ids[channel]`` is the id of the last event handed to the user (or queued for them); every
reconnect resumes after it. Queued events survive a reconnect, so the resumed stream continues exactly where the
queue ends.

Ownership. :meth:`ClientBase.start` (or ``async with``) creates the one task; :meth:`ClientBase.close` cancels it
and waits for it. When the client stops on its own (a terminal refusal, a callback that raised), the iterator
and :meth:`ClientBase.wait_closed` raise the reason; :meth:`ClientBase.close` does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from fleetcast.client.backoff import Backoff
from fleetcast.client.events import ClientClosed, Event, EventCallback, GapCallback, Stats
from fleetcast.core import ids

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
"""How the client waits between attempts (seconds); tests inject one that records the delays."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Every wait of a client is bounded by one of these (seconds)."""

    open: float = 10.0
    """Connecting and the handshake (WS upgrade, SSE response headers)."""
    idle: float = 40.0
    """Silence on an open connection before it is presumed dead. Above the server's heartbeats (SSE ``: ping``
    every 15 s); a WebSocket client sends a ``ping`` op after this much silence and gives up after twice it."""
    request: float = 10.0
    """Default bound of :meth:`publish`, :meth:`ping` and :meth:`subscribe`, including waiting for a connection."""
    close: float = 5.0
    """The closing handshake when the client closes."""


class _End:
    """Marks the end of the event queue."""


_END = _End()


class ClientBase:
    """The machinery both clients share; subclasses implement :meth:`_run` (connect, read, reconnect)."""

    def __init__(
        self,
        *,
        on_event: EventCallback | None,
        on_gap: GapCallback | None,
        max_queue: int,
        timeouts: Timeouts | None,
        backoff: Backoff | None,
        sleep: Sleep,
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1: the iterator's queue is always bounded")
        self.stats = Stats()
        self.last_ids: dict[str, str] = {}
        """Per channel: the id of the last event delivered; the next connection resumes after it."""
        self.timeouts = timeouts or Timeouts()
        self.backoff = backoff or Backoff()
        self._on_event = on_event
        self._on_gap = on_gap
        self._sleep = sleep
        self._queue: asyncio.Queue[Event | _End] = asyncio.Queue(max_queue)
        self._after_gap: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._done = asyncio.Event()
        self._failure: BaseException | None = None
        self._closed = False

    # Lifetime

    def start(self) -> None:
        """Start connecting in the background (idempotent). ``async with client`` does it for you."""
        if self._closed:
            raise ClientClosed("the client was closed; make a new one")
        if self._task is None:
            self._task = asyncio.create_task(self._guarded(), name=f"fleetcast-client-{type(self).__name__}")

    async def close(self) -> None:
        """Stop: cancel the task, close the connection, wait for both. Idempotent; never raises the failure."""
        self._closed = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._finish()

    async def wait_closed(self) -> None:
        """Wait until the client stopped; raise why it stopped on its own (:class:`Refused`, a callback's error)."""
        await self._done.wait()
        if self._failure is not None:
            raise self._failure

    @property
    def failure(self) -> BaseException | None:
        """Why the client stopped on its own, or None (still running, or closed by :meth:`close`)."""
        return self._failure

    @property
    def running(self) -> bool:
        return self._task is not None and not self._done.is_set()

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _guarded(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("fleetcast client stopped: %s", exc)
            self._failure = exc
        finally:
            self._finish()

    def _finish(self) -> None:
        if self._done.is_set():
            return
        self._done.set()
        # A full queue needs no marker: the iterator sees the end once it has emptied the queue.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_END)
        self._stopped()

    def _stopped(self) -> None:
        """Hook: the client stopped (fail waiters). Runs once."""

    async def _run(self) -> None:
        raise NotImplementedError

    # Delivery

    async def _deliver(self, event: Event) -> None:
        """Hand one event to the user, dropping one whose id is not above the last (counted, never expected)."""
        last = self.last_ids.get(event.channel)
        if event.channel in self._after_gap:
            self._after_gap.discard(event.channel)
        elif last is not None and ids.parse(event.id) <= ids.parse(last):
            self.stats.duplicates += 1
            log.warning("dropped duplicate event %s of %s (last %s)", event.id, event.channel, last)
            return
        self.last_ids[event.channel] = event.id
        self.stats.events += 1
        if self._on_event is not None:
            result = self._on_event(event)
            if inspect.isawaitable(result):
                await result
        else:
            await self._queue.put(event)

    async def _gap(self, channel: str, requested: str, earliest: str | None) -> None:
        """The server no longer had what followed ``requested``; what comes next starts at ``earliest``."""
        self.stats.gaps += 1
        # The next event may be numbered below what we had (a restarted store); it is new, not a duplicate.
        self._after_gap.add(channel)
        if self._on_gap is not None:
            result = self._on_gap(channel, requested, earliest)
            if inspect.isawaitable(result):
                await result

    async def _pause(self, delay_ms: int) -> None:
        await self._sleep(max(0, delay_ms) / 1000)

    # Iterator

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        """The next event, in order. Ends when the client is closed; raises the reason if it stopped on its own.
        Only for clients built without ``on_event``."""
        if self._on_event is not None:
            raise TypeError("this client delivers events to its on_event callback, not to an iterator")
        while True:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                if self._done.is_set():
                    return self._end()
                item = await self._queue.get()
            if isinstance(item, Event):
                return item
            return self._end()

    def _end(self) -> Event:
        # Leave the marker for any other reader, then stop.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_END)
        if self._failure is not None:
            raise self._failure
        raise StopAsyncIteration
