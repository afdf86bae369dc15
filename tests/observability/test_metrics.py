"""Acceptance 2 of issue 7: ``GET /metrics`` (on the admin port) follows connections, events and a drain."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from fleetcast.client import SseClient, WsClient
from tests.support.gateway import gateway

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def until(http: httpx.AsyncClient, holds: Callable[[Samples], bool], timeout: float = 10.0) -> Samples:
    """Scrape until ``holds`` is true of the samples; fails with the last scrape after ``timeout``."""
    samples: Samples = {}
    try:
        async with asyncio.timeout(timeout):
            while not holds(samples := await scrape(http)):
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"metrics never got there: {samples}") from None
    return samples


async def test_metrics_follow_connections_events_and_a_drain() -> None:
    """Three clients connect (2 WS, 1 SSE), five events reach each, then the pod drains: the connection, subscription,
    published, delivered and lag figures rise as they happen, and the drain state, remaining and closed follow."""
    channel = "metrics:room"
    with gateway("--drain-propagation", "0.2", "--drain-rate", "100") as pod:
        async with (
            httpx.AsyncClient(base_url=pod.admin_url, timeout=5) as http,
            httpx.AsyncClient(base_url=pod.url, timeout=5) as api,
        ):
            before = await scrape(http)
            assert value(before, "fleetcast_connections", transport="ws") == 0
            assert value(before, "fleetcast_events_published_total") == 0
            assert value(before, "fleetcast_drain_state", state="serving") == 1
            assert value(before, "fleetcast_broker_ready") == 1

            clients = [
                WsClient([pod.ws_url], [channel]),
                WsClient([pod.ws_url], [channel]),
                SseClient([pod.url], channel),
            ]
            try:
                for client in clients:
                    client.start()
                connected = await until(
                    http, lambda s: s.get(("fleetcast_subscriptions", frozenset({("family", "metrics")}))) == 3
                )
                assert value(connected, "fleetcast_connections", transport="ws") == 2
                assert value(connected, "fleetcast_connections", transport="sse") == 1

                for n in range(5):
                    response = await api.post(f"/v1/channels/{channel}/events", json={"data": n})
                    assert response.status_code == 201
                flowed = await until(http, lambda s: s[("fleetcast_events_delivered_total", frozenset())] == 15)
                assert value(flowed, "fleetcast_events_published_total") == 5
                batches = value(flowed, "fleetcast_publish_to_write_lag_seconds_count")
                assert 1 <= batches <= 5  # once per batch, not per subscriber
                assert value(flowed, "fleetcast_publish_to_write_lag_seconds_bucket", le="+Inf") == batches
                assert value(flowed, "fleetcast_publish_to_write_lag_seconds_bucket", le="1.0") == batches

                drain = await http.post("/internal/drain", params={"exit": "false"}, headers=pod.admin_headers)
                assert drain.status_code == 202
                draining = await scrape(http)
                assert value(draining, "fleetcast_drain_state", state="draining") == 1
                assert value(draining, "fleetcast_drain_state", state="serving") == 0
                assert value(draining, "fleetcast_drain_remaining_sessions") == 3
                drained = await until(
                    http, lambda s: s[("fleetcast_drain_state", frozenset({("state", "drained")}))] == 1
                )
                assert value(drained, "fleetcast_drain_closed_sessions_total") == 3
                assert value(drained, "fleetcast_drain_remaining_sessions") == 0
                await until(
                    http,
                    lambda s: (
                        s[("fleetcast_connections", frozenset({("transport", "ws")}))] == 0
                        and s[("fleetcast_connections", frozenset({("transport", "sse")}))] == 0
                    ),
                )
            finally:
                await asyncio.gather(*(client.close() for client in clients))
