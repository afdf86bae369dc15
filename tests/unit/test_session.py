"""The session core on the embedded broker, with a recording wire: resume merges, gaps, overflow, slow consumers.

The wire here is a real implementation of the Wire protocol that keeps what it is given; no fleetcast component
is replaced.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

import pytest

from fleetcast.broker.base import Retention
from fleetcast.broker.memory import MemoryBroker
from fleetcast.contract.policy import ChannelPolicy
from fleetcast.core.disconnects import Disconnect
from fleetcast.core.messages import Ref
from fleetcast.hub.batch import Batch
from fleetcast.hub.hub import Hub
from fleetcast.session.access import Access
from fleetcast.session.policies import PolicyBook
from fleetcast.session.publisher import Publisher
from fleetcast.session.session import Limits, Session


class RecordingWire:
    """Keeps every message as a parsed record: ("event", id) / ("gap", requested, earliest) / ("subscribed", ...)."""

    kind: Literal["ws"] = "ws"

    def __init__(self) -> None:
        self.records: list[tuple[object, ...]] = []
        self.closed_with: Disconnect | None = None
        self.unsent = 0
        self.on_writable: Callable[[], None] = lambda: None

    @property
    def closed(self) -> bool:
        return self.closed_with is not None

    def write(self, data: bytes) -> int:
        if self.closed:
            return 0
        for line in data.decode().splitlines():
            self.records.append(tuple(json.loads(line)))
        return self.unsent

    def buffered(self) -> int:
        return self.unsent

    @property
    def writable(self) -> bool:
        return self.unsent == 0

    def set_on_writable(self, callback: Callable[[], None]) -> None:
        self.on_writable = callback

    async def drain(self, timeout: float) -> bool:
        await asyncio.sleep(0)
        return True

    def close(self, disconnect: Disconnect, after_ms: int) -> None:
        self.closed_with = disconnect

    def event_ids(self) -> list[str]:
        return [str(r[1]) for r in self.records if r[0] == "event"]


class RecordingCodec:
    def events(self, batch: Batch) -> bytes:
        return "".join(json.dumps(["event", e.id]) + "\n" for e in batch.events).encode()

    def subscribed(self, channel: str, ref: Ref, recovered: bool, latest: str | None) -> bytes:
        return (json.dumps(["subscribed", recovered, latest]) + "\n").encode()

    def gap(self, channel: str, requested: str, earliest: str | None) -> bytes:
        return (json.dumps(["gap", requested, earliest]) + "\n").encode()

    def unsubscribed(self, channel: str, reason: str) -> bytes:
        return (json.dumps(["unsubscribed", channel, reason]) + "\n").encode()


async def make_session(
    broker: MemoryBroker, *, limits: Limits | None = None, history: int = 10_000
) -> tuple[Session, RecordingWire, Hub]:
    hub = Hub(broker)
    await broker.start(hub.deliver)
    wire = RecordingWire()
    session = Session(
        hub=hub,
        broker=broker,
        access=Access(PolicyBook(ChannelPolicy(history_max_events=history, subscribe_anonymous=True))),
        publisher=Publisher(broker),
        wire=wire,
        codec=RecordingCodec(),
        limits=limits or Limits(),
    )
    return session, wire, hub


async def publish(broker: MemoryBroker, channel: str, n: int, history: int = 10_000) -> list[str]:
    retention = Retention(max_events=history)
    return [await broker.publish(channel, b"%d" % i, "t", retention=retention) for i in range(n)]


async def test_resume_while_publishing_has_no_gap_and_no_duplicate() -> None:
    """Events published during the replay, and ones appended before the read but delivered after it, each
    arrive exactly once."""
    broker = MemoryBroker()
    session, wire, _ = await make_session(broker, limits=Limits(replay_page=7))
    ids = await publish(broker, "c", 50)
    publisher = asyncio.create_task(publish(broker, "c", 200))
    await session.subscribe("c", ids[9])
    more = await publisher
    await asyncio.sleep(0)  # let the last batch flush
    assert wire.event_ids() == ids[10:] + more
    assert wire.records[0] == ("subscribed", True, wire.records[0][2])


async def test_live_batch_overlapping_the_replay_is_trimmed_to_the_floor() -> None:
    """An event in history and in a not-yet-flushed live batch is delivered once."""
    broker = MemoryBroker()
    session, wire, hub = await make_session(broker)
    await hub.join("c", _Noop())  # the channel is already watched by another subscriber
    ids = await publish(broker, "c", 5)  # appended; their live batch is still pending in the broker
    await session.subscribe("c", ids[1])
    await asyncio.sleep(0)  # now the pending live batch (all 5) is delivered
    assert wire.event_ids() == ids[2:]


class _Noop:
    def deliver(self, batch: Batch) -> None:
        pass


async def test_overflowing_live_buffer_during_replay_rereads_the_stream() -> None:
    """A live buffer that overflows during a long replay is dropped and read again from the stream."""
    broker = MemoryBroker()
    session, wire, _ = await make_session(broker, limits=Limits(replay_page=5, replay_pending_max=3))
    ids = await publish(broker, "c", 30)
    publisher = asyncio.create_task(publish(broker, "c", 100))
    await session.subscribe("c", "0-0")
    more = await publisher
    await asyncio.sleep(0)
    assert wire.event_ids() == ids + more


async def test_gap_then_retained_events() -> None:
    """Resuming from a trimmed id gives the gap, then the oldest retained event onwards."""
    broker = MemoryBroker()
    session, wire, _ = await make_session(broker, history=10)
    ids = await publish(broker, "c", 25, history=10)
    await session.subscribe("c", ids[2])
    assert wire.records[0] == ("subscribed", False, ids[-1])
    assert wire.records[1] == ("gap", ids[2], ids[15])
    assert wire.event_ids() == ids[15:]


async def test_unknown_since_is_a_gap() -> None:
    """An id this broker never issued (history lost, e.g. a restart) is reported as a gap, not silence."""
    broker = MemoryBroker()
    session, wire, _ = await make_session(broker)
    await session.subscribe("c", "1000-0")
    assert wire.records == [("subscribed", False, None), ("gap", "1000-0", None)]


async def test_slow_consumer_is_closed_with_4108_and_leaves_the_hub() -> None:
    """A session holding more unsent bytes than its limit is disconnected and unsubscribed."""
    broker = MemoryBroker()
    session, wire, hub = await make_session(broker, limits=Limits(outbox_max_bytes=100))
    await session.subscribe("c", None)
    wire.unsent = 101
    await publish(broker, "c", 1)
    await asyncio.sleep(0)
    assert wire.closed_with is not None
    assert wire.closed_with.code == 4108
    assert hub.subscriber_count("c") == 0


async def test_subscribe_limits_and_policy() -> None:
    """Double subscribe, too many channels and a forbidden transport are refused with a reason."""
    broker = MemoryBroker()
    session, _, _ = await make_session(broker, limits=Limits(max_channels=1))
    await session.subscribe("a", None)
    with pytest.raises(Exception, match="already subscribed"):
        await session.subscribe("a", None)
    with pytest.raises(Exception, match="at most 1 channels"):
        await session.subscribe("b", None)
    session.access.policies.replace({"sse-only": ChannelPolicy(transports=("sse",), subscribe_anonymous=True)})
    session.unsubscribe("a")
    with pytest.raises(Exception, match="does not allow the ws transport"):
        await session.subscribe("sse-only:x", None)


async def lagging_session(policy: ChannelPolicy) -> tuple[Session, RecordingWire, MemoryBroker]:
    broker = MemoryBroker()
    session, wire, _ = await make_session(broker)
    session.access.policies.replace({"slow": replace(policy, subscribe_anonymous=True)})
    await session.subscribe("slow", None)
    return session, wire, broker


async def test_drop_oldest_keeps_the_newest_and_reports_the_hole() -> None:
    """A lagging client under dropOldest gets a gap from its last id, then the newest `buffer` events."""
    session, wire, broker = await lagging_session(ChannelPolicy(slow_consumer="dropOldest", slow_consumer_buffer=5))
    first = await publish(broker, "slow", 2)
    await asyncio.sleep(0)
    wire.unsent = 1  # the client stops taking bytes
    later = await publish(broker, "slow", 12)
    await asyncio.sleep(0)
    assert wire.event_ids() == first
    wire.unsent = 0
    wire.on_writable()
    assert wire.event_ids() == first + later[-5:]
    assert ("gap", first[-1], later[-5]) in wire.records
    assert session.counters.dropped["dropOldest"] == 7


async def test_conflate_delivers_the_latest_value_per_key_never_a_stale_one() -> None:
    """Under conflate a lagging client gets one event per key, each the newest, without a gap."""
    broker = MemoryBroker()
    session, wire, _ = await make_session(broker)
    session.access.policies.replace(
        {"score": ChannelPolicy(slow_consumer="conflate", conflate_by="team", subscribe_anonymous=True)}
    )
    await session.subscribe("score", None)
    wire.unsent = 1
    latest: dict[str, str] = {}
    for n in range(30):
        team = "abc"[n % 3]
        latest[team] = await broker.publish(
            "score", json.dumps({"team": team, "n": n}).encode(), "score", retention=Retention()
        )
    await asyncio.sleep(0)
    wire.unsent = 0
    wire.on_writable()
    assert sorted(wire.event_ids()) == sorted(latest.values())
    assert not [r for r in wire.records if r[0] == "gap"]
    assert session.counters.dropped["conflate"] == 0


async def test_lost_history_while_parked_is_reported_after_the_older_parked_events() -> None:
    """A broker's lost-history signal that arrives while events are parked lands between the older parked
    events and the newer ones, where the hole is."""
    session, wire, broker = await lagging_session(ChannelPolicy(slow_consumer="dropOldest", slow_consumer_buffer=50))
    wire.unsent = 1
    older = await publish(broker, "slow", 3)
    await asyncio.sleep(0)
    session.hub.lost("slow", older[-1], None)
    newer = await publish(broker, "slow", 2)
    await asyncio.sleep(0)
    wire.unsent = 0
    wire.on_writable()
    assert wire.records[1:] == [
        *(("event", i) for i in older),
        ("gap", older[-1], None),
        *(("event", i) for i in newer),
    ]
