"""The shed controller over real sessions (embedded broker, recording wires): which sessions it picks, its pace and
advice, rounds, and how a drain cuts it short. Real pods shedding to another pod over Redis are
``tests/integration/test_shed.py``."""

from __future__ import annotations

import asyncio
from collections import Counter

from fleetcast.broker.memory import MemoryBroker
from fleetcast.core import disconnects
from fleetcast.drain.controller import DrainController, DrainSettings
from fleetcast.drain.shed import ShedController, spread_order
from fleetcast.session.session import Session
from tests.unit.test_drain_controller import AdviceWire
from tests.unit.test_session import make_session


async def subscribed(layout: dict[str, int]) -> tuple[set[Session], dict[Session, str]]:
    """``layout[channel]`` sessions subscribed to each channel, each with an :class:`AdviceWire`."""
    broker = MemoryBroker()
    made: set[Session] = set()
    channel_of: dict[Session, str] = {}
    for channel, count in layout.items():
        for _ in range(count):
            session, _, _ = await make_session(broker)
            session.wire = AdviceWire()
            await session.subscribe(channel, None)
            made.add(session)
            channel_of[session] = channel
    return made, channel_of


def wire(session: Session) -> AdviceWire:
    assert isinstance(session.wire, AdviceWire)
    return session.wire


async def test_a_shed_takes_every_channel_in_proportion_paced_with_advice() -> None:
    """60 sessions on three channels (30/20/10), shed 30 at 40/s: each channel gives up half of its subscribers
    (never one channel emptied first), each told ``rebalance`` with a jittered ``after_ms``, at the rate."""
    live, channel_of = await subscribed({"big": 30, "mid": 20, "small": 10})
    everyone = set(live)
    changes: list[bool] = []
    shed = ShedController(live, DrainSettings(rate=40, reconnect_delay_ms=700))
    shed.on_state = lambda: changes.append(shed.shedding)
    assert shed.begin(30, round="r1")
    assert shed.shedding
    assert shed.remaining == 30
    await asyncio.sleep(0.25)
    early = Counter(channel_of[s] for s in everyone if wire(s).closed)
    assert 0 < sum(early.values()) < 30
    assert await shed.wait(5)
    await asyncio.sleep(0)  # the end is announced just after the task
    closed = [s for s in everyone if wire(s).closed]
    assert len(closed) == 30
    assert shed.closed == 30
    assert not shed.shedding
    assert shed.remaining == 0
    assert len(live) == 30  # the others stay, and the pod keeps taking new ones (nothing here refuses them)
    assert Counter(channel_of[s] for s in closed) == {"big": 15, "mid": 10, "small": 5}
    assert all(wire(s).closed_with == disconnects.REBALANCE for s in closed)
    assert all(wire(s).after_ms is not None and 100 <= (wire(s).after_ms or 0) <= 700 for s in closed)
    assert all(not s.subscriptions for s in closed)  # they left their channels at once
    pacing = shed.pacing()
    assert pacing["max_per_second"] <= 40 + 2
    assert pacing["span_seconds"] >= 0.5  # 30 at 40/s cannot close faster than about 0.7 s
    assert changes == [True, False]


async def test_any_prefix_of_the_order_is_spread() -> None:
    """The first closes already come from every channel: the interleaving holds for every prefix, not just the
    whole count (a shed cut short leaves no channel half-emptied while another is untouched)."""
    live, channel_of = await subscribed({"a": 40, "b": 20, "c": 4})
    order = spread_order(list(live))
    first = Counter(channel_of[s] for s in order[:16])
    assert 9 <= first["a"] <= 11
    assert 4 <= first["b"] <= 6
    assert 0 <= first["c"] <= 2
    assert Counter(channel_of[s] for s in order) == {"a": 40, "b": 20, "c": 4}


async def test_a_round_already_taken_is_ignored_and_a_new_one_replaces_the_count() -> None:
    live, _ = await subscribed({"x": 20})
    shed = ShedController(live, DrainSettings(rate=5))
    assert shed.begin(10, round="r1")
    assert not shed.begin(10, round="r1")  # the operator sent it again after a restart: no double
    assert shed.remaining == 10
    assert shed.begin(2, round="r2")  # the latest word wins
    assert await shed.wait(5)
    assert shed.closed == 2
    assert shed.round == "r2"
    assert shed.begin(0, round="r3")  # nothing to do: taken, and nothing runs
    assert not shed.shedding


async def test_a_drain_cuts_a_shed_short_and_refuses_new_ones() -> None:
    live, _ = await subscribed({"x": 30})
    everyone = set(live)
    drain = DrainController(live, DrainSettings(rate=1000, timeout=5, propagation_seconds=0.2))
    shed = ShedController(live, DrainSettings(rate=10), halted=lambda: drain.draining)
    assert shed.begin(30)
    await asyncio.sleep(0.15)
    assert drain.begin()
    assert await shed.wait(1)  # stopped at its next tick, not after its 3 s of closes
    shed_closed = shed.closed
    assert 0 < shed_closed < 10
    assert not shed.begin(5)
    assert await drain.wait(5)
    reasons = Counter(wire(s).closed_with for s in everyone)
    assert reasons == {disconnects.REBALANCE: shed_closed, disconnects.DRAIN: 30 - shed_closed}


async def test_sessions_gone_meanwhile_cost_nothing() -> None:
    """Sessions that leave on their own during a shed are skipped; the shed ends when its picks run out."""
    live, _ = await subscribed({"x": 10})
    shed = ShedController(live, DrainSettings(rate=1000))
    assert shed.begin(8)  # it picks the 10 open now
    for session in list(live)[:6]:
        live.discard(session)  # the transport saw them go (what Pod.close_session does)
    assert await shed.wait(5)
    assert shed.closed == 4
    assert not live


async def test_close_stops_a_shed_in_progress() -> None:
    live, _ = await subscribed({"x": 10})
    shed = ShedController(live, DrainSettings(rate=2))
    shed.begin(10)
    await asyncio.sleep(0.05)
    await shed.close()
    assert not shed.shedding
    assert shed.closed < 10
