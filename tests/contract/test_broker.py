"""The Broker contract (fleetcast.broker.base), run against the memory broker and the Redis Streams broker."""

from __future__ import annotations

import asyncio

from fleetcast.broker.base import Broker, Event, Retention
from fleetcast.broker.memory import MemoryBroker
from fleetcast.core import ids
from tests.contract.conftest import Collector

KEEP_ALL = Retention(max_events=None)


def data(n: int) -> bytes:
    return b'{"n":%d}' % n


async def publish_many(broker: Broker, channel: str, count: int, retention: Retention = KEEP_ALL) -> list[str]:
    return [await broker.publish(channel, data(n), "msg", retention=retention) for n in range(count)]


async def read_all(broker: Broker, channel: str, since: str = "0-0", page: int = 50) -> list[Event]:
    events: list[Event] = []
    while True:
        history = await broker.read(channel, since, page)
        events.extend(history.events)
        if len(history.events) < page:
            return events
        since = history.events[-1].id


async def test_ids_increase_strictly(broker: Broker, channel: str) -> None:
    """Every publish returns an id of the form <ms>-<seq>, greater than the one before."""
    published = await publish_many(broker, channel, 50)
    parsed = [ids.parse(i) for i in published]
    assert parsed == sorted(parsed)
    assert len(set(parsed)) == len(parsed)
    assert all(ids.format_id(p) == i for p, i in zip(parsed, published, strict=True))


async def test_read_returns_events_in_order_with_their_fields(broker: Broker, channel: str) -> None:
    """A read from 0-0 returns what was published, oldest first, with type, data and traceparent."""
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    first = await broker.publish(channel, b'{"a":1}', "created", retention=KEEP_ALL, traceparent=tp)
    second = await broker.publish(channel, b"[1,2]", "updated", retention=KEEP_ALL)
    history = await broker.read(channel, "0-0", 10)
    assert [(e.id, e.type, e.data, e.traceparent) for e in history.events] == [
        (first, "created", b'{"a":1}', tp),
        (second, "updated", b"[1,2]", None),
    ]
    assert (history.gap, history.earliest, history.latest) == (False, first, second)


async def test_read_pages_after_since(broker: Broker, channel: str) -> None:
    """read(since, limit) returns at most limit events with id > since; paging visits each event once."""
    published = await publish_many(broker, channel, 23)
    page = await broker.read(channel, published[4], 5)
    assert [e.id for e in page.events] == published[5:10]
    assert [e.id for e in await read_all(broker, channel, page=7)] == published
    assert (await broker.read(channel, published[-1], 5)).events == []


async def test_concurrent_publishes_are_atomic_and_ordered(broker: Broker, channel: str) -> None:
    """Concurrent publishes each land exactly once, and the stream order is the id order."""
    published = await asyncio.gather(*(broker.publish(channel, data(n), "msg", retention=KEEP_ALL) for n in range(100)))
    events = await read_all(broker, channel)
    assert sorted(published, key=ids.parse) == [e.id for e in events]
    assert sorted(e.data for e in events) == sorted(data(n) for n in range(100))


async def test_idempotency_key_returns_first_id(broker: Broker, channel: str) -> None:
    """A publish repeated with the same Idempotency-Key returns the first id and appends nothing."""
    first = await broker.publish(channel, b"1", "msg", retention=KEEP_ALL, idempotency_key="k-1")
    again = await broker.publish(channel, b"2", "msg", retention=KEEP_ALL, idempotency_key="k-1")
    other = await broker.publish(channel, b"3", "msg", retention=KEEP_ALL, idempotency_key="k-2")
    assert again == first
    assert other != first
    assert [e.data for e in (await broker.read(channel, "0-0", 10)).events] == [b"1", b"3"]


async def test_retention_by_count_keeps_at_least_max_events(kind: str, broker: Broker, channel: str) -> None:
    """A channel keeps at least max_events events (exactly, on the memory broker), the newest ones."""
    retention = Retention(max_events=10)
    published = await publish_many(broker, channel, 35, retention)
    info = await broker.info(channel)
    assert info.length >= 10
    if kind == "memory":
        assert info.length == 10
    assert info.latest == published[-1]
    assert info.earliest == published[-info.length]
    retained = await read_all(broker, channel, published[-info.length - 1])
    assert [e.id for e in retained] == published[-info.length :]


async def test_retention_by_age_keeps_young_events(kind: str, broker: Broker, channel: str) -> None:
    """Events older than max_age are trimmed; younger ones are kept."""
    retention = Retention(max_events=None, max_age_seconds=0.3)
    old = await publish_many(broker, channel, 5, retention)
    await asyncio.sleep(0.45)
    young = await publish_many(broker, channel, 3, retention)
    info = await broker.info(channel)
    assert info.latest == young[-1]
    assert info.length >= 3
    if kind == "memory":
        assert info.earliest == young[0]
    history = await broker.read(channel, old[0], 100)
    assert history.gap == (info.earliest != old[0])


async def test_gap_when_events_after_since_were_trimmed(broker: Broker, channel: str) -> None:
    """Reading from an id whose successors were trimmed reports a gap and continues from the oldest retained."""
    published = await publish_many(broker, channel, 30, Retention(max_events=10))
    info = await broker.info(channel)
    history = await broker.read(channel, published[0], 100)
    assert history.gap
    assert history.earliest == info.earliest
    assert [e.id for e in history.events] == published[-info.length :]


