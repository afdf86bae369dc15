"""``wait_replicas`` on one Redis with a replica (issue 19): a publish is acknowledged only once the replica holds it;
without the replica it is refused as unavailable, and a retry with the same idempotency key returns its id."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from fleetcast.broker.base import Retention
from fleetcast.broker.redis_streams import RedisStreamsBroker
from fleetcast.errors import BrokerUnavailable
from tests.support.processes import RedisServer, redis_server

KEEP = Retention(max_events=None)


def attach(replica: RedisServer, master: RedisServer) -> None:
    """Make ``replica`` replicate ``master`` and wait until the master counts it online (synced, acknowledging)."""
    subprocess.run(["redis-cli", "-p", str(replica.port), "REPLICAOF", "127.0.0.1", str(master.port)],
                   check=True, capture_output=True, timeout=10)  # fmt: skip
    deadline = time.monotonic() + 10
    while "state=online" not in subprocess.run(["redis-cli", "-p", str(master.port), "INFO", "replication"],
                                               capture_output=True, text=True, timeout=10).stdout:  # fmt: skip
        assert time.monotonic() < deadline, "the replica did not come online"
        time.sleep(0.05)


def replica_length(replica: RedisServer, key: str) -> int:
    out = subprocess.run(["redis-cli", "-p", str(replica.port), "XLEN", key], capture_output=True, text=True,
                         timeout=10, check=True)  # fmt: skip
    return int(out.stdout.strip())


async def test_a_publish_is_acknowledged_only_once_a_replica_holds_it() -> None:
    """With the replica linked, publishes succeed and the replica holds them; with it stopped, a publish raises
    BrokerUnavailable saying it was not confirmed (the pod stays ready); with it back, the same idempotency key
    returns the first id and appends nothing."""
    with redis_server() as master, redis_server() as replica:
        await asyncio.to_thread(attach, replica, master)
        broker = RedisStreamsBroker(master.url, timeout=2.0, wait_replicas=1)
        await broker.start(lambda channel, batch: None)
        try:
            first = await broker.publish("w:c1", b"1", "m", retention=KEEP)
            assert await asyncio.to_thread(replica_length, replica, "fc:default/default:{w:c1}:s") == 1
            await asyncio.to_thread(replica.stop)
            began = time.monotonic()
            with pytest.raises(BrokerUnavailable, match="not acknowledged"):
                await broker.publish("w:c1", b"2", "m", retention=KEEP, idempotency_key="k2")
            assert time.monotonic() - began < 2.0, "the WAIT is bounded inside the timeout"
            assert broker.ready, "an unconfirmed publish is not an outage"
            history = await broker.read("w:c1", first, 10)
            assert [e.data for e in history.events] == [b"2"], "the event was appended, just not acknowledged"
            await asyncio.to_thread(replica.start)
            await asyncio.to_thread(attach, replica, master)
            again = await broker.publish("w:c1", b"2", "m", retention=KEEP, idempotency_key="k2")
            assert again == history.events[0].id
            assert (await broker.info("w:c1")).length == 2
        finally:
            await broker.close()
