"""The cluster-in-a-box: every part a real cluster would have here, started together and stopped by PID.

Real: ``redis-server`` with AOF (fsync always), the operator (kopf) in its own thread, ``fleetcast serve`` pod
processes, the reference clients, Chromium. Emulated: the API server (kmock, from the operator tests'
harness), the ReplicaSet controller and kubelet (:mod:`tests.e2e.replicas`), the Service (:mod:`tests.e2e.service`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import kmock

from tests.e2e.replicas import DEPLOYMENTS, ReplicaController
from tests.e2e.service import Service
from tests.e2e.traffic import ClientFleet, Ledger, publish_forever, wait_until
from tests.operator.harness import GATEWAYS, NAMESPACE, create, current, emulator, new_object, running_operator
from tests.support.processes import RedisServer, redis_server

GATEWAY = "edge"
DEPLOYMENT = f"{GATEWAY}-gateway"


@dataclass(frozen=True)
class Knobs:
    """The Gateway's tuning for a run that fits in minutes (production defaults are minutes per step)."""

    target_per_pod: int = 40
    max_replicas: int = 3
    scale_down_stabilization: int = 5
    drain_rate: float = 5.0
    drain_timeout: int = 30
    reconnect_delay_ms: int = 100
    """The upper bound of a drained client's jittered ``after_ms``. At 100 ms every client waits exactly 100 ms
    (the jitter's floor), so the reconnects replay the drain's paced closes shifted by 100 ms, and "peak
    reconnects per second within the drain rate" checks the pacing itself rather than a random spread."""
    channels: int = 4
    publish_rate: float = 8.0
    """Events per second per channel."""
    rebalance: bool = True
    """``spec.rebalance.enabled``."""
    rebalance_budget: float = 100.0
    """``spec.rebalance.maxReconnectsPerSecond``."""
    rebalance_cooldown: int = 5

    def gateway(self, redis_url: str) -> dict[str, Any]:
        spec = {
            "image": "fleetcast:e2e",
            "redis": {"url": redis_url},
            "replicas": {"min": 1, "max": self.max_replicas},
            "autoscaling": {
                "targetConnectionsPerPod": self.target_per_pod,
                "scaleUp": {"stabilizationSeconds": 0},
                "scaleDown": {"stabilizationSeconds": self.scale_down_stabilization, "maxPodsPerStep": 2},
            },
            "drain": {
                "connectionsPerSecond": self.drain_rate,
                "timeoutSeconds": self.drain_timeout,
                "reconnectDelayMs": self.reconnect_delay_ms,
            },
            "rebalance": {
                "enabled": self.rebalance,
                "maxReconnectsPerSecond": self.rebalance_budget,
                "cooldownSeconds": self.rebalance_cooldown,
            },
            # This scenario is about scaling and draining, with clients and a publisher that hold no
            # credentials: open the undeclared families (a Gateway is closed by default). Access control
            # through the operator is tests/operator/test_channel_access.py.
            "auth": {"defaultAnonymous": True},
        }
        return new_object("fleetcast.dev/v1alpha1", "Gateway", GATEWAY, spec)

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(f"e2e:c{i}" for i in range(self.channels))


@dataclass
class Cluster:
    k8s: kmock.KubernetesEmulator
    redis: RedisServer
    replicas: ReplicaController
    service: Service
    ledger: Ledger
    fleet: ClientFleet
    knobs: Knobs
    publishing: asyncio.Event
    publishers: list[asyncio.Task[None]]
    operator: contextlib.AsyncExitStack
    api_url: str

    async def restart_operator(self) -> None:
        """Stop the operator and start a new one (its memory is gone; what it recorded in status is not)."""
        await self.operator.aclose()
        self.operator = contextlib.AsyncExitStack()
        await self.operator.enter_async_context(running_operator(self.api_url, autoscale_interval=0.3))

    async def stop_publishing(self) -> None:
        """Stop the publishers (only at the end of a scenario: until then, publishing never stops)."""
        self.publishing.clear()
        await asyncio.gather(*self.publishers)

    def deployment_replicas(self) -> int | None:
        deployment = current(self.k8s, DEPLOYMENTS, DEPLOYMENT)
        return None if deployment is None else int(deployment["spec"]["replicas"])

    def gateway_status(self) -> dict[str, Any]:
        return dict((current(self.k8s, GATEWAYS, GATEWAY) or {}).get("status") or {})

    async def at_replicas(self, count: int, *, timeout: float, what: str) -> None:
        """Wait until the Deployment asks for ``count`` and exactly ``count`` pods serve, all of them ready."""

        def settled() -> bool:
            return (
                self.deployment_replicas() == count
                and len(self.replicas.serving) == count
                and len(self.replicas.ready) == count
                and all(run.gone for run in self.replicas.pods.values() if run.terminating)
            )

        await wait_until(settled, timeout=timeout, what=what, step=0.1)


@contextlib.asynccontextmanager
async def cluster(knobs: Knobs) -> AsyncIterator[Cluster]:
    """The whole box, up with one ready pod and publishers running; everything stopped when the block ends."""
    publishing = asyncio.Event()
    publishing.set()
    publishers: list[asyncio.Task[None]] = []
    with redis_server(appendonly=True) as redis:
        async with emulator() as (k8s, url), contextlib.AsyncExitStack() as operator:
            await operator.enter_async_context(running_operator(url, autoscale_interval=0.3))
            controller = ReplicaController(k8s, NAMESPACE, DEPLOYMENT)
            service = Service(lambda: [("127.0.0.1", run.process.port) for run in controller.ready])
            ledger = Ledger(knobs.channel_names)
            fleet = ClientFleet(service.url, service.ws_url, ledger)
            box = Cluster(k8s, redis, controller, service, ledger, fleet, knobs, publishing, publishers, operator, url)
            await service.start()
            controller.start()
            try:
                await create(k8s, GATEWAYS, knobs.gateway(redis.url))
                await box.at_replicas(1, timeout=30, what="the first pod ready")
                publishers += [
                    asyncio.create_task(
                        publish_forever(service.url, ledger, channel, knobs.publish_rate, publishing),
                        name=f"publisher {channel}",
                    )
                    for channel in knobs.channel_names
                ]
                yield box
            except BaseException:
                print(controller.logs())
                raise
            finally:
                publishing.clear()
                await asyncio.gather(*publishers, return_exceptions=True)
                await fleet.close_all()
                await controller.stop()
                await service.stop()
                await box.operator.aclose()
