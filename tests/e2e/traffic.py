"""Traffic for the cluster-in-a-box: publishers that never stop, a fleet of reference clients, and the ledger
that checks every client's sequence per channel.

Publishers number their events per channel ``{"n": 0, 1, ...}`` and publish each with an ``Idempotency-Key``
made of channel and number, retrying the same number until it is acknowledged (201): a retry after an
answer lost in a pod kill returns the first id instead of publishing twice. ``n`` advances only on 201, so
the acknowledged events of a channel are exactly ``0 .. published - 1``.

Each client starts ``since`` the last acknowledged id of its channel (or from the channel's beginning), so it
must receive exactly ``start, start + 1, ...``: the first connection is checked too, not only the resumes.
The check names the first missing or duplicated event, because the first one is where to start reading logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from fleetcast.client import Event, SseClient, WsClient
from fleetcast.errors import FleetcastError


class DeliveryBroken(AssertionError):
    """A client's sequence of a channel has a hole or a repeat (the message names the first one)."""


@dataclass
class Ledger:
    """What the publishers got acknowledged, per channel: the id of each ``n``."""

    channels: tuple[str, ...]
    ids: dict[str, list[str]] = field(default_factory=dict)
    attempts: int = 0
    failures: int = 0
    """Publish attempts that got no 201 (no pod ready, pod killed, Redis down) and were retried."""

    def __post_init__(self) -> None:
        self.ids = {channel: [] for channel in self.channels}

    def published(self, channel: str) -> int:
        return len(self.ids[channel])

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.ids.values())

    def position(self, channel: str) -> tuple[int, str]:
        """The first ``n`` a client starting now must receive, and the ``since`` id that gives it."""
        done = self.ids[channel]
        # "0-0": from the channel's beginning. No ``since`` would mean "from now", racing the first publish.
        return len(done), (done[-1] if done else "0-0")


async def publish_forever(base_url: str, ledger: Ledger, channel: str, rate: float, running: asyncio.Event) -> None:
    """Publish ``{"n": ...}`` on ``channel`` at ``rate`` per second while ``running``; retry each ``n`` until 201."""
    interval = 1.0 / rate
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(3.0)) as http:
        while running.is_set():
            n = ledger.published(channel)
            ledger.attempts += 1
            try:
                response = await http.post(
                    f"/v1/channels/{channel}/events",
                    json={"data": {"n": n}},
                    headers={"Idempotency-Key": f"{channel}/{n}"},
                )
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code == 201:
                ledger.ids[channel].append(response.json()["id"])
                await asyncio.sleep(interval)
            else:
                ledger.failures += 1
                await asyncio.sleep(0.2)


@dataclass
class Received:
    """One client's view of one channel: the numbers in arrival order, with their ids."""

    channel: str
    start: int
    numbers: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def first_fault(self) -> str | None:
        """The first event out of sequence, described; None when the sequence is exactly start, start + 1, ..."""
        expected = self.start
        seen: dict[int, str] = {}
        for n, event_id in zip(self.numbers, self.ids, strict=True):
            if n in seen:
                return f"first duplicated event n={n} (id {event_id}; first delivered as id {seen[n]})"
            if n != expected:
                return f"first missing event n={expected} (next delivered was n={n}, id {event_id})"
            seen[n] = event_id
            expected += 1
        return None

    @property
    def latest(self) -> int:
        """The number of the last event received (``start - 1`` before the first)."""
        return self.numbers[-1] if self.numbers else self.start - 1

    @property
    def next_expected(self) -> int:
        return self.start + len(self.numbers)


Tap = Callable[[Event], list[Event]]
"""A fault injector between a client and its recorder: returns the events to record ([] drops, [e, e] repeats)."""


@dataclass
class FleetClient:
    """One reference client (WS or SSE) and what it received, per channel."""

    name: str
    client: WsClient | SseClient
    received: dict[str, Received]
    opened: float = field(default_factory=time.monotonic)
    closed: float | None = None
    gaps: list[tuple[str, str, str | None]] = field(default_factory=list)

    @property
    def transport(self) -> str:
        return "ws" if isinstance(self.client, WsClient) else "sse"


