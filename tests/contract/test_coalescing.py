"""CoalescingBroker: resume bursts share reads, reads are bounded, and no caller gets a read older than its call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from fleetcast.broker.base import Event, History, Retention, StreamInfo
from fleetcast.broker.coalescing import CoalescingBroker
from fleetcast.broker.memory import MemoryBroker
from fleetcast.errors import Unavailable

KEEP = Retention(max_events=None)


class SlowMemoryBroker(MemoryBroker):
    """A memory broker whose reads take a while and are counted, like reads over a network."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.active = 0
        self.peak = 0

    async def read(self, channel: str, since: str, limit: int) -> History:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            history = await super().read(channel, since, limit)
            await asyncio.sleep(self.delay)
            return history
        finally:
            self.active -= 1


def ignore(channel: str, events: Sequence[Event]) -> None:
    pass


async def test_a_burst_of_identical_reads_costs_at_most_two() -> None:
    """A thousand clients resuming from the same id share reads: at most two reach the broker."""
    inner = SlowMemoryBroker(delay=0.05)
    broker = CoalescingBroker(inner)
    await broker.start(ignore)
    ids = [await broker.publish("chat", b"%d" % n, "m", retention=KEEP) for n in range(20)]
    results = await asyncio.gather(*(broker.read("chat", ids[4], 100) for _ in range(1000)))
    assert all([e.id for e in r.events] == ids[5:] for r in results)
    assert broker.inner_reads <= 2
    await broker.close()


async def test_a_caller_never_joins_a_read_older_than_its_call() -> None:
    """A read requested after a publish sees it, even while an identical read started before is in flight."""
    inner = SlowMemoryBroker(delay=0.1)
    broker = CoalescingBroker(inner)
    await broker.start(ignore)
    early = asyncio.create_task(broker.read("chat", "0-0", 100))
    await asyncio.sleep(0.02)
    event_id = await broker.publish("chat", b"1", "m", retention=KEEP)
    late = await broker.read("chat", "0-0", 100)
    assert [e.id for e in late.events] == [event_id]
    assert list((await early).events) == []
    await broker.close()


async def test_reads_are_bounded_in_concurrency() -> None:
    """Distinct reads run at most max_concurrent_reads at a time; waiting too long answers Unavailable."""
    inner = SlowMemoryBroker(delay=0.05)
    broker = CoalescingBroker(inner, max_concurrent_reads=4, wait_timeout=5.0)
    await broker.start(ignore)
    await asyncio.gather(*(broker.read(f"chat:{n}", "0-0", 10) for n in range(40)))
    assert inner.peak == 4
    impatient = CoalescingBroker(SlowMemoryBroker(delay=0.5), max_concurrent_reads=1, wait_timeout=0.1)
    await impatient.start(ignore)
    outcomes = await asyncio.gather(*(impatient.read(f"c{n}", "0-0", 10) for n in range(3)), return_exceptions=True)
    assert sum(isinstance(o, Unavailable) for o in outcomes) == 2
    await impatient.close()
    await broker.close()


async def test_a_cancelled_caller_does_not_cancel_the_shared_read() -> None:
    """One client going away mid-read leaves the shared read running for the others."""
    broker = CoalescingBroker(SlowMemoryBroker(delay=0.1))
    await broker.start(ignore)
    await broker.publish("chat", b"1", "m", retention=KEEP)
    first = asyncio.create_task(broker.read("chat", "0-0", 10))
    second = asyncio.create_task(broker.read("chat", "0-0", 10))
    await asyncio.sleep(0.02)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert len((await second).events) == 1
    await broker.close()


class SlowInfoBroker(MemoryBroker):
    """A memory broker whose info calls take a while, like a round trip to Redis."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def info(self, channel: str) -> StreamInfo:
        info = await super().info(channel)
        await asyncio.sleep(self.delay)
        return info


async def test_a_burst_of_subscribes_without_since_asks_for_the_latest_id_at_most_twice() -> None:
    """A thousand concurrent info calls for one channel cost at most two inner calls; a lone call runs inline."""
    broker = CoalescingBroker(SlowInfoBroker(delay=0.05))
    await broker.start(ignore)
    last = await broker.publish("chat", b"1", "m", retention=KEEP)
    results = await asyncio.gather(*(broker.info("chat") for _ in range(1000)))
    assert {r.latest for r in results} == {last}
    assert broker.inner_infos <= 2
    before = broker.inner_infos
    assert (await broker.info("chat")).latest == last
    assert broker.inner_infos == before + 1
    assert broker._infos == {}  # nothing is kept once the callers have their answers
    await broker.close()


async def test_an_info_caller_never_gets_a_latest_id_older_than_its_call() -> None:
    """An info requested after a publish names that event, even while an info started before is in flight."""
    broker = CoalescingBroker(SlowInfoBroker(delay=0.1))
    await broker.start(ignore)
    early = asyncio.create_task(broker.info("chat"))
    await asyncio.sleep(0.02)
    event_id = await broker.publish("chat", b"1", "m", retention=KEEP)
    late = await broker.info("chat")
    assert late.latest == event_id
    assert (await early).latest is None
    await broker.close()


async def test_a_failed_or_cancelled_first_info_still_serves_the_callers_behind_it() -> None:
    """The first caller's read is its own: if it is cancelled, those who waited behind it get a read of their own."""
    broker = CoalescingBroker(SlowInfoBroker(delay=0.1))
    await broker.start(ignore)
    last = await broker.publish("chat", b"1", "m", retention=KEEP)
    first = asyncio.create_task(broker.info("chat"))
    await asyncio.sleep(0.02)
    behind = asyncio.create_task(broker.info("chat"))
    await asyncio.sleep(0.02)
    first.cancel()
    assert (await behind).latest == last
    with pytest.raises(asyncio.CancelledError):
        await first
    await broker.close()
