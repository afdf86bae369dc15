"""The hub on the embedded broker, without sessions: who gets which batch, when a channel is watched, and what
one broken subscriber costs the others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from fleetcast.broker.base import Event, Retention
from fleetcast.broker.memory import MemoryBroker
from fleetcast.hub.batch import Batch
from fleetcast.hub.hub import Hub


class Listener:
    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.gaps: list[tuple[str, str | None]] = []

    def deliver(self, batch: Batch) -> None:
        self.batches.append(batch)

    def lost(self, requested: str, earliest: str | None) -> None:
        self.gaps.append((requested, earliest))

    @property
    def ids(self) -> list[str]:
        return [e.id for b in self.batches for e in b.events]


class Broken(Listener):
    def deliver(self, batch: Batch) -> None:
        raise RuntimeError("this subscriber's connection is in a bad state")


@pytest.fixture
async def hub() -> AsyncIterator[tuple[Hub, MemoryBroker]]:
    broker = MemoryBroker()
    made = Hub(broker, unwatch_grace_seconds=0.2)
    await broker.start(made.deliver, made.lost)
    try:
        yield made, broker
    finally:
        await made.close()
        await broker.close()


async def publish(broker: MemoryBroker, channel: str, n: int) -> list[str]:
    ids = [await broker.publish(channel, b'{"n":%d}' % i, "message", retention=Retention()) for i in range(n)]
    for _ in range(3):  # the embedded broker delivers on a later turn of the loop
        await asyncio.sleep(0)
    return ids


async def test_every_subscriber_gets_the_same_batch_object(hub: tuple[Hub, MemoryBroker]) -> None:
    """Fan-out hands one Batch (so one encoding per wire format) to every subscriber, in id order."""
    made, broker = hub
    listeners = [Listener() for _ in range(5)]
    for listener in listeners:
        await made.join("room:1", listener)
    ids = await publish(broker, "room:1", 3)
    assert all(listener.ids == ids for listener in listeners)
    first = listeners[0].batches[0]
    assert all(listener.batches[0] is first for listener in listeners)
    assert first.ws() is listeners[1].batches[0].ws()
    assert made.subscriber_count("room:1") == 5
    assert made.subscriptions_by_family() == {"room": 5}
    assert made.delivered_events == 15


async def test_a_broken_subscriber_does_not_starve_the_others(hub: tuple[Hub, MemoryBroker]) -> None:
    made, broker = hub
    before, after = Listener(), Listener()
    await made.join("room:1", before)
    await made.join("room:1", Broken())
    await made.join("room:1", after)
    ids = await publish(broker, "room:1", 2)
    assert before.ids == ids
    assert after.ids == ids


async def test_channels_are_watched_while_they_have_subscribers(hub: tuple[Hub, MemoryBroker]) -> None:
    """A channel stays watched through the grace period after its last subscriber leaves (a quick reconnect
    does not churn the broker), and is unwatched and forgotten after it."""
    made, broker = hub
    first, second = Listener(), Listener()
    await made.join("room:1", first)
    made.leave("room:1", first)
    await made.sweep()  # within the grace period: still watched
    await made.join("room:1", second)
    ids = await publish(broker, "room:1", 1)
    assert second.ids == ids
    assert first.ids == []

    made.leave("room:1", second)
    await asyncio.sleep(0.25)
    await made.sweep()
    assert made.subscriber_count("room:1") == 0
    assert made.subscriptions_by_family() == {}
    late = Listener()
    await publish(broker, "room:1", 1)  # unwatched: the broker delivers nothing to the hub
    await made.join("room:1", late)
    assert late.ids == []
    ids = await publish(broker, "room:1", 1)  # watched again
    assert late.ids == ids


class SlowUnwatch(MemoryBroker):
    """The embedded broker with the latency an ``unwatch`` has on Redis (a round trip), so that a join can
    arrive while the sweep waits for it."""

    async def unwatch(self, channel: str) -> None:
        await asyncio.sleep(0.05)
        await super().unwatch(channel)


async def test_a_join_racing_the_sweep_is_watched() -> None:
    """A subscriber that joins while the sweep is unwatching the channel ends up watched, not stranded."""
    broker = SlowUnwatch()
    made = Hub(broker, unwatch_grace_seconds=0.1)
    await broker.start(made.deliver, made.lost)
    try:
        gone = Listener()
        await made.join("room:1", gone)
        made.leave("room:1", gone)
        await asyncio.sleep(0.15)
        newcomer = Listener()
        sweep = asyncio.create_task(made.sweep())
        await asyncio.sleep(0.01)  # the sweep is inside its unwatch now
        await made.join("room:1", newcomer)
        await sweep
        ids = await publish(broker, "room:1", 2)
        assert newcomer.ids == ids
        assert made.subscriber_count("room:1") == 1
    finally:
        await made.close()
        await broker.close()


async def test_lost_history_reaches_every_subscriber_of_the_channel_only(hub: tuple[Hub, MemoryBroker]) -> None:
    made, _ = hub
    here, elsewhere = Listener(), Listener()
    await made.join("room:1", here)
    await made.join("room:2", elsewhere)
    made.lost("room:1", "5-0", "9-0")
    assert here.gaps == [("5-0", "9-0")]
    assert elsewhere.gaps == []


def page(channel: str, ids: Sequence[str]) -> list[Event]:
    return [Event(id=i, type="message", data=b"{}") for i in ids]


async def test_a_replayed_page_is_one_batch_for_everyone_who_reads_it(hub: tuple[Hub, MemoryBroker]) -> None:
    """The same page object (one shared read) is one Batch; an equal-looking but different read is not."""
    made, _ = hub
    events = page("room:1", ["1-0", "2-0"])
    shared = made.replay_batch("room:1", events)
    assert made.replay_batch("room:1", events) is shared
    assert made.replay_batch("room:1", page("room:1", ["1-0", "2-0"])) is not shared
