"""A slot moving between masters of a real Redis Cluster while a pod publishes and a client listens (issue 19):
redirects (``ASK`` during the migration, ``MOVED`` after) never reach the backend as errors it must handle
differently from a brief 503, and the pod's live reader follows the channel to its new master."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import httpx
import pytest

from fleetcast.contract.keys import Keys
from tests.support.clients import ws_client, ws_recv, ws_send
from tests.support.cluster import RedisCluster, redis_cluster
from tests.support.gateway import QUICK_STOP, gateway

CHANNEL = "moving:c1"


@pytest.fixture
def cluster() -> Iterator[RedisCluster]:
    with redis_cluster() as instance:
        yield instance


async def test_a_channel_whose_slot_moves_keeps_publishing_and_delivering(cluster: RedisCluster) -> None:
    """While the channel's slot migrates to another master, every acknowledged event reaches the subscriber once,
    in order, without a gap signal; afterwards the stream lives on the new master and the channel is ready."""
    keys = Keys("default", "default")
    probe = cluster.masters()[0]
    slot = int(probe.cli("CLUSTER", "KEYSLOT", keys.stream(CHANNEL)))
    source = cluster.slot_owners()[slot]
    target = next(m for m in cluster.masters() if m is not source)
    args = (*QUICK_STOP, "--anonymous", "--redis-mode", "cluster", "--redis-url", cluster.url)
    with gateway(*args) as pod:
        acked: list[int] = []
        refused = 0
        got: list[int] = []
        gaps: list[dict[str, object]] = []
        stop = asyncio.Event()
        async with ws_client(pod.ws_url) as ws, httpx.AsyncClient(base_url=pod.url, timeout=5) as client:
            await ws_send(ws, op="subscribe", channel=CHANNEL, ref=1)
            assert (await ws_recv(ws))["op"] == "subscribed"

            async def listen() -> None:
                while True:
                    message = await ws_recv(ws, timeout=60)
                    if message["op"] == "gap":
                        gaps.append(message)
                    else:
                        got.append(message["data"]["n"])

            async def publish() -> None:
                nonlocal refused
                n = 0
                while not stop.is_set():
                    response = await client.post(
                        f"/v1/channels/{CHANNEL}/events", json={"data": {"n": n}}, headers={"Idempotency-Key": str(n)}
                    )
                    if response.status_code == 201:
                        acked.append(n)
                        n += 1
                    else:
                        assert response.status_code == 503, response.text
                        refused += 1
                        await asyncio.sleep(0.02)

            reader = asyncio.create_task(listen())
            writer = asyncio.create_task(publish())
            await asyncio.sleep(1.0)
            moved_at = len(acked)
            await asyncio.to_thread(cluster.move_slot, slot, source, target)
            await asyncio.sleep(1.5)
            stop.set()
            await writer
            async with asyncio.timeout(10):
                while got[-1:] != acked[-1:]:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            ready = (await client.get("/readyz", params={"channel": CHANNEL})).status_code
    print(f"\n{len(acked)} acknowledged ({moved_at} before the move), {refused} refused with 503 meanwhile")
    assert len(acked) > moved_at + 10, "publishing went on after the slot moved"
    assert got == acked, "every acknowledged event once, in order"
    assert gaps == []
    assert int(target.cli("CLUSTER", "COUNTKEYSINSLOT", str(slot))) >= 1
    assert cluster.slot_owners()[slot] is target
    assert ready == 200