class ClientFleet:
    """Starts and closes reference clients against one URL (the Service) and checks what they received."""

    def __init__(self, service_url: str, service_ws_url: str, ledger: Ledger) -> None:
        self.url = service_url
        self.ws_url = service_ws_url
        self.ledger = ledger
        self.clients: list[FleetClient] = []
        self._serial = 0

    def open(self, transport: str, channels: list[str], *, tap: Tap | None = None) -> FleetClient:
        """A new client on ``channels`` starting after the last acknowledged event of each."""
        name = f"{transport}-{self._serial:03d}"
        self._serial += 1
        received: dict[str, Received] = {}
        since: dict[str, str | None] = {}
        for channel in channels:
            start, since[channel] = self.ledger.position(channel)
            received[channel] = Received(channel, start)

        def record(event: Event) -> None:
            for kept in tap(event) if tap is not None else [event]:
                into = received[kept.channel]
                into.numbers.append(int(kept.data["n"]))
                into.ids.append(kept.id)

        entry: FleetClient
        client: WsClient | SseClient
        if transport == "ws":
            client = WsClient(self.ws_url, since, on_event=record, on_gap=lambda *g: entry.gaps.append(g))
        else:
            (channel,) = channels
            client = SseClient(
                self.url, channel, since=since[channel], on_event=record, on_gap=lambda *g: entry.gaps.append(g)
            )
        entry = FleetClient(name, client, received)
        client.start()
        self.clients.append(entry)
        return entry

    async def close(self, entries: list[FleetClient]) -> None:
        await asyncio.gather(*(entry.client.close() for entry in entries))
        now = time.monotonic()
        for entry in entries:
            entry.closed = now

    async def close_all(self) -> None:
        await self.close([entry for entry in self.clients if entry.closed is None])

    @property
    def open_clients(self) -> list[FleetClient]:
        return [entry for entry in self.clients if entry.closed is None]

    @property
    def reconnects(self) -> int:
        return sum(entry.client.stats.reconnects for entry in self.clients)

    def behind(self, extra: Sequence[Received] = ()) -> list[str]:
        """Channels of open clients (and ``extra`` views) whose latest event is not the last acknowledged one."""
        views = [(entry.name, r) for entry in self.open_clients for r in entry.received.values()]
        views += [("chromium", r) for r in extra]
        return [
            f"{name}:{r.channel} at {r.latest}/{self.ledger.published(r.channel) - 1}"
            for name, r in views
            if r.latest < self.ledger.published(r.channel) - 1
        ]

    def faults(self) -> list[str]:
        """Every client's first fault, in the order the clients were opened (empty: all exact)."""
        found: list[str] = []
        for entry in self.clients:
            failure = entry.client.failure
            if failure is not None:
                found.append(f"client {entry.name} stopped: {failure!r}")
            if entry.client.stats.duplicates:
                found.append(f"client {entry.name}: the server sent {entry.client.stats.duplicates} duplicate ids")
            if entry.gaps:
                found.append(f"client {entry.name}: gap signals {entry.gaps}")
            for r in entry.received.values():
                fault = fault_of(r, self.ledger, still_open=entry.closed is None)
                if fault is not None:
                    found.append(f"client {entry.name} ({entry.transport}) on {r.channel}: {fault}")
        return found

    def check(self) -> None:
        """Raise :class:`DeliveryBroken` naming the first missing or duplicated event of each faulty client."""
        found = self.faults()
        if found:
            raise DeliveryBroken(f"{len(found)} client(s) out of sequence; " + "; ".join(found))

    def counts(self) -> tuple[int, int, int]:
        """(delivered, lost, duplicated) over every client and channel, as the summary reports them."""
        delivered = lost = duplicated = 0
        for entry in self.clients:
            duplicated += entry.client.stats.duplicates
            for r in entry.received.values():
                delivered += len(r.numbers)
                distinct = set(r.numbers)
                duplicated += len(r.numbers) - len(distinct)
                end = r.next_expected if entry.closed is not None else self.ledger.published(r.channel)
                lost += len(set(range(r.start, end)) - distinct)
        return delivered, lost, duplicated


def fault_of(r: Received, ledger: Ledger, *, still_open: bool) -> str | None:
    """The first fault of one channel view; an open view must also have reached the last acknowledged event."""
    fault = r.first_fault()
    if fault is None and still_open and r.next_expected < ledger.published(r.channel):
        missing = r.next_expected
        fault = f"first missing event n={missing} (id {ledger.ids[r.channel][missing]}), never delivered"
    return fault


async def wait_until(check: Callable[[], Any], *, timeout: float, what: str, step: float = 0.1) -> Any:
    """Poll ``check`` until truthy; fail naming ``what`` (and the last value) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(FleetcastError, httpx.HTTPError):
            last = check()
            if asyncio.iscoroutine(last):
                last = await last
            if last:
                return last
        await asyncio.sleep(step)
    raise AssertionError(f"{what}: not reached within {timeout} s (last: {last!r})")
