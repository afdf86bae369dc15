"""Fixtures of the broker contract suite: every test runs against each broker kind.

Subscribers are the :class:`Collector` delivery callback: it records each batch as the hub would receive it.
The Redis broker runs with each live path (``redis`` is the default, notify; ``redis-xread`` the alternative)
and gets a real redis-server, shared by the module for the plain tests (each test uses channels
of its own) and a fresh one for the tests that stop or restart it. ``redis-cluster`` runs it in cluster mode on
a real 3-master, 3-replica Redis Cluster shared by the test session (no test of this suite stops a node).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import pytest

from fleetcast.broker.base import Broker, Event
from fleetcast.broker.memory import MemoryBroker
from fleetcast.broker.redis_streams import RedisStreamsBroker
from tests.support.cluster import RedisCluster
from tests.support.processes import RedisServer, redis_server

_names = itertools.count()


class Collector:
    """A Delivery callback that records every batch per channel and lets a test wait for a count."""

    def __init__(self) -> None:
        self.events: dict[str, list[Event]] = defaultdict(list)
        self.batches = 0
        self._changed = asyncio.Event()

    def __call__(self, channel: str, batch: Sequence[Event]) -> None:
        self.events[channel].extend(batch)
        self.batches += 1
        self._changed.set()

    async def wait_for(self, channel: str, count: int, *, timeout: float = 5.0) -> list[Event]:
        """Wait until ``count`` events of ``channel`` arrived; return them."""
        await self.wait_until(lambda: len(self.events[channel]) >= count, timeout=timeout)
        return self.events[channel]

    async def wait_until(self, condition: Callable[[], bool], *, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def channel() -> str:
    """A channel no other test of the run touches."""
    return f"test:c{next(_names)}"


@pytest.fixture(params=["memory", "redis", "redis-xread", "redis-cluster"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def collector() -> Collector:
    return Collector()


@pytest.fixture
async def broker(kind: str, request: pytest.FixtureRequest, collector: Collector) -> AsyncIterator[Broker]:
    """A started broker of the parametrized kind, delivering to ``collector``."""
    instance: Broker
    if kind == "memory":
        instance = MemoryBroker()
    elif kind == "redis-cluster":
        cluster: RedisCluster = request.getfixturevalue("shared_cluster")
        instance = RedisStreamsBroker(cluster.url, timeout=1.0, mode="cluster")
    else:
        server: RedisServer = request.getfixturevalue("shared_redis")
        instance = RedisStreamsBroker(server.url, timeout=1.0, live="xread" if kind == "redis-xread" else "notify")
    await instance.start(collector)
    try:
        yield instance
    finally:
        await instance.close()
