"""Redis faults: down at start, down mid-stream, restarts with and without persistence. Each test owns its server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from fleetcast.broker.base import Retention
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
