"""Presence after a pod dies (issue 16): kill -9 of one pod, its clients leave within one lease, nothing lingers.

A file of its own: it waits out a lease, so xdist runs it beside the other presence tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import httpx
import pytest
import redis

from fleetcast.contract.keys import Keys as RedisKeys
from tests.integration.test_presence import ROOM, Member, member, present, token, until
from tests.support.gateway import QUICK_STOP, GatewayProcess, gateway
from tests.support.processes import RedisServer, declare, redis_server
from tests.support.tokens import Keys

LEASE = 10.0


@pytest.fixture
def fleet(keys: Keys) -> Iterator[tuple[RedisServer, GatewayProcess, GatewayProcess]]:
    with redis_server() as server:
        declare(server, "room", "--presence", "--join-leave")
        common = ["--redis-url", server.url, *keys.pod_args(), "--presence-lease-seconds", str(LEASE), *QUICK_STOP]
        with gateway(*common, "--pod-name", "a") as pod_a, gateway(*common, "--pod-name", "b") as pod_b:
            yield server, pod_a, pod_b


async def test_kill_9_of_a_pod_removes_its_members_within_one_lease_with_a_leave_each(
    fleet: tuple[RedisServer, GatewayProcess, GatewayProcess], keys: Keys
) -> None:
    """Three clients on pod A, two on pod B; A is killed with SIGKILL (no goodbye): within one lease B's presence
    lists the two, the stats count two, each of B's clients received exactly the three leaves of A's clients, and
    Redis holds no entry of A nor A's channel index."""
    server, pod_a, pod_b = fleet
    reader = token(keys, "auditor")
    on_a = [("ann", "ann-tab-0001"), ("bob", "bob-tab-0001"), ("cy", "cy-tab-00001")]
    on_b = [("dee", "dee-tab-0001"), ("eve", "eve-tab-0001")]
    async with contextlib.AsyncExitStack() as stack, httpx.AsyncClient(base_url=pod_b.url, timeout=10) as http:
        members: list[Member] = []
        for sub, client in on_b:
            members.append(await stack.enter_async_context(member(keys, pod_b, sub, client)))
        for sub, client in on_a:
            await stack.enter_async_context(member(keys, pod_a, sub, client))

        async def five() -> bool:
            return len(await present(http, ROOM, reader)) == 5

        await until(five, 10, "five present")
        loop = asyncio.get_running_loop()
        killed = loop.time()
        await asyncio.to_thread(pod_a.kill)

        async def two_listed() -> bool:
            return len(await present(http, ROOM, reader)) == 2

        async def two_counted() -> bool:
            bearer = {"Authorization": f"Bearer {reader}"}
            response = await http.get(f"/v1/channels/{ROOM}/presence/stats", headers=bearer)
            return bool(response.json()["clients"] == 2)

        await until(two_listed, LEASE + 2, "A's members gone from the list")
        await until(two_counted, LEASE + 2, "A's members gone from the stats")
        gone_after = loop.time() - killed
        assert gone_after <= LEASE, f"entries of the dead pod outlived the lease: {gone_after:.1f} s"
        listed = await present(http, ROOM, reader)
        assert sorted(c["sub"] for c in listed) == ["dee", "eve"]

        async def leaves_heard() -> bool:
            return all(len([s for s in m.seen if s[0] == "leave"]) >= 3 for m in members)

        await until(leaves_heard, 5, "three leaves on each of B's clients")
        await asyncio.sleep(0.5)  # nothing more may follow
        for m in members:
            leaves = sorted(c for kind, c in m.seen if kind == "leave")
            assert leaves == sorted(c for _, c in on_a), (m.client, m.seen)
        async with httpx.AsyncClient(base_url=pod_b.admin_url, headers=pod_b.admin_headers) as admin:
            metrics = (await admin.get("/metrics")).text
        assert "fleetcast_presence_reaped_total 3.0" in metrics  # B, the only live pod, reaped A's three
        assert 'fleetcast_presence_entries{family="room"} 2.0' in metrics
    store = redis.Redis.from_url(server.url)
    names = RedisKeys("default", "default")
    try:
        entries = store.hgetall(names.presence(ROOM))
        # B's two clients left too when the block closed their sockets; only a grace window may keep them.
        assert all(b'"pod":"a"' not in value for value in entries.values()), entries
        assert not store.exists(names.presence_channels("a"))
    finally:
        store.close()


async def test_redis_restart_without_persistence_brings_every_entry_back(
    fleet: tuple[RedisServer, GatewayProcess, GatewayProcess], keys: Keys
) -> None:
    """Redis restarts empty (no AOF): the pods find their heartbeat records gone and write their entries again, so
    presence lists all three clients within a few heartbeats, with users counted again."""
    server, pod_a, pod_b = fleet
    reader = token(keys, "auditor")
    async with contextlib.AsyncExitStack() as stack, httpx.AsyncClient(base_url=pod_b.url, timeout=10) as http:
        await stack.enter_async_context(member(keys, pod_a, "ann", "ann-tab-0001"))
        await stack.enter_async_context(member(keys, pod_b, "bob", "bob-tab-0001"))
        await stack.enter_async_context(member(keys, pod_b, "ann", "ann-phone-001"))

        async def three() -> bool:
            return len(await present(http, ROOM, reader)) == 3

        await until(three, 10, "three present")
        await asyncio.to_thread(server.restart)
        store = redis.Redis.from_url(server.url)
        try:
            assert store.hlen(RedisKeys("default", "default").presence(ROOM)) == 0  # really empty
        finally:
            store.close()
        declare(server, "room", "--presence", "--join-leave")  # the operator would write the policy again

        async def back() -> bool:
            try:
                return await three()
            except (AssertionError, httpx.TransportError):
                return False  # 503 while the pod reconnects

        await until(back, 15, "entries written again after the restart")
        stats = await http.get(f"/v1/channels/{ROOM}/presence/stats", headers={"Authorization": f"Bearer {reader}"})
        assert stats.json() == {"channel": ROOM, "clients": 3, "users": 2}


async def test_a_pod_restarted_under_its_name_removes_what_its_previous_process_left(
    fleet: tuple[RedisServer, GatewayProcess, GatewayProcess], keys: Keys
) -> None:
    """Pod A is killed and started again at once under the same name (a container restart, faster than the
    lease, so its record never looks stale): the new process removes the entries of the old one at its first
    heartbeat, announced as leaves, and keeps its own."""
    _, pod_a, pod_b = fleet
    reader = token(keys, "auditor")
    async with contextlib.AsyncExitStack() as stack, httpx.AsyncClient(base_url=pod_b.url, timeout=10) as http:
        watcher = await stack.enter_async_context(member(keys, pod_b, "dee", "dee-tab-0001"))
        async with member(keys, pod_a, "ann", "ann-tab-0001"):

            async def two() -> bool:
                return len(await present(http, ROOM, reader)) == 2

            await until(two, 10, "two present")
            await asyncio.to_thread(pod_a.kill)
        await asyncio.to_thread(pod_a.start)
        await stack.enter_async_context(member(keys, pod_a, "bob", "bob-tab-0001"))

        async def restarted() -> bool:
            return sorted(c["sub"] for c in await present(http, ROOM, reader)) == ["bob", "dee"]

        took = await until(restarted, LEASE, "the old process's entry gone, the new one's there")
        assert took < LEASE - 2  # not by the lease (the record never went stale): by the new process itself
        assert ("leave", "ann-tab-0001") in watcher.seen
