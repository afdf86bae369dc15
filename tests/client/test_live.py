"""The reference client against real ``fleetcast serve`` processes: delivery, refusals, resume across a lost pod.

Cross-pod resume needs shared history, so those tests run two pods on one redis-server; a memory pod that is
killed and restarted has lost its history, and the client must say so with a gap.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from fleetcast.client import Event, Refused, RequestFailed, SseClient, Timeouts, WsClient
from tests.client.scripted import SleepRecorder
from tests.support.gateway import GatewayProcess, gateway
from tests.support.processes import RedisServer

FAST = Timeouts(open=3.0, idle=20.0, request=5.0, close=2.0)


@pytest.fixture(scope="module")
def pod() -> Iterator[GatewayProcess]:
    """A pod refusing every channel (strict, and no operator declares any)."""
    with gateway("--strict-channels") as running:
        yield running


@pytest.fixture(scope="module")
def open_pod() -> Iterator[GatewayProcess]:
    """A pod taking any channel."""
    with gateway() as running:
        yield running


class Publisher:
    """Publishes ``{"n": i}`` over HTTP, in order, and keeps the ids the server gave."""

    def __init__(self, base_url: str, channel: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=5)
        self.channel = channel
        self.ids: list[str] = []

    async def send(self, count: int, *, pause: float = 0.0, **extra: Any) -> None:
        for _ in range(count):
            response = await self.http.post(
                f"/v1/channels/{self.channel}/events", json={"data": {"n": len(self.ids), **extra}}
            )
            assert response.status_code == 201, response.text
            self.ids.append(response.json()["id"])
            if pause:
                await asyncio.sleep(pause)

    async def aclose(self) -> None:
        await self.http.aclose()


async def take(client: WsClient | SseClient, n: int, timeout: float = 15.0) -> list[Event]:
    async with asyncio.timeout(timeout):
        return [await anext(client) for _ in range(n)]


async def until(condition: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


# A pod with the embedded broker. `--strict-channels` refuses families no Channel declares: since no operator
# runs here, every channel is unknown to it, which is how these tests get real refusals.


async def test_ws_subscribe_to_an_unknown_channel_is_refused_with_the_servers_code(pod: GatewayProcess) -> None:
    """The server's error for a subscribe reaches the caller as RequestFailed; the channel is dropped."""
    async with WsClient(pod.ws_url, timeouts=FAST) as client:
        with pytest.raises(RequestFailed, match="no Channel resource declares") as caught:
            await client.subscribe("nobody-declared")
        assert caught.value.error_code == "unknown_channel"
        assert await client.ping() < 1.0
    assert client.failure is None


async def test_sse_404_is_terminal_with_the_servers_message(pod: GatewayProcess) -> None:
    """A 404 (unknown channel) stops the SSE client at once with the server's message; no retry."""
    sleeps = SleepRecorder()
    async with SseClient(pod.url, "nobody-declared", sleep=sleeps, timeouts=FAST) as client:
        with pytest.raises(Refused, match="no Channel resource declares") as caught:
            await asyncio.wait_for(client.wait_closed(), 5)
    assert (caught.value.http_status, caught.value.error_code) == (404, "unknown_channel")
    assert sleeps.delays == []


async def test_ws_and_sse_receive_events_and_ws_publishes(open_pod: GatewayProcess) -> None:
    """Both clients receive what is published, in order, with type and data; a WS publish returns its id."""
    pod = open_pod
    got_ws: list[Event] = []
    async with (
        WsClient(pod.ws_url, timeouts=FAST, on_event=got_ws.append) as ws,
        SseClient(pod.url, "news", timeouts=FAST) as sse,
    ):
        await ws.subscribe("news")
        await until(lambda: sse.stats.connects == 1)
        await asyncio.sleep(0.2)  # the SSE subscription registers after the 200
        ids = [await ws.publish("news", {"n": i}, type="headline") for i in range(5)]
        events = await take(sse, 5)
        await until(lambda: len(got_ws) == 5)
    assert [e.id for e in events] == ids == [e.id for e in got_ws]
    assert [(e.type, e.data) for e in events] == [("headline", {"n": i}) for i in range(5)]
    assert ws.last_ids == {"news": ids[-1]}
    assert sse.last_ids == {"news": ids[-1]}


async def test_ws_too_big_publish_is_refused_and_the_close_1009_is_terminal(open_pod: GatewayProcess) -> None:
    """An oversize publish gets an error and close 1009, which stops the client (retrying cannot help)."""
    async with WsClient(open_pod.ws_url, ["big"], timeouts=FAST) as client:
        with pytest.raises(RequestFailed) as caught:
            await client.publish("big", "x" * (1024 * 1024 + 10))
        assert caught.value.error_code == "payload_too_large"
        with pytest.raises(Refused) as stopped:
            await asyncio.wait_for(client.wait_closed(), 5)
        assert stopped.value.close_code == 1009


