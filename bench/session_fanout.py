"""Per-subscriber cost of the live path: hub -> subscription -> wire, in CPU nanoseconds per delivery.

Runs ``python -m bench.session_fanout`` (or ``python bench/session_fanout.py``). One process, no network: a hub
on the embedded broker, ``--subscribers`` real sessions subscribed to one channel, each with a wire that only
counts bytes (the cost of the socket write is left out on purpose: it is the same whatever the session core
does). It hands ``--batches`` batches of ``--events`` events to the hub and reports the process CPU time per
subscriber delivery, best of ``--repeat`` runs. CPU time rather than wall time, and the best run rather than
the mean, so that a shared machine's noise shows less; still, compare numbers taken in the same minute.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

if __package__ in (None, ""):  # run as a script: make `fleetcast` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

from fleetcast.broker.base import Event
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


class CountingWire:
    kind: Literal["ws"] = "ws"
    closed = False
    writable = True

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.bytes += len(data)
        return 0

    def buffered(self) -> int:
        return 0

    def set_on_writable(self, callback: Callable[[], None]) -> None:
        pass

    async def drain(self, timeout: float) -> bool:
        return True

    def close(self, disconnect: Disconnect, after_ms: int) -> None:
        self.closed = True


class WsCodec:
    def events(self, batch: Batch) -> bytes:
        return batch.ws()

    def subscribed(self, channel: str, ref: Ref, recovered: bool, latest: str | None) -> bytes:
        return b"s"

    def gap(self, channel: str, requested: str, earliest: str | None) -> bytes:
        return b"g"

    def unsubscribed(self, channel: str, reason: str) -> bytes:
        return b"u"


async def measure(subscribers: int, batches: int, events: int, policy: str) -> float:
    broker = MemoryBroker()
    hub = Hub(broker)
    await broker.start(hub.deliver)
    access = Access(PolicyBook(ChannelPolicy(subscribe_anonymous=True, slow_consumer=policy)))  # type: ignore[arg-type]
    publisher = Publisher(broker)
    for _ in range(subscribers):
        session = Session(
            hub=hub, broker=broker, access=access, publisher=publisher, wire=CountingWire(), codec=WsCodec(),
            limits=Limits(),
        )  # fmt: skip
        await session.join("bench", access.subscribe(session.principal, "bench", "ws"), None)
    payloads = [
        [Event(id=f"{b + 1}-{i}", type="message", data=b'{"n":1}', traceparent=None) for i in range(events)]
        for b in range(batches)
    ]
    for batch in payloads[:10]:  # warm up: encodings, caches
        hub.deliver("bench", batch)
    started = time.process_time_ns()
    for batch in payloads[10:]:
        hub.deliver("bench", batch)
    spent = time.process_time_ns() - started
    await broker.close()
    return spent / ((batches - 10) * subscribers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=510)
    parser.add_argument("--events", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--policy", default="disconnect", choices=["disconnect", "dropOldest", "conflate"])
    args = parser.parse_args()
    runs = [asyncio.run(measure(args.subscribers, args.batches, args.events, args.policy)) for _ in range(args.repeat)]
    print(
        f"{args.subscribers} subscribers, {args.events} event(s)/batch, {args.policy}: "
        f"best {min(runs):.0f} ns CPU per subscriber delivery (runs: {', '.join(f'{r:.0f}' for r in runs)})"
    )


if __name__ == "__main__":
    main()
