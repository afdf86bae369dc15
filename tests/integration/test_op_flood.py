"""Subscribe/unsubscribe floods on one WebSocket are rate-limited like publishes (issue 13)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.clients import publish, ws_client, ws_recv, ws_send, ws_subscribe
from tests.support.gateway import QUICK_STOP, GatewayProcess, gateway

BURST = 200
"""``Limits.subscribe_burst``: the requests one connection may make at once."""
STRIKES = 20
"""``Limits.abuse_strikes``: refusals in a row after which the connection is closed."""


@pytest.fixture(scope="module")
def pod() -> Iterator[GatewayProcess]:
    with gateway("--anonymous", *QUICK_STOP) as pod:
        yield pod


async def until_closed(ws: Any) -> list[dict[str, Any]]:
    """Every message until the server closes the connection."""
    answered: list[dict[str, Any]] = []
    try:
        while True:
            answered.append(await ws_recv(ws))
    except ConnectionClosed:
        return answered


async def replies(ws: Any, count: int) -> list[dict[str, Any]]:
    return [await ws_recv(ws) for _ in range(count)]


async def test_a_subscribe_flood_is_refused_politely_then_cut_with_4129(pod: GatewayProcess) -> None:
    """Past the burst, each subscribe gets an ``error`` rate_limited (with the ref, and when to retry); a
    client that keeps going past the strike count is closed with 4129; the pod is unharmed."""
    async with ws_client(pod.ws_url) as ws:
        for n in range(BURST + STRIKES + 30):
            await ws_send(ws, op="subscribe" if n % 2 == 0 else "unsubscribe", channel="flood", ref=n)
        answered = await until_closed(ws)
        assert ws.close_code == 4129
        assert ws.close_reason == "rate limited"
    refused = [m for m in answered if m["op"] == "error"]
    assert len(answered) - len(refused) >= BURST - 5, "the burst is served"
    assert refused, answered[-3:]
    assert all(m["code"] == "rate_limited" and "retry in" in m["message"] for m in refused), refused[:3]
    assert len(refused) <= STRIKES + 1
    async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
        assert (await client.get("/healthz")).status_code == 200
    assert "Traceback" not in pod.log()


async def test_a_client_that_backs_off_keeps_its_connection(pod: GatewayProcess) -> None:
    """A few refusals, then waiting as told: the connection survives and subscribing works again."""
    async with ws_client(pod.ws_url) as ws:
        for n in range(BURST + 5):
            await ws_send(ws, op="subscribe" if n % 2 == 0 else "unsubscribe", channel="calm", ref=n)
        answered = await replies(ws, BURST + 5)
        assert [m["code"] for m in answered if m["op"] == "error"] == ["rate_limited"] * 5
        await asyncio.sleep(0.5)  # the bucket refills at 20 per second
        await ws_send(ws, op="unsubscribe", channel="calm", ref="u")
        await ws_recv(ws)
        await ws_subscribe(ws, "calm", ref="again")
        async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
            event_id = await publish(client, "calm", {"ok": True})
        event = await ws_recv(ws)
        assert (event["op"], event["id"]) == ("event", event_id)
