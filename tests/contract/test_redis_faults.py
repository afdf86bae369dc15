"""Redis faults: down at start, down mid-stream, restarts with and without persistence. Each test owns its server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

import pytest

from fleetcast.broker.base import Event, Retention
from fleetcast.broker.redis_streams import LivePath, RedisStreamsBroker
from fleetcast.errors import BrokerUnavailable
from tests.contract.conftest import Collector
from tests.support.processes import RedisServer, redis_server

KEEP = Retention(max_events=None)


@pytest.fixture(params=["notify", "xread"])
def live(request: pytest.FixtureRequest) -> LivePath:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def started(live: LivePath) -> AsyncIterator[tuple[RedisServer, RedisStreamsBroker, Collector]]:
    collector = Collector()
    with redis_server(appendonly=True) as server:
        broker = RedisStreamsBroker(server.url, timeout=0.5, live=live)
        await broker.start(collector)
        try:
            yield server, broker, collector
        finally:
            await broker.close()


async def wait_ready(broker: RedisStreamsBroker, ready: bool, timeout: float = 8.0) -> None:
    """Poll ``ready`` as /readyz does: it is a plain property, not something to wait on."""
    deadline = time.monotonic() + timeout
    while broker.ready is not ready:
        assert time.monotonic() < deadline, f"ready stayed {broker.ready} for {timeout} s"
        await asyncio.sleep(0.05)


async def test_calls_while_down_raise_quickly(started: tuple[RedisServer, RedisStreamsBroker, Collector]) -> None:
    """With Redis stopped, publish, read, info and watch raise BrokerUnavailable within about one timeout."""
    server, broker, _ = started
    await asyncio.to_thread(server.stop)
    for call in (
        broker.publish("chat", b"1", "m", retention=KEEP),
        broker.read("chat", "0-0", 10),
        broker.info("chat"),
        broker.watch("chat"),
    ):
        began = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            await call
        assert time.monotonic() - began < 1.5
    await wait_ready(broker, False)
    await asyncio.to_thread(server.start)
    await wait_ready(broker, True)
    assert await broker.publish("chat", b"2", "m", retention=KEEP)


async def test_down_at_start_then_recovers(live: LivePath) -> None:
    """start() returns with Redis down, ready is False, the reader retries without spinning, then recovers."""
    server = RedisServer(appendonly=False)
    broker = RedisStreamsBroker(server.url, timeout=0.5, live=live)
    collector = Collector()
    try:
        began = time.monotonic()
        await broker.start(collector)
        assert time.monotonic() - began < 1.5
        assert not broker.ready
        cpu = time.process_time()
        await asyncio.sleep(2.0)
        assert time.process_time() - cpu < 0.3, "the reconnect loop spins"
        await asyncio.to_thread(server.start)
        await wait_ready(broker, True)
        await broker.watch("chat")
        event_id = await broker.publish("chat", b"1", "m", retention=KEEP)
        assert [e.id for e in await collector.wait_for("chat", 1)] == [event_id]
    finally:
        await broker.close()
        server.cleanup()


async def test_reader_resumes_after_restart_without_loss(
    started: tuple[RedisServer, RedisStreamsBroker, Collector], live: LivePath
) -> None:
    """After a restart with AOF, the reader continues from its last delivered id: events another pod published
    before the reader reconnected arrive too, in order, none twice."""
    server, broker, collector = started
    await broker.watch("chat")
    published = [await broker.publish("chat", b"%d" % n, "m", retention=KEEP) for n in range(10)]
    await collector.wait_for("chat", 10)
    await asyncio.to_thread(server.restart)
    other_pod = RedisStreamsBroker(server.url, timeout=0.5, live=live)
    await other_pod.start(lambda channel, events: None)
    try:
        published += [await other_pod.publish("chat", b"%d" % n, "m", retention=KEEP) for n in range(10, 30)]
    finally:
        await other_pod.close()
    delivered = await collector.wait_for("chat", 30, timeout=10)
    await asyncio.sleep(0.2)
    assert [e.id for e in delivered] == published


async def test_restart_without_persistence_is_a_gap(live: LivePath) -> None:
    """Redis restarted without persistence: a resume from an old id reports a gap; live delivery goes on."""
    collector = Collector()
    with redis_server(appendonly=False) as server:
        broker = RedisStreamsBroker(server.url, timeout=0.5, live=live)
        await broker.start(collector)
        try:
            await broker.watch("chat")
            before = [await broker.publish("chat", b"%d" % n, "m", retention=KEEP) for n in range(5)]
            await collector.wait_for("chat", 5)
            await asyncio.to_thread(server.restart)
            await wait_ready(broker, True)
            after = await broker.publish("chat", b"new", "m", retention=KEEP)
            history = await broker.read("chat", before[-1], 10)
            assert history.gap
            assert [e.id for e in history.events] == [after]
            assert [e.id for e in await collector.wait_for("chat", 6)] == [*before, after]
        finally:
            await broker.close()


class Timeline:
    """Delivery and lost callbacks that record one ordered log: ``("event", id)`` and ``("lost", requested,
    earliest)``, so a test sees which came first."""

    def __init__(self) -> None:
        self.log: list[tuple[str, ...]] = []

    def deliver(self, channel: str, events: Sequence[Event]) -> None:
        self.log.extend(("event", e.id) for e in events)

    def lost(self, channel: str, requested: str, earliest: str | None) -> None:
        self.log.append(("lost", requested, earliest or ""))

    async def wait_for_events(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while sum(1 for entry in self.log if entry[0] == "event") < count:
                await asyncio.sleep(0.02)


async def test_live_path_signals_lost_history_before_later_events(live: LivePath) -> None:
    """Redis restarted without persistence while a channel is watched: the live path calls ``lost`` with the last
    delivered id before it delivers any post-restart event (published by another pod before or after the reader
    reconnected), then delivers those in order, once."""
    timeline = Timeline()
    with redis_server(appendonly=False) as server:
        broker = RedisStreamsBroker(server.url, timeout=0.5, live=live)
        await broker.start(timeline.deliver, timeline.lost)
        other_pod = RedisStreamsBroker(server.url, timeout=0.5, live=live)
        try:
            await broker.watch("chat")
            before = [await broker.publish("chat", b"%d" % n, "m", retention=KEEP) for n in range(5)]
            await timeline.wait_for_events(5)
            await asyncio.to_thread(server.restart)
            # Published at once, most likely before the reader has reconnected: only the catch-up can find it.
            await other_pod.start(lambda channel, events: None)
            after = [await other_pod.publish("chat", b"%d" % n, "m", retention=KEEP) for n in range(5, 8)]
            await timeline.wait_for_events(8)
            await wait_ready(broker, True)
            after.append(await broker.publish("chat", b"8", "m", retention=KEEP))
            await timeline.wait_for_events(9)
            await asyncio.sleep(0.2)
            # earliest: the first post-restart event if it was published before the reader caught up, else none.
            lost = ("lost", before[-1], after[0] if len(timeline.log[5]) == 3 and timeline.log[5][2] else "")
            assert timeline.log == [*(("event", i) for i in before), lost, *(("event", i) for i in after)]
        finally:
            await other_pod.close()
            await broker.close()


async def test_live_path_signals_lost_history_of_an_empty_stream_once(
    live: LivePath, caplog: pytest.LogCaptureFixture
) -> None:
    """A restart without persistence that leaves the watched channel's stream empty: one ``lost`` (earliest None),
    then every later event; a second restart with nothing delivered in between signals nothing new."""
    timeline = Timeline()
    with redis_server(appendonly=False) as server:
        broker = RedisStreamsBroker(server.url, timeout=0.5, live=live)
        await broker.start(timeline.deliver, timeline.lost)
        try:
            await broker.watch("chat")
            first = await broker.publish("chat", b"1", "m", retention=KEEP)
            await timeline.wait_for_events(1)
            for restarts in (1, 2):
                await asyncio.to_thread(server.restart)
                async with asyncio.timeout(8):  # the reader noticed, reconnected and caught up
                    while len([r for r in caplog.records if "live reader lost Redis" in r.message]) < restarts:
                        await asyncio.sleep(0.05)
                await wait_ready(broker, True)
                await asyncio.sleep(0.3)
            later = await broker.publish("chat", b"2", "m", retention=KEEP)
            await timeline.wait_for_events(2)
            assert timeline.log == [("event", first), ("lost", first, ""), ("event", later)]
        finally:
            await broker.close()


async def test_restart_with_persistence_signals_nothing(
    started: tuple[RedisServer, RedisStreamsBroker, Collector], live: LivePath
) -> None:
    """With AOF the stream survives a restart: the catch-up finds the cursor retained and reports no loss."""
    server, broker, collector = started
    lost: list[tuple[str, str, str | None]] = []
    timeline_broker = RedisStreamsBroker(server.url, timeout=0.5, live=live)
    await timeline_broker.start(collector, lambda *signal: lost.append(signal))
    try:
        await timeline_broker.watch("kept")
        published = [await broker.publish("kept", b"%d" % n, "m", retention=KEEP) for n in range(5)]
        await collector.wait_for("kept", 5)
        await asyncio.to_thread(server.restart)
        await wait_ready(timeline_broker, True)
        published.append(await broker.publish("kept", b"5", "m", retention=KEEP))
        delivered = await collector.wait_for("kept", 6, timeout=10)
        await asyncio.sleep(0.3)
        assert [e.id for e in delivered] == published
        assert lost == []
    finally:
        await timeline_broker.close()
