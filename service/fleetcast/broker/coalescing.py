"""Resume bursts: identical history reads share one broker read, and reads are bounded in number.

When a pod restarts or drains, a thousand clients reconnect to the same pods within a second, most of them
resuming one channel from the same id. Without help each one reads the same events from Redis on its own
pooled connection, and the pool (bounded on purpose) makes the rest time out. The same burst without ``since``
asks for each channel's newest id once per client. :class:`CoalescingBroker` wraps any
:class:`fleetcast.broker.base.Broker` and changes only :meth:`read` and :meth:`info`:

* Reads with the same ``(channel, since, limit)`` share one read of the inner broker ("single flight").
  A caller never joins a read that started before it called: the resume rule (watch, then read) needs the
  read to cover everything up to the caller's watch, and an older read may not. A caller that arrives while
  a read is in flight waits for the *next* one, which every caller arriving meanwhile shares, so a burst costs
  at most two reads per distinct position, however many clients it holds.
* At most ``max_concurrent_reads`` inner reads run at once; the others wait up to ``wait_timeout`` seconds
  and then get :class:`fleetcast.errors.Unavailable` (retry later), never an unbounded queue.
* :meth:`info` calls for one channel coalesce by the same rule (a subscriber's ``latest`` must not predate its
  watch, or an event published in between would be neither replayed nor live). The first caller reads inline,
  with no task, so a lone subscribe costs what it did; callers arriving meanwhile share one follow-up read.

It is not a cache: a result is handed only to callers that were waiting for it, then forgotten.
Every other method passes straight through.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

from fleetcast.broker.base import Broker, Delivery, History, Lost, Retention, StreamInfo
from fleetcast.errors import Unavailable

_Key = tuple[str, str, int]
_T = TypeVar("_T")


class _Flights:
    """The read in flight for one key, and the future of the read that will follow it."""

    __slots__ = ("next", "running")

    def __init__(self) -> None:
        self.running: asyncio.Task[History] | None = None
        self.next: asyncio.Future[History] | None = None


class _InfoFlight:
    """The :meth:`CoalescingBroker.info` read running for one channel (inline in its first caller's task, or
    ``follow``, the task serving callers that arrived during the previous one), and the future of the next."""

    __slots__ = ("follow", "next")

    def __init__(self) -> None:
        self.follow: asyncio.Task[StreamInfo] | None = None
        self.next: asyncio.Future[StreamInfo] | None = None


class CoalescingBroker:
    """A :class:`Broker` whose :meth:`read` coalesces identical concurrent reads and bounds concurrency."""

    def __init__(self, inner: Broker, *, max_concurrent_reads: int = 16, wait_timeout: float = 5.0) -> None:
        self._inner = inner
        self._slots = asyncio.Semaphore(max_concurrent_reads)
        self._wait_timeout = wait_timeout
        self._flights: dict[_Key, _Flights] = {}
        self._infos: dict[str, _InfoFlight] = {}
        self.inner_reads = 0
        """How many reads reached the inner broker (for metrics and tests)."""
        self.inner_infos = 0
        """How many :meth:`info` calls reached the inner broker."""

    @property
    def ready(self) -> bool:
        return self._inner.ready

    def ready_for(self, channel: str) -> bool:
        return self._inner.ready_for(channel)

    @property
    def shards(self) -> dict[str, bool] | None:
        return self._inner.shards

    @property
    def channels_held(self) -> int | None:
        return self._inner.channels_held

    async def start(self, deliver: Delivery, lost: Lost | None = None) -> None:
        await self._inner.start(deliver, lost)

    async def close(self) -> None:
        for flight in list(self._infos.values()):
            if flight.follow is not None:
                flight.follow.cancel()
            if flight.next is not None and not flight.next.done():
                flight.next.cancel()
        self._infos.clear()
        for flights in list(self._flights.values()):
            if flights.running is not None:
                flights.running.cancel()
            if flights.next is not None and not flights.next.done():
                flights.next.cancel()
        self._flights.clear()
        await self._inner.close()

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
        return await self._inner.publish(
            channel, data, type, retention=retention, idempotency_key=idempotency_key, traceparent=traceparent
        )

    async def read(self, channel: str, since: str, limit: int) -> History:
        key = (channel, since, limit)
        flights = self._flights.get(key)
        if flights is None:
            flights = self._flights[key] = _Flights()
        if flights.running is None:
            task = self._launch(key, flights)
        else:
            if flights.next is None:
                flights.next = asyncio.get_running_loop().create_future()
                flights.next.add_done_callback(_retrieved)
            # The next read starts when the running one ends; wait for it, bounded by its own timeouts.
            return await asyncio.shield(flights.next)
        return await asyncio.shield(task)

    def _launch(self, key: _Key, flights: _Flights) -> asyncio.Task[History]:
        task = asyncio.create_task(self._read_once(*key), name=f"fleetcast-read-{key[0]}")
        flights.running = task
        task.add_done_callback(lambda done: self._landed(key, flights, done))
        return task

    def _landed(self, key: _Key, flights: _Flights, done: asyncio.Task[History]) -> None:
        flights.running = None
        if not done.cancelled():
            done.exception()  # mark it retrieved: callers that were cancelled meanwhile will not look
        waiting, flights.next = flights.next, None
        if waiting is None:
            if self._flights.get(key) is flights:
                del self._flights[key]
            return
        follow = self._launch(key, flights)
        follow.add_done_callback(lambda finished: _settle(waiting, finished))

    async def _read_once(self, channel: str, since: str, limit: int) -> History:
        try:
            async with asyncio.timeout(self._wait_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise Unavailable("too many history reads at once; retry shortly") from None
        try:
            self.inner_reads += 1
            return await self._inner.read(channel, since, limit)
        finally:
            self._slots.release()

    async def info(self, channel: str) -> StreamInfo:
        flight = self._infos.get(channel)
        if flight is not None:
            # A read is running that may predate this caller's watch: wait for the one that follows it.
            if flight.next is None:
                flight.next = asyncio.get_running_loop().create_future()
                flight.next.add_done_callback(_retrieved)
            return await asyncio.shield(flight.next)
        flight = self._infos[channel] = _InfoFlight()
        try:
            self.inner_infos += 1
            return await self._inner.info(channel)
        finally:
            self._info_landed(channel, flight)

    def _info_landed(self, channel: str, flight: _InfoFlight) -> None:
        waiting = flight.next
        if waiting is None:
            if self._infos.get(channel) is flight:
                del self._infos[channel]
            return
        follow = self._infos[channel] = _InfoFlight()
        self.inner_infos += 1
        follow.follow = asyncio.create_task(self._inner.info(channel), name=f"fleetcast-info-{channel}")

        def landed(done: asyncio.Task[StreamInfo]) -> None:
            _settle(waiting, done)
            self._info_landed(channel, follow)

        follow.follow.add_done_callback(landed)

    async def watch(self, channel: str) -> None:
        await self._inner.watch(channel)

    async def unwatch(self, channel: str) -> None:
        await self._inner.unwatch(channel)


def _settle(future: asyncio.Future[_T], task: asyncio.Task[_T]) -> None:
    if future.done():
        return
    if task.cancelled():
        future.cancel()
    elif (exc := task.exception()) is not None:
        future.set_exception(exc)
    else:
        future.set_result(task.result())


def _retrieved(future: asyncio.Future[_T]) -> None:
    if not future.cancelled():
        future.exception()
