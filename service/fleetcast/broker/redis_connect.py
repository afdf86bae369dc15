"""How a pod reaches Redis: one server (``standalone``) or a Redis Cluster (``cluster``), behind one small interface.

A :class:`RedisTarget` offers what the broker and the fleet need and nothing else: a client for ordinary
commands (``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``, which routes every keyed command to
the slot's master and follows ``MOVED``/``ASK`` by itself), dedicated connections for blocking readers and
subscriptions, and the list of masters. Slot routing is always redis-py's: a dedicated connection "for a key" is
a connection to the node that redis-py's slot table names for that key.

In cluster mode ``--redis-url`` lists seed nodes in one URL, ``redis://[user:password@]host1:port1,host2:port2``
(``rediss://`` for TLS); any one reachable seed is enough, the rest of the topology is discovered. Connections
keep the standalone rules (:mod:`fleetcast.broker.redis_common`): bounded timeouts and no hidden retries. A
command that meets a dead master raises at once and marks the topology stale; the next command re-reads it, so
after a failover (a replica promoted) calls reach the new master without anybody restarting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import redis.asyncio
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import BlockingConnectionPool, Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from fleetcast.broker.redis_common import TRANSIENT, Client, dedicated_connection, make_client, make_pool, unavailable
from fleetcast.contract.redis_url import MODES, Mode, seed_nodes
from fleetcast.errors import BrokerUnavailable

log = logging.getLogger(__name__)


class RedisTarget:
    """One Redis deployment as the broker and the fleet see it. See the module docstring."""

    cluster: bool = False

    @property
    def client(self) -> Client:
        raise NotImplementedError

    def connection_for(self, key: str) -> Connection:
        """A new, unconnected connection (not pooled) to the node that serves ``key``."""
        raise NotImplementedError

    def node_of(self, key: str) -> str:
        """Name (``host:port``) of the node serving ``key``; raises BrokerUnavailable if none does now."""
        raise NotImplementedError

    def masters(self) -> list[str]:
        """Names of the nodes that take writes, as currently known."""
        raise NotImplementedError

    async def refresh(self) -> None:
        """Re-read the topology (cluster); raises BrokerUnavailable if no seed answers. Standalone: nothing."""

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the bounded in-flight command slots for a call; BrokerUnavailable after the timeout.
        Standalone: the blocking pool does this itself."""
        yield

    async def close(self) -> None:
        raise NotImplementedError


class Standalone(RedisTarget):
    """One Redis server (possibly behind a Sentinel-managed address): one pool, one client."""

    def __init__(self, url: str, *, timeout: float, max_connections: int) -> None:
        self.pool: BlockingConnectionPool = make_pool(url, timeout=timeout, max_connections=max_connections)
        self._client = make_client(self.pool)
        kwargs = self.pool.connection_kwargs
        self._name = f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"

    @property
    def client(self) -> redis.asyncio.Redis:
        return self._client

    def connection_for(self, key: str) -> Connection:
        return dedicated_connection(self.pool)

    def node_of(self, key: str) -> str:
        return self._name

    def masters(self) -> list[str]:
        return [self._name]

    async def close(self) -> None:
        await self._client.aclose()
        await self.pool.disconnect()


class Cluster(RedisTarget):
    """A Redis Cluster through redis-py's cluster client."""

    cluster = True

    def __init__(self, url: str, *, timeout: float, max_connections: int) -> None:
        first, seeds = seed_nodes(url)
        # redis-py's per-node pools refuse (MaxConnectionsError) rather than wait when full: callers wait here.
        self._timeout = timeout
        self._max_connections = max_connections
        self._in_flight = asyncio.Semaphore(max_connections)
        self._client = RedisCluster.from_url(
            first,
            startup_nodes=[ClusterNode(host, port) for host, port in seeds[1:]],
            # Each node's pool: bounded like the standalone pool (the cluster client has one per node).
            max_connections=max_connections,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # No hidden retries: a dead master answers BrokerUnavailable at once (the caller retries), and marks
            # the topology stale so the next command finds the promoted replica. MOVED/ASK are still followed.
            retry=Retry(NoBackoff(), 0),
            # Channels of a healthy shard keep working while another shard has no master at all.
            require_full_coverage=False,
            protocol=2,
        )

    @property
    def client(self) -> RedisCluster:
        return self._client

    def node(self, key: str) -> ClusterNode:
        """redis-py's node for ``key`` (to pin a command to the connection of another)."""
        return self._node(key)

    def _node(self, key: str) -> ClusterNode:
        with unavailable("cluster routing"):
            node = self._client.get_node_from_key(key)
        if node is None:
            raise BrokerUnavailable(f"cluster routing: no node serves {key!r}")
        return node

    def connection_for(self, key: str) -> Connection:
        node = self._node(key)
        conn: Connection = node.connection_class(**node.connection_kwargs)
        return conn

    def node_of(self, key: str) -> str:
        return self._node(key).name

    def connection_to(self, name: str) -> Connection:
        """A new, unconnected connection to the node named ``host:port`` (one of :meth:`masters`)."""
        node = self._client.get_node(node_name=name)
        if node is None:
            raise BrokerUnavailable(f"cluster node {name} is no longer known")
        conn: Connection = node.connection_class(**node.connection_kwargs)
        return conn

    def masters(self) -> list[str]:
        return [node.name for node in self._client.get_primaries()]

    async def refresh(self) -> None:
        with unavailable("cluster topology"):
            if self._client.nodes_manager.default_node is None:
                await self._client.initialize()  # never initialized yet: the client's own first set-up
            else:
                await self._client.nodes_manager.initialize()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._timeout):
                await self._in_flight.acquire()
        except TimeoutError:
            raise BrokerUnavailable(f"all {self._max_connections} Redis connections are busy") from None
        try:
            yield
        finally:
            self._in_flight.release()

    async def close(self) -> None:
        await self._client.aclose()


def connect(url: str, *, mode: Mode, timeout: float, max_connections: int) -> RedisTarget:
    """The target for ``mode``; a malformed URL raises ValueError naming the problem."""
    if mode == "cluster":
        return Cluster(url, timeout=timeout, max_connections=max_connections)
    if mode != "standalone":
        raise ValueError(f"Redis mode {mode!r} is not one of {', '.join(MODES)}")
    return Standalone(url, timeout=timeout, max_connections=max_connections)


__all__ = ["MODES", "TRANSIENT", "Client", "Cluster", "Mode", "RedisTarget", "Standalone", "connect", "seed_nodes"]