async def test_a_restarted_memory_pod_lost_history_and_both_clients_report_the_gap() -> None:
    """Kill and restart a memory pod: WS and SSE reconnect by themselves and call on_gap from their last id."""
    gaps: list[tuple[str, str, str, str | None]] = []
    with gateway() as pod:
        publisher = Publisher(pod.url, "ticker")
        try:
            async with (
                WsClient(pod.ws_url, ["ticker"], on_gap=lambda *g: gaps.append(("ws", *g)), timeouts=FAST) as ws,
                SseClient(pod.url, "ticker", on_gap=lambda *g: gaps.append(("sse", *g)), timeouts=FAST) as sse,
            ):
                await until(lambda: "ticker" in ws.subscriptions and sse.stats.connects == 1)
                await asyncio.sleep(0.2)
                await publisher.send(3)
                before = [e.id for e in await take(ws, 3)], [e.id for e in await take(sse, 3)]
                assert before == (publisher.ids, publisher.ids)
                pod.kill()
                await asyncio.to_thread(pod.start)  # same port, empty memory
                await until(lambda: len(gaps) == 2, timeout=15)
                assert sorted(gaps) == [
                    ("sse", "ticker", publisher.ids[-1], None),
                    ("ws", "ticker", publisher.ids[-1], None),
                ]
                await until(lambda: "ticker" in ws.subscriptions)
                await publisher.send(2)
                after = [e.id for e in await take(ws, 2)], [e.id for e in await take(sse, 2)]
                assert after == (publisher.ids[3:], publisher.ids[3:])
                assert (ws.stats.reconnects, ws.stats.gaps, sse.stats.gaps) == (1, 1, 1)
                assert sse.stats.reconnects >= 1
        finally:
            await publisher.aclose()


# Two pods on one redis-server: a client that loses its pod resumes on the other from its last id.


@pytest.fixture
async def fleet(redis: RedisServer) -> AsyncIterator[tuple[GatewayProcess, GatewayProcess]]:
    """Pod A (small outbox: a reader that stops reading is soon a slow consumer) and pod B, on one Redis.
    Both are stopped by PID, in parallel (a pod on Redis takes seconds to stop)."""
    a = GatewayProcess(args=["--redis-url", redis.url, "--outbox-max-bytes", "65536"])
    b = GatewayProcess(args=["--redis-url", redis.url])
    try:
        await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
        yield a, b
    except BaseException:
        print(f"--- pod A ---\n{a.log()[-3000:]}\n--- pod B ---\n{b.log()[-3000:]}")
        raise
    finally:
        await asyncio.gather(asyncio.to_thread(a.cleanup), asyncio.to_thread(b.cleanup))


@pytest.mark.redis
async def test_killed_pod_clients_resume_on_the_other_pod_contiguously(
    fleet: tuple[GatewayProcess, GatewayProcess],
) -> None:
    """While events flow, pod A is killed: WS and SSE clients move to pod B, no loss, no duplicate, no gap."""
    a, b = fleet
    publisher = Publisher(b.url, "scores")
    ws = WsClient([a.ws_url, b.ws_url], ["scores"], timeouts=FAST)
    sse = SseClient([a.url, b.url], "scores", timeouts=FAST)
    try:
        async with ws, sse:
            await until(lambda: "scores" in ws.subscriptions and sse.stats.connects == 1)
            await asyncio.sleep(0.2)
            flowing = asyncio.create_task(publisher.send(200, pause=0.005))
            await until(lambda: len(publisher.ids) >= 50)
            a.kill()
            await flowing
            ws_events, sse_events = await take(ws, 200), await take(sse, 200)
            assert [e.id for e in ws_events] == publisher.ids
            assert [e.id for e in sse_events] == publisher.ids
            assert ws.url == b.ws_url
            assert sse.url == b.url
            for client in (ws, sse):
                assert (client.stats.reconnects, client.stats.gaps, client.stats.duplicates) == (1, 0, 0)
    finally:
        await publisher.aclose()


@pytest.mark.redis
async def test_slow_consumer_close_resumes_on_the_other_pod_after_the_servers_after_ms(
    fleet: tuple[GatewayProcess, GatewayProcess],
) -> None:
    """A reader that stops reading fills pod A's outbox; A closes it (4108, reconnect after_ms); the client
    waits exactly after_ms, moves to pod B and the consumer still sees every event once, in order."""
    a, b = fleet
    publisher = Publisher(b.url, "firehose")
    sleeps = SleepRecorder()
    client = WsClient([a.ws_url, b.ws_url], ["firehose"], max_queue=1, sleep=sleeps, timeouts=FAST)
    try:
        async with client, httpx.AsyncClient(base_url=a.url) as http:
            await until(lambda: "firehose" in client.subscriptions)

            async def subscribers_on_a() -> int:
                info = (await http.get("/v1/channels/firehose")).json()
                return int(info["subscribers"])

            await publisher.send(150, pad="x" * 64 * 1024)
            async with asyncio.timeout(10):
                while await subscribers_on_a():
                    await asyncio.sleep(0.05)
            events = await take(client, 150, timeout=20)
        assert [e.id for e in events] == publisher.ids
        assert client.url == b.ws_url
        # The server's after_ms (core.backoff.server_delay_ms: 250 to 500 ms), slept as given, with no backoff added.
        assert len(sleeps.delays) == 1
        assert 0.25 <= sleeps.delays[0] <= 0.5
        assert (client.stats.reconnects, client.stats.gaps, client.stats.duplicates) == (1, 0, 0)
    finally:
        await publisher.aclose()
