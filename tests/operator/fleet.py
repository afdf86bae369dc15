"""The pods' side of the contract, played by the tests: heartbeats written straight into Redis.

In production the gateway pods write these records (``fleetcast.contract.heartbeat``) every 2 s; here the test
writes them in exactly that schema, so the operator is tested against the contract rather than a pod.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis

from fleetcast.contract.commands import DRAIN, SHED, DrainCommand, ShedCommand
from fleetcast.contract.heartbeat import Heartbeat
from fleetcast.contract.keys import Keys
from tests.operator.harness import NAMESPACE


def beat(pod: str, connections: int, *, gateway: str = "edge", draining: bool = False, **extra: Any) -> Heartbeat:
    return Heartbeat(
        pod=pod,
        gateway=gateway,
        timestamp=time.time(),
        connections={"ws": connections // 2, "sse": connections - connections // 2},
        draining=draining,
        remaining=connections if draining else 0,
        **extra,
    )


async def report(client: Any, *heartbeats: Heartbeat, gateway: str = "edge", replace: bool = True) -> None:
    """Write heartbeats as the pods would; ``replace`` drops pods not listed (they exited)."""
    key = Keys(NAMESPACE, gateway).pods
    async with client.pipeline(transaction=True) as pipe:
        if replace:
            pipe.delete(key)
        for hb in heartbeats:
            pipe.hset(key, hb.pod, hb.to_json())
        await pipe.execute()


async def drain_commands(client: Any, gateway: str = "edge") -> list[DrainCommand]:
    entries = await client.xrange(Keys(NAMESPACE, gateway).control)
    return [DrainCommand.from_fields(fields) for _, fields in entries if fields.get("cmd") == DRAIN]


async def shed_commands(client: Any, gateway: str = "edge") -> list[ShedCommand]:
    entries = await client.xrange(Keys(NAMESPACE, gateway).control)
    return [ShedCommand.from_fields(fields) for _, fields in entries if fields.get("cmd") == SHED]


def connect(url: str) -> Any:
    return aioredis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
