"""Everything the operator reads from and writes to Redis: the only operator module importing ``redis``.

Keys and record formats come from :mod:`fleetcast.contract`: the pods' heartbeat hash, the policy hash and
its change notification, the gateway's control stream and the channels' streams, each of one Gateway
(:class:`fleetcast.contract.keys.Keys`: two Gateways on one Redis share nothing). Every call is bounded by
the client's socket timeouts, and every Redis failure becomes :class:`TemporaryFailure`, so callers retry on
their next tick instead of crashing. One client per Redis URL, shared by every Gateway using it and closed
when the operator stops.

On a Redis Cluster (a Gateway's ``spec.redis.mode: cluster``) the client is redis-py's cluster client: every key
above is one slot, so each command goes to the master serving it, and ``SCAN`` visits every master. The policy
write and its announcement are two commands there, in this order (redis-py will not put a pub/sub channel of
another slot into one MULTI): a pod that hears the announcement reads the new record. The announcement is a classic
``PUBLISH``, which a cluster forwards to every node, so a pod hears it on whichever node it subscribed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from fleetcast.contract.keys import Keys
from fleetcast.contract.policy import delete_commands, store_commands
from fleetcast.contract.redis_url import Mode, seed_nodes
from fleetcast_operator.channels.status import StreamStats, latest_of
from fleetcast_operator.errors import TemporaryFailure

TIMEOUT_SECONDS = 3.0
SCAN_LIMIT = 1000
"""At most this many ``family:*`` streams are summed per refresh: status must stay cheap on a busy Redis."""
CONTROL_MAXLEN = 1000
"""Commands are for the pods alive when sent; a short approximate tail is all the stream needs to keep."""


class FleetRedis:
    """One Redis, seen through the contract's keys."""

    def __init__(self, url: str, mode: Mode = "standalone") -> None:
        self.url = url
        self._client: Any
        self._cluster = mode == "cluster"
        if self._cluster:
            first, seeds = seed_nodes(url)
            self._client = RedisCluster.from_url(
                first,
                startup_nodes=[ClusterNode(host, port) for host, port in seeds[1:]],
                decode_responses=True,
                socket_timeout=TIMEOUT_SECONDS,
                socket_connect_timeout=TIMEOUT_SECONDS,
                require_full_coverage=False,
            )
        else:
            self._client = aioredis.Redis.from_url(
                url,
                decode_responses=True,
                socket_timeout=TIMEOUT_SECONDS,
                socket_connect_timeout=TIMEOUT_SECONDS,
            )

    async def close(self) -> None:
        await self._client.aclose()

    async def _run(self, commands: Sequence[Sequence[str]]) -> None:
        """A policy write and its announcement: one MULTI on one server, in order one by one on a cluster."""
        if self._cluster:
            for command in commands:
                await self._client.execute_command(*command)
            return
        async with self._client.pipeline(transaction=True) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            await pipe.execute()

    async def heartbeats(self, keys: Keys) -> dict[str, str]:
        """The raw pod registry of one gateway: pod name -> heartbeat JSON."""
        try:
            raw: dict[str, str] = await self._client.hgetall(keys.pods)
        except (RedisError, RedisClusterException) as exc:
            raise TemporaryFailure(f"Redis {self.url}: {exc}") from exc
        return raw

    async def put_policy(self, keys: Keys, family: str, policy_json: str) -> bool:
        """Store a family's policy for one Gateway and announce it when it changed; True when it did."""
        try:
            current = await self._client.hget(keys.policies, family)
            if current == policy_json:
                return False
            await self._run(store_commands(keys, family, policy_json))
        except (RedisError, RedisClusterException) as exc:
            raise TemporaryFailure(f"Redis {self.url}: {exc}") from exc
        return True

    async def drop_policy(self, keys: Keys, family: str) -> None:
        try:
            await self._run(delete_commands(keys, family))
        except (RedisError, RedisClusterException) as exc:
            raise TemporaryFailure(f"Redis {self.url}: {exc}") from exc

    async def send(self, keys: Keys, fields: dict[str, str]) -> str:
        """Append one command to the gateway's control stream; returns its id."""
        try:
            entry_id: str = await self._client.xadd(keys.control, fields, maxlen=CONTROL_MAXLEN, approximate=True)
        except (RedisError, RedisClusterException) as exc:
            raise TemporaryFailure(f"Redis {self.url}: {exc}") from exc
        return entry_id

    async def stream_stats(self, keys: Keys, family: str) -> StreamStats:
        """XINFO over the family's base stream and up to :data:`SCAN_LIMIT` of its ``family:*`` streams, of one
        Gateway."""
        names = [keys.stream(family)]
        truncated = False
        try:
            async for name in self._client.scan_iter(match=keys.stream(f"{family}:*"), count=500, _type="stream"):
                if len(names) > SCAN_LIMIT:
                    truncated = True
                    break
                names.append(name)
            length = added = streams = 0
            latest: list[str] = []
            for name in names:
                try:
                    info = await self._client.xinfo_stream(name)
                except RedisError as exc:
                    if "no such key" in str(exc).lower():
                        continue
                    raise
                streams += 1
                length += int(info.get("length", 0))
                added += int(info.get("entries-added", info.get("length", 0)))
                latest.append(str(info.get("last-generated-id", "0-0")))
        except (RedisError, RedisClusterException) as exc:
            raise TemporaryFailure(f"Redis {self.url}: {exc}") from exc
        return StreamStats(streams, length, added, latest_of(latest), truncated)


class RedisPool:
    """One :class:`FleetRedis` per URL and mode, created on first use; :meth:`close` closes them all."""

    def __init__(self) -> None:
        self._by_url: dict[tuple[str, Mode], FleetRedis] = {}

    def get(self, url: str, mode: Mode = "standalone") -> FleetRedis:
        if (url, mode) not in self._by_url:
            self._by_url[url, mode] = FleetRedis(url, mode)
        return self._by_url[url, mode]

    async def close(self) -> None:
        clients, self._by_url = list(self._by_url.values()), {}
        for fleet in clients:
            await fleet.close()
