"""Shed (rebalance, issue 17): a ready pod moves some of its clients to another pod, paced, and nobody loses an
event; the pod keeps serving. The controller alone is ``tests/unit/test_shed_controller.py``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import redis.asyncio

from fleetcast.broker.redis_fleet import RedisFleet
from fleetcast.client import SseClient, WsClient
from fleetcast.contract.commands import ShedCommand
from fleetcast.contract.keys import Keys
from tests.integration.test_drain import Recorder, publish_forever
from tests.support.gateway import QUICK_STOP, GatewayProcess, gateway
from tests.support.processes import RedisServer, redis_server

CHANNELS = ["shed:c0", "shed:c1", "shed:c2"]
CLIENTS = 60
SHED = 30
RATE = 20


@pytest.fixture
def fleet() -> Iterator[tuple[RedisServer, GatewayProcess, GatewayProcess]]:
    with redis_server() as redis_:
        common = ["--redis-url", redis_.url, "--drain-rate", str(RATE), "--drain-reconnect-delay-ms", "300",
                  *QUICK_STOP]  # fmt: skip
        with gateway(*common, "--pod-name", "a") as pod_a, gateway(*common, "--pod-name", "b") as pod_b:
            yield redis_, pod_a, pod_b


async def connections(pod: GatewayProcess) -> int:
    async with httpx.AsyncClient(base_url=pod.url, timeout=5) as public:
        counts: dict[str, int] = (await public.get("/readyz")).json()["connections"]
    return sum(counts.values())


async def test_shed_moves_half_the_clients_to_the_other_pod_without_loss(
    fleet: tuple[RedisServer, GatewayProcess, GatewayProcess],
) -> None:
    """Two pods; 60 clients (WS and SSE) on pod A over three channels; publishing never stops; pod A sheds 30 at
    20/s: 30 clients resume on pod B, 30 stay on A, every client's sequence is contiguous and duplicate-free, the
    closes are paced, and pod A stays ready throughout."""
    _, pod_a, pod_b = fleet
    recorders = [Recorder(CHANNELS[i % len(CHANNELS)]) for i in range(CLIENTS)]
    clients: list[WsClient | SseClient] = [
        WsClient([pod_a.ws_url, pod_b.ws_url], [r.channel], on_event=r)
        if i % 2 == 0
        else SseClient([pod_a.url, pod_b.url], r.channel, on_event=r)
        for i, r in enumerate(recorders)
    ]
    sent = dict.fromkeys(CHANNELS, 0)
    stop = asyncio.Event()
    publisher: asyncio.Task[None] | None = None
    try:
        for client in clients:
            client.start()
        async with asyncio.timeout(20):
            while await connections(pod_a) < CLIENTS:
                await asyncio.sleep(0.2)
        publisher = asyncio.create_task(publish_forever(pod_b.url, stop, sent, CHANNELS))
        await asyncio.sleep(0.5)
        async with (
            httpx.AsyncClient(base_url=pod_a.admin_url, headers=pod_a.admin_headers, timeout=5) as admin,
            httpx.AsyncClient(base_url=pod_a.url, timeout=5) as public,
        ):
            started = await admin.post("/internal/shed", params={"count": SHED})
            assert started.status_code == 202, started.text
            assert started.json()["shedding"] is True
            async with asyncio.timeout(15):
                while (status := (await admin.get("/internal/shed")).json())["shedding"]:
                    assert (await public.get("/readyz")).status_code == 200  # it stays ready
                    await asyncio.sleep(0.1)
            assert status["closed"] == SHED
            metrics = (await admin.get("/metrics")).text
            assert f"fleetcast_shed_closed_sessions_total {float(SHED)}" in metrics
            assert "fleetcast_shed_remaining_sessions 0.0" in metrics
        async with asyncio.timeout(15):
            while (await connections(pod_a), await connections(pod_b)) != (CLIENTS - SHED, SHED):
                await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)
        stop.set()
        await publisher
        async with asyncio.timeout(20):
            while any(len(r.seen) < sent[r.channel] for r in recorders):
                await asyncio.sleep(0.2)
        moved = 0
        for i, (recorder, client) in enumerate(zip(recorders, clients, strict=True)):
            assert recorder.seen == list(range(sent[recorder.channel])), f"client {i} lost or repeated events"
            assert (client.stats.duplicates, client.stats.gaps) == (0, 0)
            moved += client.url == client.urls[1]
        assert moved == SHED
    finally:
        stop.set()
        if publisher is not None:
            await asyncio.gather(publisher, return_exceptions=True)
        await asyncio.gather(*(client.close() for client in clients))
    pacing = status["pacing"]
    assert pacing["span_seconds"] >= (SHED - 1) / RATE - 0.3, pacing  # 30 at 20/s take at least about 1.5 s
    assert pacing["max_per_second"] <= RATE + 2, pacing


async def test_shed_command_reaches_the_pod_and_its_heartbeat_reports_it() -> None:
    """A ``shed`` on the control stream starts a shed; within 3 s the heartbeat says the pod sheds, how many are
    left and which round it took, while the pod stays ready; the same round sent again changes nothing."""
    with redis_server() as server, gateway(
        "--redis-url", server.url, "--pod-name", "hot", "--drain-rate", "2", *QUICK_STOP
    ) as pod:  # fmt: skip
        clients = [WsClient(pod.ws_url, ["shed:x"]) for _ in range(6)]
        fleet = RedisFleet(server.url, gateway="default", pod="observer")
        raw = redis.asyncio.Redis.from_url(server.url)
        try:
            for client in clients:
                client.start()
            async with asyncio.timeout(10):
                while await connections(pod) < 6:
                    await asyncio.sleep(0.1)
            command = ShedCommand(pod="hot", count=4, round="r1")
            await raw.xadd(Keys("default", "default").control, command.to_fields())
            async with asyncio.timeout(3):
                while True:
                    beat = (await fleet.heartbeats()).get("hot")
                    if beat is not None and beat.shedding and 0 < beat.shed_remaining < 4:
                        break
                    await asyncio.sleep(0.1)
            assert (beat.ready, beat.draining, beat.shed_round) == (True, False, "r1")
            await raw.xadd(Keys("default", "default").control, command.to_fields())  # sent again (an operator restart)
            async with asyncio.timeout(6):
                while (beat := (await fleet.heartbeats())["hot"]).shedding:
                    await asyncio.sleep(0.1)
            async with httpx.AsyncClient(base_url=pod.admin_url, headers=pod.admin_headers) as admin:
                assert (await admin.get("/internal/shed")).json()["closed"] == 4
        finally:
            await asyncio.gather(*(client.close() for client in clients))
            await fleet.close()
            await raw.aclose()


def test_shed_endpoint_needs_the_token_and_a_count_and_refuses_a_draining_pod() -> None:
    with gateway(*QUICK_STOP) as pod, httpx.Client(base_url=pod.admin_url, timeout=5) as admin:
        assert admin.post("/internal/shed", params={"count": "5"}).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert admin.post("/internal/shed", params={"count": "oops"}, headers=wrong).status_code == 403
        for bad in ({}, {"count": "-1"}, {"count": "oops"}, {"count": "5", "rate": "0"}, {"count": "5", "rate": "nan"}):
            answer = admin.post("/internal/shed", params=bad, headers=pod.admin_headers)
            assert answer.status_code == 400, (bad, answer.text)
            assert "must be a number" in answer.json()["error"]["message"]
        assert admin.post("/internal/shed", params={"count": "0"}, headers=pod.admin_headers).status_code == 202
        assert admin.post("/internal/drain?exit=false", headers=pod.admin_headers).status_code == 202
        refused = admin.post("/internal/shed", params={"count": "5"}, headers=pod.admin_headers)
        assert refused.status_code == 409
        assert "draining" in refused.json()["error"]["message"]
