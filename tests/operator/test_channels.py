"""Acceptance 2 and bad resources: a Channel's policy in Redis, its status, its removal; bad specs reported."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest

from fleetcast.contract.keys import Keys
from fleetcast.contract.policy import ChannelPolicy
from tests.operator import fleet
from tests.operator.harness import (
    CHANNELS,
    GATEWAYS,
    NAMESPACE,
    create,
    current,
    delete,
    eventually,
    new_object,
    running_operator,
)
from tests.support.processes import RedisServer

KEYS = Keys(NAMESPACE, "edge")
LONG = "room-" + "x" * 70
CHAT = {"history": {"maxEvents": 5000, "maxAge": "1h"}, "publish": {"fromClients": True}}


@pytest.fixture
async def client(redis: RedisServer) -> AsyncIterator[Any]:
    connection = fleet.connect(redis.url)
    try:
        yield connection
    finally:
        await connection.aclose()


def gateway(redis_url: str, **spec: Any) -> dict[str, Any]:
    return new_object(
        "fleetcast.dev/v1alpha1", "Gateway", "edge", {"image": "fleetcast:test", "redis": {"url": redis_url}, **spec}
    )


def condition(emulator: kmock.KubernetesEmulator, resource: str, name: str, kind: str = "Ready") -> dict[str, Any]:
    for item in ((current(emulator, resource, name) or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return {}


def events(emulator: kmock.KubernetesEmulator, reason: str) -> list[dict[str, Any]]:
    """Events the operator posted (kopf creates them through the API)."""
    return [
        r.data
        for r in emulator
        if r.action == kmock.action.CREATE and r.resource == "v1/events" and (r.data or {}).get("reason") == reason
    ]


async def test_channel_policy_written_ready_status_and_removed(
    k8s: tuple[kmock.KubernetesEmulator, str], redis: RedisServer, client: Any
) -> None:
    """The policy lands in the policies hash with a change notice, READY is True, status counts, delete removes it."""
    emulator, url = k8s
    notices = client.pubsub()
    await notices.subscribe(KEYS.policies_changed)
    try:
        async with running_operator(url):
            await create(emulator, GATEWAYS, gateway(redis.url))
            await create(emulator, CHANNELS, new_object("fleetcast.dev/v1alpha1", "Channel", "chat", CHAT))
            await create(emulator, CHANNELS, new_object("fleetcast.dev/v1alpha1", "Channel", "plain", {}))

            expected = ChannelPolicy.from_spec(CHAT).to_json()
            await eventually(lambda: client.hget(KEYS.policies, "chat"), what="chat policy in Redis")
            assert await client.hget(KEYS.policies, "chat") == expected
            await eventually(lambda: client.hget(KEYS.policies, "plain"), what="default policy in Redis")
            assert ChannelPolicy.from_json(await client.hget(KEYS.policies, "plain")) == ChannelPolicy()
            notice = await eventually(
                lambda: notices.get_message(ignore_subscribe_messages=True, timeout=0.1), what="a change notice"
            )
            assert notice["data"] in ("chat", "plain")
            await eventually(lambda: condition(emulator, CHANNELS, "chat").get("status") == "True", what="READY")

            # The pods' side: heartbeats with subscriptions, and events on two channels of the family.
            await fleet.report(
                client,
                fleet.beat("edge-a", 10, subscriptions={"chat": 4}, present={"chat": 2}),
                fleet.beat("edge-b", 5, subscriptions={"chat": 3}, present={"chat": 3, "other": 9}),
            )
            await client.xadd(KEYS.stream("chat"), {"data": "1"}, id="1700000000000-0")
            latest = await client.xadd(KEYS.stream("chat:room-42"), {"data": "2"}, id="1700000000001-0")

            def counted() -> bool:
                status = (current(emulator, CHANNELS, "chat") or {}).get("status") or {}
                return (
                    status.get("subscribers") == 7
                    and status.get("present") == 5
                    and status.get("streamLength") == 2
                    and status.get("latestId") == latest
                )

            await eventually(counted, what="subscribers, present clients, stream length and latest id in status")
            for _ in range(3):
                await client.xadd(KEYS.stream("chat:room-42"), {"data": "x"})
            await eventually(
                lambda: ((current(emulator, CHANNELS, "chat") or {}).get("status") or {}).get("eventsPerSecond", 0) > 0,
                what="events/s from entries-added",
            )

            await delete(emulator, CHANNELS, "chat")
            await eventually(lambda: current(emulator, CHANNELS, "chat") is None, what="finalizer released")
            assert await client.hget(KEYS.policies, "chat") is None
            assert await client.hget(KEYS.policies, "plain") is not None
    finally:
        await notices.aclose()


async def test_bad_resources_get_a_condition_and_an_event_and_nothing_crashes(
    k8s: tuple[kmock.KubernetesEmulator, str], redis: RedisServer, client: Any
) -> None:
    """Invalid Channel and Gateway specs: Ready=False with the reason, a Warning event, and the operator goes on."""
    emulator, url = k8s
    async with running_operator(url):
        await create(emulator, GATEWAYS, gateway(redis.url))
        # A valid Kubernetes name but not a channel family (longer than 63). Dotted names would be the other
        # case, but kmock's URL parser reads a dotted name as a resource reference.
        await create(emulator, CHANNELS, new_object("fleetcast.dev/v1alpha1", "Channel", LONG, {}))
        bad_policy = {"slowConsumer": {"policy": "teleport"}}
        await create(emulator, CHANNELS, new_object("fleetcast.dev/v1alpha1", "Channel", "odd", bad_policy))
        bad_gateway = gateway(redis.url, replicas={"min": 5, "max": 2})
        bad_gateway["metadata"]["name"] = "broken"
        await create(emulator, GATEWAYS, bad_gateway)

        for resource, name, text in (
            (CHANNELS, LONG, "not a channel family"),
            (CHANNELS, "odd", "slowConsumer.policy"),
            (GATEWAYS, "broken", "replicas.min"),
        ):
            found = await eventually(
                lambda r=resource, n=name: (
                    condition(emulator, r, n).get("status") == "False" and condition(emulator, r, n)
                ),
                what=f"Ready=False on {name}",
            )
            assert found["reason"] == "InvalidSpec"
            assert text in found["message"]
        await eventually(lambda: len(events(emulator, "InvalidSpec")) >= 3, what="three InvalidSpec events")
        assert all(e["type"] == "Warning" for e in events(emulator, "InvalidSpec"))

        # Still alive and serving: a good Channel after the bad ones gets its policy.
        await create(emulator, CHANNELS, new_object("fleetcast.dev/v1alpha1", "Channel", "fine", {}))
        await eventually(lambda: client.hget(KEYS.policies, "fine"), what="a good Channel served")
        assert await client.hget(KEYS.policies, "odd") is None
        assert current(emulator, "apps/v1/deployments", "broken-gateway") is None
        await asyncio.sleep(0.5)
        assert len(events(emulator, "InvalidSpec")) == 3, "a bad spec is reported once, not in a retry loop"
