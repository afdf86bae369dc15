"""Channel policies applied by a pod on Redis: slow-consumer policies, rate limits, message size (issue 4)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.clients import ws_client, ws_recv, ws_send, ws_subscribe
from tests.support.gateway import GatewayProcess, gateway
from tests.support.processes import RedisServer, declare, redis_server

PAD = "p" * 4000


def channel_set(redis: RedisServer, family: str, *flags: str) -> None:
    """Declare an open channel family (anyone reads and publishes: these tests are about the policies) the way a
    developer does (the operator writes the same record)."""
    declare(redis, family, "--anonymous", "--publish-anonymous", *flags)


@pytest.fixture(scope="module")
def fleet() -> Iterator[tuple[RedisServer, GatewayProcess]]:
    with redis_server() as redis:
        channel_set(redis, "drop", "--slow-consumer", "dropOldest", "--buffer", "50", "--max-events", "5000")
        channel_set(redis, "score", "--slow-consumer", "conflate", "--conflate-by", "team", "--buffer", "100")
        channel_set(redis, "limited", "--publish-per-second", "5", "--publish-from-clients")
        channel_set(redis, "small", "--max-message-bytes", "100", "--publish-from-clients")
        with gateway("--redis-url", redis.url, "--ws-publish-rate", "20") as pod:
            yield redis, pod


async def publish_all(pod: GatewayProcess, channel: str, bodies: list[dict[str, Any]]) -> list[str]:
    async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
        ids = []
        for body in bodies:
            response = await client.post(f"/v1/channels/{channel}/events", json=body)
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        return ids


async def read_until_quiet(ws: Any, quiet: float = 1.5) -> list[dict[str, Any]]:
    messages = []
    while True:
        try:
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), quiet)))
        except TimeoutError:
            return messages


async def test_drop_oldest_gives_a_gap_then_the_newest_events(fleet: tuple[RedisServer, GatewayProcess]) -> None:
    """A reader that stops reading under dropOldest keeps its connection; when it reads again it gets what
    was written before, a gap naming the hole, then the newest events; the pod holds a bounded amount."""
    _, pod = fleet
    async with ws_client(pod.ws_url, max_queue=1) as ws:
        await ws_subscribe(ws, "drop")
        ids = await publish_all(pod, "drop", [{"data": {"n": n, "pad": PAD}} for n in range(2000)])
        async with httpx.AsyncClient(base_url=pod.url) as client:
            held = (await client.get("/readyz")).json()["buffered_bytes"]
        assert held < 4 * 1024 * 1024
        messages = await read_until_quiet(ws)
    events = [m for m in messages if m["op"] == "event"]
    gaps = [m for m in messages if m["op"] == "gap"]
    assert gaps, "a lagging dropOldest reader must be told what it missed"
    got = [e["id"] for e in events]
    assert got == sorted(got, key=lambda i: tuple(map(int, i.split("-"))))
    assert got[-1] == ids[-1], "the newest event always arrives"
    # Everything not received lies inside a reported hole: from `requested` (exclusive) to `earliest`.
    received = set(got)
    for gap in gaps:
        start, end = ids.index(gap["requested"]), ids.index(gap["earliest"])
        received.update(ids[start + 1 : end])
    assert received == set(ids)


async def test_conflate_ends_with_the_latest_value_per_key(fleet: tuple[RedisServer, GatewayProcess]) -> None:
    """A subscriber that cannot keep up with a scoreboard receives the latest value per team, never a stale one
    last, and no gap (superseded scores are not losses)."""
    _, pod = fleet
    async with ws_client(pod.ws_url, max_queue=1) as ws:
        await ws_subscribe(ws, "score")
        bodies = [{"data": {"team": f"t{n % 4}", "n": n, "pad": PAD}} for n in range(2000)]
        await publish_all(pod, "score", bodies)
        messages = await read_until_quiet(ws)
    last_per_team: dict[str, int] = {}
    for message in messages:
        assert message["op"] == "event", message
        last_per_team[message["data"]["team"]] = message["data"]["n"]
    assert last_per_team == {"t0": 1996, "t1": 1997, "t2": 1998, "t3": 1999}
    assert len(messages) < 2000, "the reader never lagged: the test proves nothing"


async def test_channel_rate_limit_answers_429_with_retry_after(fleet: tuple[RedisServer, GatewayProcess]) -> None:
    """Publishing past a channel's publishPerSecond gets 429 with Retry-After; others channels are unaffected."""
    _, pod = fleet
    async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
        statuses = [(await client.post("/v1/channels/limited/events", json={"data": n})).status_code for n in range(12)]
        limited = await client.post("/v1/channels/limited/events", json={"data": "again"})
        other = await client.post("/v1/channels/free/events", json={"data": 1})
    assert statuses[:5] == [201] * 5
    assert 429 in statuses
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limited"
    assert other.status_code == 201


seen: list[dict[str, Any]] = []


async def drain_messages(ws: Any) -> None:
    while True:
        seen.append(await ws_recv(ws))


async def test_websocket_publish_flood_gets_errors_then_4129(fleet: tuple[RedisServer, GatewayProcess]) -> None:
    """A client publishing far past its rate gets rate_limited errors, then is cut off with 4129; the pod stays
    healthy for others."""
    _, pod = fleet
    async with ws_client(pod.ws_url) as ws:
        for n in range(500):
            await ws_send(ws, op="publish", channel="flood", data=n, ref=n)
        with pytest.raises(ConnectionClosed) as closed:
            await drain_messages(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4129
    assert any(m["op"] == "error" and m["code"] == "rate_limited" for m in seen)
    async with ws_client(pod.ws_url) as ws:
        await ws_send(ws, op="ping", ref="still-there")
        assert (await ws_recv(ws))["op"] == "pong"


async def test_channel_message_size_limit(fleet: tuple[RedisServer, GatewayProcess]) -> None:
    """A Channel's lower maxMessageBytes: HTTP 413, and over WebSocket an error then close 1009."""
    _, pod = fleet
    async with httpx.AsyncClient(base_url=pod.url) as client:
        response = await client.post("/v1/channels/small/events", json={"data": "x" * 200})
    assert response.status_code == 413
    assert "at most 100" in response.json()["error"]["message"]
    async with ws_client(pod.ws_url) as ws:
        await ws_send(ws, op="publish", channel="small", data="x" * 200, ref=1)
        assert (await ws_recv(ws))["code"] == "payload_too_large"
        with pytest.raises(ConnectionClosed) as closed:
            await ws_recv(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
