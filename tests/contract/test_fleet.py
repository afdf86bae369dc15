"""The fleet on Redis: heartbeats as the operator reads them, drain commands to one pod, policies and changes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis.asyncio

from fleetcast.broker.fleet import MemoryFleet
from fleetcast.broker.redis_fleet import RedisFleet
from fleetcast.contract.commands import Command, DrainCommand, ShedCommand
from fleetcast.contract.heartbeat import SCHEMA, Heartbeat
from fleetcast.contract.keys import Keys
from fleetcast.contract.policy import ChannelPolicy
from tests.support.processes import RedisServer, redis_server


class Inbox:
    """Collects what a fleet's callbacks receive and lets a test wait for it."""

    def __init__(self) -> None:
        self.commands: list[Command] = []
        self.changes: list[str | None] = []
        self.changed = asyncio.Event()

    def command(self, command: Command) -> None:
        self.commands.append(command)
        self.changed.set()

    def policy(self, family: str | None) -> None:
        self.changes.append(family)
        self.changed.set()

    async def wait(self, condition: Callable[[], object], timeout: float = 3.0) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server() as instance:
        yield instance


@pytest.fixture
async def raw(server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client, standing in for the operator."""
    client = redis.asyncio.Redis.from_url(server.url, decode_responses=True)
    yield client
    await client.aclose()


async def started(url: str, gateway: str, pod: str, inbox: Inbox) -> RedisFleet:
    fleet = RedisFleet(url, gateway=gateway, pod=pod, timeout=1.0)
    await fleet.start(on_command=inbox.command, on_policy_change=inbox.policy)
    return fleet


async def test_heartbeat_is_visible_with_the_documented_schema(server: RedisServer, raw: redis.asyncio.Redis) -> None:
    """A written heartbeat is in Keys(namespace, gateway).pods under the pod's name, as Heartbeat JSON, within 3 s."""
    fleet = await started(server.url, "gw-hb", "pod-a", Inbox())
    try:
        began = time.monotonic()
        heartbeat = Heartbeat(pod="pod-a", gateway="gw-hb", timestamp=time.time(), connections={"ws": 3, "sse": 1})
        await fleet.write_heartbeat(heartbeat)
        record = await raw.hget(Keys("default", "gw-hb").pods, "pod-a")
        assert time.monotonic() - began < 3
        assert record is not None
        assert json.loads(record)["schema"] == SCHEMA
        assert Heartbeat.from_json(record) == heartbeat
        assert await fleet.heartbeats() == {"pod-a": heartbeat}
        await fleet.remove_heartbeat("pod-a")
        assert await raw.hget(Keys("default", "gw-hb").pods, "pod-a") is None
    finally:
        await fleet.close()


async def test_drain_command_reaches_the_addressed_pod_only(server: RedisServer, raw: redis.asyncio.Redis) -> None:
    """A drain command on the control stream reaches its pod once; other pods and other gateways see nothing."""
    await raw.xadd(Keys("default", "gw-cmd").control, DrainCommand(pod="pod-a").to_fields())  # before start: not for us
    inbox_a, inbox_b, inbox_other = Inbox(), Inbox(), Inbox()
    fleets = [
        await started(server.url, "gw-cmd", "pod-a", inbox_a),
        await started(server.url, "gw-cmd", "pod-b", inbox_b),
        await started(server.url, "gw-other", "pod-a", inbox_other),
    ]
    try:
        await raw.xadd(Keys("default", "gw-cmd").control, {"cmd": "rebalance", "pod": "pod-a"})  # unknown: ignored
        malformed = {"cmd": "shed", "pod": "pod-a", "count": "many"}
        await raw.xadd(Keys("default", "gw-cmd").control, malformed)
        shed = ShedCommand(pod="pod-a", count=12, round="r7", connections_per_second=30.0)
        await raw.xadd(Keys("default", "gw-cmd").control, shed.to_fields())
        command = DrainCommand(pod="pod-a", connections_per_second=50.0, timeout_seconds=30.0, exit=True)
        await raw.xadd(Keys("default", "gw-cmd").control, command.to_fields())
        await inbox_a.wait(lambda: len(inbox_a.commands) >= 2)
        await asyncio.sleep(0.3)
        assert inbox_a.commands == [shed, command]
        assert inbox_b.commands == []
        assert inbox_other.commands == []
    finally:
        for fleet in fleets:
            await fleet.close()


async def test_commands_sent_during_an_outage_of_the_listener_arrive(raw: redis.asyncio.Redis) -> None:
    """After Redis restarts (AOF), the listener continues from the last command it saw."""
    with redis_server(appendonly=True) as server:
        inbox = Inbox()
        fleet = await started(server.url, "gw", "pod-a", inbox)
        try:
            await asyncio.to_thread(server.restart)
            client = redis.asyncio.Redis.from_url(server.url)
            await client.xadd(Keys("default", "gw").control, DrainCommand(pod="pod-a").to_fields())
            await client.aclose()
            await inbox.wait(lambda: inbox.commands, timeout=8.0)
            assert inbox.commands == [DrainCommand(pod="pod-a")]
        finally:
            await fleet.close()


async def test_policies_round_trip_and_announce_changes(server: RedisServer, raw: redis.asyncio.Redis) -> None:
    """set_policy stores the policy JSON in the Gateway's policies hash and announces the family; every pod hears it."""
    inbox = Inbox()
    listener = await started(server.url, "gw-pol", "pod-a", inbox)
    writer = RedisFleet(server.url, gateway="gw-pol", pod="cli")
    try:
        await asyncio.sleep(0.2)  # the subscription is in place
        policy = ChannelPolicy(history_max_events=50, history_max_age=3600.0, slow_consumer="dropOldest")
        await writer.set_policy("chat", policy)
        await inbox.wait(lambda: "chat" in inbox.changes)
        assert (await listener.policies())["chat"] == policy
        assert ChannelPolicy.from_json(await raw.hget(Keys("default", "gw-pol").policies, "chat") or "") == policy
        await raw.hset(Keys("default", "gw-pol").policies, "broken", "{not json")
        assert set(await listener.policies()) == {"chat"}
        await writer.delete_policy("chat")
        await inbox.wait(lambda: inbox.changes.count("chat") == 2)
        assert "chat" not in await listener.policies()
    finally:
        await raw.hdel(Keys("default", "gw-pol").policies, "broken")
        await writer.close()
        await listener.close()


async def test_memory_fleet_keeps_the_same_promises() -> None:
    """The embedded fleet stores heartbeats and policies, announces changes and drops other pods' commands."""
    inbox = Inbox()
    fleet = MemoryFleet(gateway="gw", pod="local")
    await fleet.start(on_command=inbox.command, on_policy_change=inbox.policy)
    heartbeat = Heartbeat(pod="local", gateway="gw", timestamp=time.time())
    await fleet.write_heartbeat(heartbeat)
    assert await fleet.heartbeats() == {"local": heartbeat}
    await fleet.set_policy("chat", ChannelPolicy(history_max_events=5))
    assert inbox.changes == ["chat"]
    assert (await fleet.policies())["chat"].history_max_events == 5
    fleet.send(DrainCommand(pod="elsewhere"))
    fleet.send(DrainCommand(pod="local"))
    assert inbox.commands == [DrainCommand(pod="local")]
    await fleet.close()
