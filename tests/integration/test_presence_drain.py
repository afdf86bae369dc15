"""Presence through a drain (issue 16): clients moved to another pod keep their entries; nobody flaps.

A file of its own: a drain and a grace window take seconds, so xdist runs it beside the other presence tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from fleetcast.client import SseClient, WsClient
from tests.integration.test_presence import ROOM, present, token
from tests.support.gateway import GatewayProcess, gateway
from tests.support.processes import RedisServer, declare, redis_server
from tests.support.tokens import Keys

GRACE = 5.0  # the default


@pytest.fixture
def fleet(keys: Keys) -> Iterator[tuple[RedisServer, GatewayProcess, GatewayProcess]]:
    with redis_server() as server:
        declare(server, "room", "--presence", "--join-leave")
        common = ["--redis-url", server.url, *keys.pod_args(), "--presence-grace-seconds", str(GRACE),
                  "--drain-rate", "20", "--drain-propagation", "0.2", "--drain-timeout", "20",
                  "--drain-reconnect-delay-ms", "500"]  # fmt: skip
        with gateway(*common, "--pod-name", "a") as pod_a, gateway(*common, "--pod-name", "b") as pod_b:
            yield server, pod_a, pod_b


async def test_a_drain_moves_members_to_the_other_pod_without_a_leave_or_join_and_presence_stays_at_five(
    fleet: tuple[RedisServer, GatewayProcess, GatewayProcess], keys: Keys
) -> None:
    """Three clients on pod A (reference clients, two over WebSocket and one over SSE, each keeping its client id
    across reconnects) and two on pod B (one of each); A drains and exits: every client ends on B, presence read on
    B never shows fewer than five for longer than the grace window, and neither client on B heard a leave or a
    join of a moved client after the drain began."""
    _, pod_a, pod_b = fleet
    heard: list[tuple[int, str, str]] = []
    drain_began: list[int] = []

    def recorder(who: int) -> Callable[[dict[str, Any]], None]:
        return lambda message: heard.append((who, message["op"], message["client"]))

    movers: list[WsClient | SseClient] = [
        WsClient([pod_a.ws_url, pod_b.ws_url], [ROOM], token=token(keys, f"mover{i}"), client_id=f"mover-{i}-tab-01")
        for i in range(2)
    ]
    movers.append(SseClient([pod_a.url, pod_b.url], ROOM, token=token(keys, "mover2"), client_id="mover-2-tab-01"))
    stayers = [
        WsClient([pod_b.ws_url], [ROOM], token=token(keys, "stay0"), client_id="stay-0-tab", on_presence=recorder(0)),
        SseClient([pod_b.url], ROOM, token=token(keys, "stay1"), client_id="stay-1-tab", on_presence=recorder(1)),
    ]
    reader = token(keys, "auditor")
    counts: list[tuple[float, int]] = []
    try:
        for client in [*stayers, *movers]:
            client.start()
        async with httpx.AsyncClient(base_url=pod_b.url, timeout=10) as http:
            async with asyncio.timeout(15):
                while len(await present(http, ROOM, reader)) < 5 or any(c.stats.connects < 1 for c in movers):
                    await asyncio.sleep(0.1)
            assert all(c.url == c.urls[0] for c in movers)
            loop = asyncio.get_running_loop()
            drain_began.append(len(heard))
            async with httpx.AsyncClient(base_url=pod_a.admin_url, headers=pod_a.admin_headers) as admin:
                assert (await admin.post("/internal/drain")).status_code == 202
            began = loop.time()
            assert pod_a.proc is not None
            while pod_a.proc.poll() is None or loop.time() - began < GRACE + 2:
                counts.append((loop.time(), len(await present(http, ROOM, reader))))
                await asyncio.sleep(0.1)
                assert loop.time() - began < 40, "pod A did not finish draining"
            assert pod_a.proc.returncode == 0, pod_a.log()[-2000:]
    finally:
        for client in [*movers, *stayers]:
            await client.close()
    assert all(c.url == c.urls[-1] and c.stats.reconnects >= 1 for c in movers)
    longest_below = 0.0
    since: float | None = None
    for at, count in counts:
        if count < 5 and since is None:
            since = at
        elif count >= 5 and since is not None:
            longest_below = max(longest_below, at - since)
            since = None
    assert since is None, f"presence ended below five: {counts[-5:]}"
    assert longest_below <= GRACE, f"presence stayed below five for {longest_below:.1f} s"
    moved = {c.client_id for c in movers}
    after = [h for h in heard[drain_began[0] :] if h[2] in moved]
    assert after == [], f"moved clients flapped: {after}"
    for who in (0, 1):  # each recorder did hear the movers join, before the drain
        assert {c for w, op, c in heard if w == who and op == "join"} >= moved, (who, heard)
