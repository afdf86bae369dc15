"""Two pods on a real Redis Cluster (issue 19, acceptance 2): 3 masters + 3 replicas on loopback, 200 channels spread
over every master, WebSocket and multiplexed SSE subscribers on both pods, each getting every event in order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from fleetcast.contract.keys import Keys
from tests.support.clients import publish, ws_client, ws_recv, ws_send
from tests.support.cluster import RedisCluster, redis_cluster
from tests.support.gateway import QUICK_STOP, GatewayProcess, gateway
from tests.support.mux import MuxFrame, admin_client, mux_stream

CHANNELS = [f"room:c{i}" for i in range(200)]
PER_CHANNEL = 5
WS_BATCH = 100  # subscriptions one WebSocket may hold
SSE_BATCH = 50  # channels per multiplexed SSE stream (the pod's default cap is 64)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with redis_cluster() as instance:
        yield instance


@pytest.fixture(scope="module")
def fleet(cluster: RedisCluster) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    args = (*QUICK_STOP, "--anonymous", "--redis-mode", "cluster", "--redis-url", cluster.url)
    with gateway(*args, "--pod-name", "pod-a") as a, gateway(*args, "--pod-name", "pod-b") as b:
        yield a, b


@contextlib.asynccontextmanager
async def ws_subscriber(pod: GatewayProcess, channels: list[str], got: dict[str, list[int]]) -> AsyncIterator[None]:
    """One WebSocket on ``pod`` subscribed to ``channels``; events land in ``got`` until the block ends."""
    async with ws_client(pod.ws_url) as ws:
        for ref, channel in enumerate(channels):
            await ws_send(ws, op="subscribe", channel=channel, ref=ref)
        confirmed = 0
        while confirmed < len(channels):
            reply = await ws_recv(ws)
            assert reply["op"] == "subscribed", reply
            confirmed += 1

        async def read() -> None:
            while True:
                message = await ws_recv(ws, timeout=60)
                assert message["op"] == "event", message
                got[message["channel"]].append(message["data"]["n"])

        task = asyncio.create_task(read())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def sse_subscriber(pod: GatewayProcess, channels: list[str], got: dict[str, list[int]]) -> AsyncIterator[None]:
    """One multiplexed SSE stream on ``pod`` for ``channels``."""
    async with httpx.AsyncClient(base_url=pod.url, timeout=None) as client, mux_stream(client, channels) as stream:

        async def read() -> None:
            async for frame in stream.frames():
                take(frame)

        def take(frame: MuxFrame) -> None:
            assert frame.event == "message", frame
            got[frame.data["channel"]].append(frame.data["data"]["n"])

        task = asyncio.create_task(read())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def batches(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def test_two_pods_deliver_every_event_of_200_channels_spread_over_three_masters(
    cluster: RedisCluster, fleet: tuple[GatewayProcess, GatewayProcess]
) -> None:
    """Every subscriber (WS and SSE, on both pods) gets every event of each of its channels, in order, while
    backends publish through both pods; each master holds a share of the channels' streams, and the pod's
    metrics report each master up."""
    views: list[dict[str, list[int]]] = []
    async with contextlib.AsyncExitStack() as stack:
        for pod in fleet:
            ws_view: dict[str, list[int]] = {c: [] for c in CHANNELS}
            sse_view: dict[str, list[int]] = {c: [] for c in CHANNELS}
            views += [ws_view, sse_view]
            for part in batches(CHANNELS, WS_BATCH):
                await stack.enter_async_context(ws_subscriber(pod, part, ws_view))
            for part in batches(CHANNELS, SSE_BATCH):
                await stack.enter_async_context(sse_subscriber(pod, part, sse_view))
        async with (
            httpx.AsyncClient(base_url=fleet[0].url, timeout=10) as a,
            httpx.AsyncClient(base_url=fleet[1].url, timeout=10) as b,
        ):
            for n in range(PER_CHANNEL):
                via = a if n % 2 == 0 else b
                await asyncio.gather(*(publish(via, channel, {"n": n}) for channel in CHANNELS))
        async with asyncio.timeout(30):
            while not all(len(view[c]) >= PER_CHANNEL for view in views for c in CHANNELS):
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # nothing more (no duplicate) arrives
    expected = list(range(PER_CHANNEL))
    for index, view in enumerate(views):
        wrong = {c: got for c, got in view.items() if got != expected}
        assert not wrong, f"subscriber view {index}: {dict(list(wrong.items())[:3])}"
    async with admin_client(fleet[0]) as admin:
        metrics = (await admin.get("/metrics")).text
    for master in cluster.masters():
        assert f'fleetcast_redis_shard_up{{shard="{master.address}"}} 1.0' in metrics
    spread = streams_per_master(cluster)
    assert len(spread) == 3
    assert sum(spread.values()) == len(CHANNELS)
    assert all(count >= 30 for count in spread.values()), spread


def streams_per_master(cluster: RedisCluster) -> dict[int, int]:
    """Port of each master -> how many of the channels' streams it holds, by the servers' own word: the slot of
    each stream key (``CLUSTER KEYSLOT``) and ``CLUSTER COUNTKEYSINSLOT`` on the master serving it; each master's
    ``DBSIZE`` must cover what it serves."""
    keys = Keys("default", "default")
    probe = cluster.masters()[0]
    owners = cluster.slot_owners()
    counts: dict[int, int] = {}
    for channel in CHANNELS:
        slot = int(probe.cli("CLUSTER", "KEYSLOT", keys.stream(channel)))
        owner = owners[slot]
        assert int(owner.cli("CLUSTER", "COUNTKEYSINSLOT", str(slot))) >= 1, f"{channel}: no key in slot {slot}"
        counts[owner.port] = counts.get(owner.port, 0) + 1
    for master in cluster.masters():
        assert int(master.cli("DBSIZE")) >= counts.get(master.port, 0)
    return counts
