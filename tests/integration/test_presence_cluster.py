"""Presence on a real Redis Cluster (issue 16 with issue 19): 3 masters + 3 replicas, two pods in cluster mode.

Entries, their user counts and announcements stay in the channel's slot (sharded pub/sub, like events); a pod's
channel index lives in a slot of its own; a pod killed with SIGKILL is reaped across both.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx

from tests.integration.test_presence import Member, until
from tests.support.clients import publish, ws_client, ws_subscribe
from tests.support.cluster import redis_cluster
from tests.support.gateway import QUICK_STOP, GatewayProcess, gateway

CHANNEL = "room:cluster"
LEASE = 10.0


@contextlib.asynccontextmanager
async def anonymous_member(pod: GatewayProcess) -> AsyncIterator[Member]:
    joined = Member("", "")
    async with ws_client(pod.ws_url) as ws:
        joined.ws = ws
        await ws_subscribe(ws, CHANNEL)
        joined.start_reading()
        try:
            yield joined
        finally:
            await joined.stop()


async def test_presence_on_a_cluster_lists_counts_announces_and_reaps_a_killed_pod() -> None:
    """Two clients on pod A, one on pod B, all anonymous: B lists three and counts three; B's client heard both
    joins of A's clients and an event in their order; after A is killed, B's client hears two leaves and the
    list and the stats are down to one within the lease."""
    with redis_cluster() as cluster:
        args = [*QUICK_STOP, "--anonymous", "--presence", "--redis-mode", "cluster", "--redis-url", cluster.url,
                "--presence-lease-seconds", str(LEASE)]  # fmt: skip
        with gateway(*args, "--pod-name", "pod-a") as pod_a, gateway(*args, "--pod-name", "pod-b") as pod_b:
            async with contextlib.AsyncExitStack() as stack, httpx.AsyncClient(base_url=pod_b.url, timeout=10) as http:
                watcher = await stack.enter_async_context(anonymous_member(pod_b))
                await until(lambda: _count(watcher, "join", 1), 10, "the watcher's own join")
                for _ in range(2):
                    await stack.enter_async_context(anonymous_member(pod_a))
                await until(lambda: _count(watcher, "join", 3), 10, "both joins on pod A heard on pod B")
                await publish(http, CHANNEL, {"after": "joins"})
                await until(lambda: _count(watcher, "event", 1), 10, "the event after the joins")
                assert [kind for kind, _ in watcher.seen] == ["join", "join", "join", "event"]
                listed = (await http.get(f"/v1/channels/{CHANNEL}/presence")).json()["clients"]
                assert len(listed) == 3
                stats = (await http.get(f"/v1/channels/{CHANNEL}/presence/stats")).json()
                assert (stats["clients"], stats["users"]) == (3, 0)

                killed = asyncio.get_running_loop().time()
                await asyncio.to_thread(pod_a.kill)

                async def one_left() -> bool:
                    response = await http.get(f"/v1/channels/{CHANNEL}/presence/stats")
                    return bool(response.json()["clients"] == 1)

                await until(one_left, LEASE + 5, "pod A's entries reaped")
                assert asyncio.get_running_loop().time() - killed <= LEASE
                await until(lambda: _count(watcher, "leave", 2), 5, "two leaves")


async def _count(member: Member, kind: str, at_least: int) -> bool:
    return len([k for k, _ in member.seen if k == kind]) >= at_least