async def test_no_gap_from_the_newest_trimmed_id(broker: Broker, channel: str) -> None:
    """Reading from the newest trimmed id is no gap: nothing after it was lost."""
    published = await publish_many(broker, channel, 30, Retention(max_events=10))
    info = await broker.info(channel)
    assert info.earliest is not None
    newest_trimmed = published[published.index(info.earliest) - 1]
    history = await broker.read(channel, newest_trimmed, 100)
    assert not history.gap
    assert [e.id for e in history.events] == published[-info.length :]


async def test_gap_when_since_is_unknown(broker: Broker, channel: str) -> None:
    """An id the stream never issued (history lost) is a gap; 0-0 and retained ids are not."""
    assert (await broker.read(channel, "1700000000000-0", 10)).gap  # a channel with no stream at all
    assert not (await broker.read(channel, "0-0", 10)).gap
    published = await publish_many(broker, channel, 3)
    first_ms, _ = ids.parse(published[0])
    unknown = await broker.read(channel, f"{first_ms - 1}-7", 10)
    assert unknown.gap
    assert [e.id for e in unknown.events] == published
    assert not (await broker.read(channel, published[1], 10)).gap


async def test_an_idle_channel_leaves_and_resuming_from_it_is_a_gap(broker: Broker, channel: str) -> None:
    """Past ``Retention.idle_seconds`` without a publish the channel is gone with its history (Redis: the stream
    key's TTL; memory: the broker's sweep), and a resume from one of its ids reads as a gap."""
    idle = Retention(max_events=10, idle_seconds=0.5)
    first = await broker.publish(channel, data(1), "msg", retention=idle)
    await asyncio.sleep(0.8)
    if isinstance(broker, MemoryBroker):
        assert await broker.sweep() >= 1
    assert (await broker.info(channel)).length == 0
    history = await broker.read(channel, first, 10)
    assert (history.gap, list(history.events), history.earliest) == (True, [], None)
    again = await broker.publish(channel, data(2), "msg", retention=KEEP_ALL)
    assert ids.parse(again) > ids.parse(first), "ids still increase after the channel came back"
    assert (await broker.read(channel, first, 10)).gap


async def test_a_watched_channel_is_not_forgotten(broker: Broker, channel: str) -> None:
    """The memory broker keeps a channel somebody watches, however idle; it forgets it once unwatched and idle."""
    if not isinstance(broker, MemoryBroker):
        return  # Redis: streams expire by TTL alone; live subscribers resume with the gap signal
    idle = Retention(max_events=10, idle_seconds=0.2)
    await broker.watch(channel)
    await broker.publish(channel, data(1), "msg", retention=idle)
    await asyncio.sleep(0.3)
    assert await broker.sweep() == 0
    assert (await broker.info(channel)).length == 1
    await broker.unwatch(channel)
    assert await broker.sweep() == 0, "unwatching counts as activity: the idle time starts again"
    await asyncio.sleep(0.3)
    assert await broker.sweep() == 1


async def test_live_delivery_exactly_once_in_order(broker: Broker, channel: str, collector: Collector) -> None:
    """After watch, every event published is delivered once, in id order, in batches."""
    await broker.watch(channel)
    published = await publish_many(broker, channel, 150)
    published += await asyncio.gather(*(broker.publish(channel, data(n), "m", retention=KEEP_ALL) for n in range(50)))
    delivered = await collector.wait_for(channel, 200)
    await asyncio.sleep(0.2)
    assert [e.id for e in delivered] == sorted(published, key=ids.parse)
    assert collector.batches < 200


async def test_watch_then_read_loses_nothing_at_the_seam(broker: Broker, channel: str, collector: Collector) -> None:
    """With publishing going on, watch + read from 0-0 + live events after the read cover every event once."""
    stop = asyncio.Event()

    async def publisher() -> list[str]:
        out = []
        while not stop.is_set():
            out.append(await broker.publish(channel, data(len(out)), "m", retention=KEEP_ALL))
            await asyncio.sleep(0)
        return out

    task = asyncio.create_task(publisher())
    await asyncio.sleep(0.05)
    await broker.watch(channel)
    history = await read_all(broker, channel)
    await asyncio.sleep(0.05)
    stop.set()
    published = await task
    await collector.wait_for(channel, 1)
    last_replayed = ids.parse(history[-1].id)
    await collector.wait_until(lambda: collector.events[channel][-1].id == published[-1])
    merged = [e.id for e in history] + [e.id for e in collector.events[channel] if ids.parse(e.id) > last_replayed]
    assert merged == published


async def test_unwatch_stops_delivery(broker: Broker, channel: str, collector: Collector) -> None:
    """After unwatch, nothing more of that channel is delivered; other channels go on."""
    other = channel + "-other"
    await broker.watch(channel)
    await broker.watch(other)
    await broker.publish(channel, b"1", "m", retention=KEEP_ALL)
    await collector.wait_for(channel, 1)
    await broker.unwatch(channel)
    await broker.publish(channel, b"2", "m", retention=KEEP_ALL)
    await broker.publish(other, b"3", "m", retention=KEEP_ALL)
    await collector.wait_for(other, 1)
    await asyncio.sleep(0.1)
    assert [e.data for e in collector.events[channel]] == [b"1"]


async def test_info_of_unknown_channel_is_empty(broker: Broker, channel: str) -> None:
    """info() of a channel that never had an event is empty, not an error."""
    info = await broker.info(channel)
    assert (info.length, info.earliest, info.latest) == (0, None, None)
