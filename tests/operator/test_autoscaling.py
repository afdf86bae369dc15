"""Acceptance 3 and 4: scale up on connections, drain the emptiest pods before scaling down, survive a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest

from tests.operator import fleet
from tests.operator.harness import GATEWAYS, create, current, eventually, new_object, running_operator
from tests.support.processes import RedisServer

DEPLOYMENTS, PODS = "apps/v1/deployments", "v1/pods"
COST = "controller.kubernetes.io/pod-deletion-cost"


@pytest.fixture
async def client(redis: RedisServer) -> AsyncIterator[Any]:
    connection = fleet.connect(redis.url)
    try:
        yield connection
    finally:
        await connection.aclose()


def gateway(redis_url: str, *, drain_timeout: int = 30) -> dict[str, Any]:
    spec = {
        "image": "fleetcast:test",
        "redis": {"url": redis_url},
        "replicas": {"min": 1, "max": 5},
        "autoscaling": {"targetConnectionsPerPod": 5000, "scaleDown": {"stabilizationSeconds": 2, "maxPodsPerStep": 2}},
        "drain": {"timeoutSeconds": drain_timeout, "connectionsPerSecond": 100},
    }
    return new_object("fleetcast.dev/v1alpha1", "Gateway", "edge", spec)


def replicas(emulator: kmock.KubernetesEmulator) -> int | None:
    deployment = current(emulator, DEPLOYMENTS, "edge-gateway")
    return None if deployment is None else int(deployment["spec"]["replicas"])


def replica_history(emulator: kmock.KubernetesEmulator) -> list[int]:
    """Every distinct replica count the Deployment went through, in order."""
    seen: list[int] = []
    for version in emulator.objects[DEPLOYMENTS, "realtime", "edge-gateway"].history:
        if version is not None and (not seen or seen[-1] != version["spec"]["replicas"]):
            seen.append(version["spec"]["replicas"])
    return seen


def scale_down(emulator: kmock.KubernetesEmulator) -> dict[str, Any] | None:
    return ((current(emulator, GATEWAYS, "edge") or {}).get("status") or {}).get("scaleDown")


async def scale_to_three(emulator: kmock.KubernetesEmulator, client: Any, redis_url: str, **spec: Any) -> None:
    """Gateway at 1 replica, then 12,000 connections on its pod: 3 replicas; then 3 pods exist and report."""
    await create(emulator, GATEWAYS, gateway(redis_url, **spec))
    await eventually(lambda: replicas(emulator) == 1, what="Deployment at replicas.min")
    await fleet.report(client, fleet.beat("edge-a", 12_000))
    await eventually(lambda: replicas(emulator) == 3, what="scale-up to 3")
    for pod in ("edge-a", "edge-b", "edge-c"):
        await create(emulator, PODS, new_object("v1", "Pod", pod, {"containers": []}))


async def test_scale_up_then_drain_then_scale_down(
    k8s: tuple[kmock.KubernetesEmulator, str], redis: RedisServer, client: Any
) -> None:
    """12,000 connections at 5,000 per pod: 3; at 2,000 the two emptiest drain, and only then replicas become 1."""
    emulator, url = k8s
    async with running_operator(url):
        await scale_to_three(emulator, client, redis.url)
        busy, light, lighter = fleet.beat("edge-a", 1500), fleet.beat("edge-b", 300), fleet.beat("edge-c", 200)
        await fleet.report(client, busy, light, lighter)

        plan = await eventually(lambda: scale_down(emulator), what="a scale-down plan", timeout=10)
        await eventually(lambda: scale_down(emulator)["phase"] == "Draining", what="drain commands sent")
        assert sorted(p["name"] for p in plan["pods"]) == ["edge-b", "edge-c"]
        commands = await fleet.drain_commands(client)
        assert sorted(c.pod for c in commands) == ["edge-b", "edge-c"]
        assert all(c.connections_per_second == 100 and c.timeout_seconds == 30 for c in commands)
        assert current(emulator, PODS, "edge-b")["metadata"]["annotations"][COST] == "-1000"
        assert current(emulator, PODS, "edge-c")["metadata"]["annotations"][COST] == "-1000"
        assert COST not in (current(emulator, PODS, "edge-a")["metadata"].get("annotations") or {})

        # Draining, not empty yet: the replicas must not move however long it takes.
        await fleet.report(
            client, busy, fleet.beat("edge-b", 120, draining=True), fleet.beat("edge-c", 0, draining=True)
        )
        await asyncio.sleep(1.0)
        assert replicas(emulator) == 3

        await fleet.report(client, busy, fleet.beat("edge-b", 0, draining=True), fleet.beat("edge-c", 0, draining=True))
        await eventually(lambda: replicas(emulator) == 1, what="scale-down to 1 after the drain")
        await eventually(lambda: scale_down(emulator) is None, what="the plan cleared")

    status = current(emulator, GATEWAYS, "edge")["status"]
    assert status["lastScaleTime"]
    assert replica_history(emulator) == [1, 3, 1]
    assert len(await fleet.drain_commands(client)) == 2


async def test_restart_mid_scale_down_completes_it_once(
    k8s: tuple[kmock.KubernetesEmulator, str], redis: RedisServer, client: Any
) -> None:
    """An operator stopped while pods drain resumes from status: no second drain, one scale-down, no stuck pod."""
    emulator, url = k8s
    async with running_operator(url):
        await scale_to_three(emulator, client, redis.url)
        await fleet.report(client, fleet.beat("edge-a", 1500), fleet.beat("edge-b", 300), fleet.beat("edge-c", 200))
        await eventually(lambda: (scale_down(emulator) or {}).get("phase") == "Draining", what="drain commands sent")

    # The operator is gone; the pods finish draining meanwhile (edge-c even exits and leaves the registry).
    await fleet.report(client, fleet.beat("edge-a", 1500), fleet.beat("edge-b", 0, draining=True))
    assert replicas(emulator) == 3

    async with running_operator(url):
        await eventually(lambda: replicas(emulator) == 1, what="scale-down completed after the restart")
        await eventually(lambda: scale_down(emulator) is None, what="the plan cleared")
        await asyncio.sleep(1.0)  # a few more autoscaler steps: nothing may happen twice
        assert replicas(emulator) == 1

    assert replica_history(emulator) == [1, 3, 1]
    assert sorted(c.pod for c in await fleet.drain_commands(client)) == ["edge-b", "edge-c"]


async def test_restart_with_pods_that_never_empty_ends_at_the_deadline(
    k8s: tuple[kmock.KubernetesEmulator, str], redis: RedisServer, client: Any
) -> None:
    """A pod that never reports empty does not hold the scale-down forever: the deadline ends it, once."""
    emulator, url = k8s
    async with running_operator(url):
        await scale_to_three(emulator, client, redis.url, drain_timeout=1)
        await fleet.report(client, fleet.beat("edge-a", 1500), fleet.beat("edge-b", 300), fleet.beat("edge-c", 200))
        await eventually(lambda: (scale_down(emulator) or {}).get("phase") == "Draining", what="drain commands sent")

    stuck = (
        fleet.beat("edge-a", 1500),
        fleet.beat("edge-b", 50, draining=True),
        fleet.beat("edge-c", 50, draining=True),
    )
    async with running_operator(url):

        async def stuck_and_scaled() -> bool:
            await fleet.report(client, *stuck)  # keep the stuck pods' heartbeats fresh
            return replicas(emulator) == 1

        await eventually(stuck_and_scaled, what="scale-down at the deadline", timeout=12)
        status = current(emulator, GATEWAYS, "edge")["status"]
        await eventually(lambda: scale_down(emulator) is None, what="the plan cleared")

    assert replica_history(emulator) == [1, 3, 1]
    assert len(await fleet.drain_commands(client)) == 2
    assert status["replicas"] in (1, 3)
