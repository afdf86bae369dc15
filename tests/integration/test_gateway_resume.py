"""The gateway on the embedded broker, as a real process: delivery, exact resume, gaps (issue 2)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import httpx
import pytest

from tests.support.clients import collect_sse, publish, wait_subscribers, ws_client, ws_recv, ws_subscribe
from tests.support.gateway import GatewayProcess, gateway


@pytest.fixture(scope="module")
def pod() -> Iterator[GatewayProcess]:
    with gateway("--history-max-events", "5000") as running:
        yield running


async def publish_many(base_url: str, channel: str, n: int, start: int = 0) -> list[str]:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        return [await publish(client, channel, {"n": i}) for i in range(start, start + n)]


async def test_sse_subscriber_receives_a_published_event(pod: GatewayProcess) -> None:
    """A live SSE subscriber receives what an HTTP publish sends, with id, type and data."""
    task = asyncio.create_task(collect_sse(pod.url, "live-sse", count=1))
    await wait_subscribers(pod.url, "live-sse", 1)
    async with httpx.AsyncClient(base_url=pod.url) as client:
        event_id = await publish(client, "live-sse", {"n": 1}, type="update")
    frames = await task
    assert (frames[0].id, frames[0].event, frames[0].json()) == (event_id, "update", {"n": 1})


@pytest.mark.parametrize("k", [0, 4, 9])
async def test_sse_resume_from_event_k_gets_exactly_the_rest(pod: GatewayProcess, k: int) -> None:
    """Reconnecting with Last-Event-ID of event k yields exactly events k+1..n, in order."""
    channel = f"resume-sse:k{k}"
    ids = await publish_many(pod.url, channel, 10)
    task = asyncio.create_task(collect_sse(pod.url, channel, count=10 - k, last_event_id=ids[k]))
    await wait_subscribers(pod.url, channel, 1)
    live = await publish_many(pod.url, channel, 1, start=10)
    frames = await task
    assert [f.id for f in frames] == ids[k + 1 :] + live
    assert [f.json()["n"] for f in frames] == list(range(k + 1, 11))


@pytest.mark.parametrize("k", [0, 4, 9])
async def test_ws_resume_from_event_k_gets_exactly_the_rest(pod: GatewayProcess, k: int) -> None:
    """A WebSocket subscribe with since=<id of event k> yields exactly events k+1..n, then live ones."""
    channel = f"resume-ws:k{k}"
    ids = await publish_many(pod.url, channel, 10)
    async with ws_client(pod.ws_url) as ws:
        reply = await ws_subscribe(ws, channel, since=ids[k])
        assert reply["recovered"] is True
        assert reply["latest"] == ids[-1]
        got = [await ws_recv(ws) for _ in range(9 - k)]
        live = await publish_many(pod.url, channel, 1, start=10)
        got.append(await ws_recv(ws))
    assert [m["id"] for m in got] == ids[k + 1 :] + live
    assert all(m["op"] == "event" and m["channel"] == channel for m in got)


async def test_sse_first_load_resumes_from_query_parameter(pod: GatewayProcess) -> None:
    """``?lastEventId=`` resumes like the header does (a page's first load cannot set the header)."""
    ids = await publish_many(pod.url, "first-load", 3)
    url = f"/v1/channels/first-load/events?lastEventId={ids[0]}"
    async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client, client.stream("GET", url) as response:
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if body.count(b"\n\n") >= 3:
                break
    assert body.startswith(b"retry: ")
    assert f"id: {ids[1]}".encode() in body
    assert f"id: {ids[2]}".encode() in body
    assert f"id: {ids[0]}\n".encode() not in body


async def test_fifty_clients_resume_while_publishing(pod: GatewayProcess) -> None:
    """50 clients (half SSE, half WS) resume from random ids while 2,000 events are published: each ends with
    a contiguous, duplicate-free sequence."""
    channel = "busy:resume"
    total = 2000
    head = await publish_many(pod.url, channel, 200)
    rng = random.Random(7)

    async def sse_client(start: int) -> list[int]:
        frames = await collect_sse(pod.url, channel, count=total - start - 1, last_event_id=head[start], timeout=60)
        return [f.json()["n"] for f in frames]

    async def ws_client_run(start: int) -> list[int]:
        async with ws_client(pod.ws_url) as ws:
            await ws_subscribe(ws, channel, since=head[start])
            got = []
            while len(got) < total - start - 1:
                message = await ws_recv(ws, timeout=30)
                assert message["op"] == "event", message
                got.append(message["data"]["n"])
            return got

    starts = [rng.randrange(0, 200) for _ in range(50)]
    clients = [asyncio.create_task(sse_client(s) if i % 2 else ws_client_run(s)) for i, s in enumerate(starts)]
    await publish_many(pod.url, channel, total - 200, start=200)
    results = await asyncio.wait_for(asyncio.gather(*clients), 90)
    for start, got in zip(starts, results, strict=True):
        assert got == list(range(start + 1, total)), f"client resuming after {start} got a broken sequence"


async def test_gap_signal_when_history_was_trimmed() -> None:
    """With retention 10, resuming from an evicted id yields the gap signal, then the retained events."""
    with gateway("--history-max-events", "10") as small:
        ids = await publish_many(small.url, "trimmed", 25)
        frames = await collect_sse(small.url, "trimmed", count=11, last_event_id=ids[3])
        assert frames[0].event == "fleetcast.gap"
        assert frames[0].json() == {"requested": ids[3], "earliest": ids[15]}
        assert [f.id for f in frames[1:]] == ids[15:]

        async with ws_client(small.ws_url) as ws:
            reply = await ws_subscribe(ws, "trimmed", since=ids[3])
            assert reply["recovered"] is False
            gap = await ws_recv(ws)
            assert gap == {"op": "gap", "channel": "trimmed", "requested": ids[3], "earliest": ids[15]}
            got = [(await ws_recv(ws))["id"] for _ in range(10)]
            assert got == ids[15:]
