"""The drain controller over real sessions (embedded broker, recording wires): its steps, its pace, its
deadline, and how a second start or an exit request combines with a drain in progress. The pods' own drain,
with real clients resuming elsewhere, is ``tests/integration/test_drain.py``."""

from __future__ import annotations

import asyncio

from fleetcast.broker.memory import MemoryBroker
from fleetcast.core import disconnects
from fleetcast.core.disconnects import Disconnect
from fleetcast.drain.controller import DrainController, DrainSettings
from fleetcast.session.session import Session
from tests.unit.test_session import RecordingWire, make_session


class AdviceWire(RecordingWire):
    """Also keeps the reconnect delay each close told the client."""

    after_ms: int | None = None

    def close(self, disconnect: Disconnect, after_ms: int) -> None:
        super().close(disconnect, after_ms)
        self.after_ms = after_ms


async def sessions(count: int) -> tuple[set[Session], list[AdviceWire]]:
    broker = MemoryBroker()
    made: set[Session] = set()
    wires: list[AdviceWire] = []
    for _ in range(count):
        session, _, _ = await make_session(broker)
        session.wire = wire = AdviceWire()
        made.add(session)
        wires.append(wire)
    return made, wires


async def test_steps_pace_and_advice() -> None:
    """Unready at once, still accepting through the propagation delay, then paced closes with a jittered
    ``after_ms`` within the configured bound, and done."""
    live, wires = await sessions(40)
    changes: list[str] = []
    drain = DrainController(live, DrainSettings(rate=50, timeout=30, propagation_seconds=0.1, reconnect_delay_ms=800))
    drain.on_state = lambda: changes.append(drain.state)
    assert drain.begin()
    assert drain.draining
    assert drain.accepting
    assert drain.remaining == 40
    await asyncio.sleep(0.05)
    assert drain.accepting
    assert drain.closed == 0
    assert await drain.wait(10)
    assert (drain.state, drain.accepting, drain.closed, drain.remaining) == ("drained", False, 40, 0)
    assert changes == ["draining", "drained"]
    assert all(w.closed_with == disconnects.DRAIN for w in wires)
    assert all(w.after_ms is not None and 100 <= w.after_ms <= 800 for w in wires)
    pacing = drain.pacing()
    assert pacing["max_per_second"] <= 50 + max(1, 50 / 20)  # the rate plus the small burst, never more
    assert pacing["span_seconds"] >= 0.6  # 40 sessions at 50/s cannot close faster than about 0.8 s


async def test_the_deadline_closes_the_rest_at_once() -> None:
    live, wires = await sessions(30)
    drain = DrainController(live, DrainSettings(rate=1, timeout=0.3, propagation_seconds=0.0))
    drain.begin()
    assert await drain.wait(5)
    assert drain.closed == 30
    assert all(w.closed for w in wires)


async def test_a_second_start_only_adds_exit() -> None:
    """preStop drains first; the SIGTERM that follows must not start another drain, only make the process exit
    when the first is done (or at once if it is done already)."""
    live, _ = await sessions(3)
    exits: list[bool] = []
    drain = DrainController(live, DrainSettings(rate=1000, timeout=5, propagation_seconds=0.0))
    drain.on_exit = lambda: exits.append(True)
    assert drain.begin()
    assert await drain.wait(5)
    assert exits == []
    assert not drain.begin(exit=True)
    assert exits == [True]


async def test_close_cancels_a_drain_in_progress() -> None:
    live, _ = await sessions(5)
    drain = DrainController(live, DrainSettings(rate=1, timeout=60, propagation_seconds=0.0))
    drain.begin()
    await asyncio.sleep(0.05)
    await drain.close()
    assert drain.state == "draining"
    assert 0 < len(live) < 5
    assert not await drain.wait(0.1)  # a waiter (the admin endpoint) hears "not drained", not a cancellation
