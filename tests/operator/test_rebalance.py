"""Rebalance (issue 17) with the real kopf runtime, kmock and a real Redis: the operator sends ``shed`` to the hot
pod after a scale-up, records the round in ``status.rebalance``, explains it with Events, completes it once across
a restart, and never sheds while a scale-down drains or while the spread is within tolerance."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest

from tests.operator import fleet
from tests.operator.harness import GATEWAYS, create, current, eventually, new_object, running_operator
from tests.operator.test_channels import events
from tests.support.processes import RedisServer

DEPLOYMENTS, PODS = "apps/v1/deployments", "v1/pods"
PODS_ABC = ("edge-a", "edge-b", "edge-c")


@pytest.fixture
async def client(redis: RedisServer) -> AsyncIterator[Any]:
    connection = fleet.connect(redis.url)
    try:
        yield connection
    finally:
        await connection.aclose()


def gateway(redis_url: str, **rebalance: Any) -> dict[str, Any]:
    """Three replicas whatever the load (so only the rebalancer acts), 100 clients per pod."""
    spec = {
        "image": "fleetcast:test",
        "redis": {"url": redis_url},
        "replicas": {"min": 3, "max": 3},
        "autoscaling": {"targetConnectionsPerPod": 100},
        "rebalance": {"cooldownSeconds": 1, **rebalance},
    }
    return new_object("fleetcast.dev/v1alpha1", "Gateway", "edge", spec)


def record(emulator: kmock.KubernetesEmulator) -> dict[str, Any] | None:
    return ((current(emulator, GATEWAYS, "edge") or {}).get("status") or {}).get("rebalance")


def phase(emulator: kmock.KubernetesEmulator) -> str | None:
    return (record(emulator) or {}).get("phase")


async def three_pods(emulator: kmock.KubernetesEmulator, redis_url: str, **rebalance: Any) -> None:
    await create(emulator, GATEWAYS, gateway(redis_url, **rebalance))
    await eventually(lambda: current(emulator, DEPLOYMENTS, "edge-gateway"), what="the Deployment")
    for pod in PODS_ABC:
        await create(emulator, PODS, new_object("v1", "Pod", pod, {"containers": []}))


async def test_a_hot_pod_after_a_scale_up_sheds_once_and_the_round_is_recorded(
    k8s: tuple[kmock.KubernetesEmulator, str], redis: RedisServer, client: Any
) -> None:
    """300 clients on edge-a, two new empty pods: one shed of 300 to edge-a at its share of the budget, recorded
    and announced; when edge-a reports the round done the round is finished, and a balanced fleet is left alone."""
    emulator, url = k8s
    async with running_operator(url):
        await three_pods(emulator, redis.url, maxReconnectsPerSecond=50)
        await fleet.report(client, fleet.beat("edge-a", 300), fleet.beat("edge-b", 0), fleet.beat("edge-c", 0))
        await eventually(lambda: phase(emulator) == "Shedding", what="a round with its command sent")
        (command,) = await fleet.shed_commands(client)
        plan = record(emulator)
        assert plan is not None
        assert (command.pod, command.count, command.round) == ("edge-a", 300, plan["round"])
        assert command.connections_per_second is not None
        assert command.connections_per_second <= 50 * 0.85
        assert [p["name"] for p in plan["pods"]] == ["edge-a"]
        (started,) = await eventually(lambda: events(emulator, "Rebalancing"), what="a Rebalancing event")
        assert "edge-a 300 -> sheds 300" in started["message"]
        assert started["involvedObject"]["kind"] == "Gateway"

        # The pod sheds: the round waits, whatever the spread says meanwhile.
        shedding = fleet.beat("edge-a", 200, shedding=True, shed_remaining=150, shed_round=plan["round"])
        await fleet.report(client, shedding, fleet.beat("edge-b", 50), fleet.beat("edge-c", 50))
        await asyncio.sleep(1.0)
        assert phase(emulator) == "Shedding"
        assert len(await fleet.shed_commands(client)) == 1

        done = fleet.beat("edge-a", 100, shed_round=plan["round"])
        await fleet.report(client, done, fleet.beat("edge-b", 95), fleet.beat("edge-c", 105))
        await eventually(lambda: phase(emulator) == "Finished", what="the round finished")
        assert record(emulator)["outcome"] == "Shed"  # type: ignore[index]
        await eventually(lambda: events(emulator, "Rebalanced"), what="a Rebalanced event")
        await asyncio.sleep(2.0)  # past the cool-down, a balanced fleet: nothing more
        assert len(await fleet.shed_commands(client)) == 1


async def test_restart_mid_rebalance_completes_it_once(
    k8s: tuple[kmock.KubernetesEmulator, str], redis: RedisServer, client: Any
) -> None:
    """An operator stopped while a round runs resumes it from status: no second command, one finish."""
    emulator, url = k8s
    async with running_operator(url):
        await three_pods(emulator, redis.url)
        await fleet.report(client, fleet.beat("edge-a", 300), fleet.beat("edge-b", 0), fleet.beat("edge-c", 0))
        await eventually(lambda: phase(emulator) == "Shedding", what="a round with its command sent")
    plan = record(emulator)
    assert plan is not None
    # The operator is gone; the pod sheds meanwhile, and heartbeats still show a spread outside tolerance.
    mid = fleet.beat("edge-a", 180, shedding=True, shed_remaining=100, shed_round=plan["round"])
    await fleet.report(client, mid, fleet.beat("edge-b", 60), fleet.beat("edge-c", 60))
    async with running_operator(url):
        await asyncio.sleep(1.0)  # a few autoscaler steps: the round is followed, not restarted
        assert phase(emulator) == "Shedding"
        assert record(emulator)["round"] == plan["round"]  # type: ignore[index]
        done = fleet.beat("edge-a", 105, shed_round=plan["round"])
        await fleet.report(client, done, fleet.beat("edge-b", 100), fleet.beat("edge-c", 95))
        await eventually(lambda: phase(emulator) == "Finished", what="the round finished after the restart")
        await asyncio.sleep(1.5)
    assert len(await fleet.shed_commands(client)) == 1
    assert len(events(emulator, "Rebalanced")) == 1


async def test_a_round_recorded_but_not_sent_is_sent_after_a_restart(
    k8s: tuple[kmock.KubernetesEmulator, str], redis: RedisServer, client: Any
) -> None:
    """The operator stopped between recording a round and sending its command: the next one sends it, once."""
    emulator, url = k8s
    async with running_operator(url):
        await three_pods(emulator, redis.url, enabled=False)  # no round of its own meanwhile
        await fleet.report(client, fleet.beat("edge-a", 300), fleet.beat("edge-b", 0), fleet.beat("edge-c", 0))
        planned = {"round": "r1", "pods": [{"name": "edge-a", "count": 300, "rate": 90.0, "command": None}],
                   "mean": 100.0, "deadline": 4e9, "started": "2026-01-01T00:00:00Z", "finishedAt": None,
                   "outcome": "", "phase": "Planned"}  # fmt: skip
        async with emulator.patch(
            "/apis/fleetcast.dev/v1alpha1/namespaces/realtime/gateways/edge/status",
            json={"status": {"rebalance": planned}},
            headers={"Content-Type": "application/merge-patch+json"},
        ) as response:
            assert response.status < 300
        await eventually(lambda: phase(emulator) == "Shedding", what="the recorded command sent")
        await asyncio.sleep(1.0)
    (command,) = await fleet.shed_commands(client)
    assert (command.pod, command.count, command.round, command.connections_per_second) == ("edge-a", 300, "r1", 90.0)


async def test_no_shed_while_a_scale_down_drains_or_when_the_spread_is_within_tolerance(
    k8s: tuple[kmock.KubernetesEmulator, str], redis: RedisServer, client: Any
) -> None:
    """A pod draining (a scale-down's or its own) holds the rebalancer back however uneven the rest; a steady
    spread within 20 % never sheds, step after step."""
    emulator, url = k8s
    async with running_operator(url):
        await three_pods(emulator, redis.url)
        drained = fleet.beat("edge-c", 80, draining=True)
        await fleet.report(client, fleet.beat("edge-a", 300), fleet.beat("edge-b", 0), drained)
        await asyncio.sleep(2.0)  # about 6 autoscaler steps
        assert await fleet.shed_commands(client) == []
        assert record(emulator) is None
        for _ in range(4):
            await fleet.report(client, fleet.beat("edge-a", 110), fleet.beat("edge-b", 92), fleet.beat("edge-c", 98))
            await asyncio.sleep(0.5)
        assert await fleet.shed_commands(client) == []
        assert record(emulator) is None
        assert events(emulator, "Rebalancing") == []
