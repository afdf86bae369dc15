"""Many channels in one browser (issue 15): a native ``EventSource`` on one multiplexed stream of 12 channels
survives a drain of its pod with no loss; and behind a real HTTP/2 TLS front (nginx, as an ingress), 12
single-channel ``EventSource``s all receive over one connection, where plain HTTP/1.1 stalls the 7th."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from playwright.async_api import Browser, Page

from tests.support.clients import publish
from tests.support.front import front
from tests.support.gateway import GatewayProcess, gateway
from tests.support.mux import admin_client, events_url
from tests.support.nginx import Nginx, nginx_h2_front
from tests.support.processes import redis_server

pytestmark = pytest.mark.browser
WIDGETS = 12

RECORDER = """
(urls) => {
  window.got = {}; window.gaps = []; window.reconnects = []; window.opens = 0; window.sources = [];
  for (const url of urls) {
    const single = url.startsWith("/v1/channels/") ? decodeURIComponent(url.split("/")[3]) : null;
    const source = new EventSource(url);
    source.onopen = () => { window.opens += 1; };
    source.onmessage = (e) => {
      const frame = JSON.parse(e.data);
      const [channel, n] = single ? [single, frame.n] : [frame.channel, frame.data.n];
      (window.got[channel] ||= []).push(n);
    };
    source.addEventListener("fleetcast.gap", (e) => window.gaps.push(JSON.parse(e.data)));
    source.addEventListener("fleetcast.reconnect", (e) => window.reconnects.push(JSON.parse(e.data).reason));
    window.sources.push(source);
  }
}
"""
"""Opens an EventSource per URL and records, per channel, the ``n`` of every event, the gaps and reconnects.
Frames of a multiplexed stream name their channel; a single stream's channel is in its URL."""


async def open_sources(page: Page, urls: list[str]) -> None:
    await page.evaluate(RECORDER, urls)


async def received(page: Page) -> dict[str, list[int]]:
    got: dict[str, list[int]] = await page.evaluate("window.got")
    return got


async def wait_until_each_has(page: Page, channels: list[str], count: int, timeout_ms: int = 20_000) -> None:
    check = f"{json.dumps(channels)}.every(c => (window.got[c] || []).length >= {count})"
    await page.wait_for_function(check, timeout=timeout_ms)


async def drain(pod: GatewayProcess) -> None:
    """Start a drain of ``pod`` that leaves the process running (the one place that knows where to ask)."""
    async with admin_client(pod) as admin:
        response = await admin.post("/internal/drain", params={"exit": "false"})
        assert response.status_code == 202, response.text


async def publish_all(api: httpx.AsyncClient, channels: list[str], start: int, stop: int) -> None:
    for n in range(start, stop):
        await asyncio.gather(*(publish(api, channel, {"n": n}) for channel in channels))


@pytest.fixture
def two_pods() -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    with redis_server() as redis:
        common = ["--redis-url", redis.url, "--anonymous", "--drain-propagation", "0.2",
                  "--drain-reconnect-delay-ms", "300", "--drain-timeout", "5"]  # fmt: skip
        with gateway(*common) as first, gateway(*common) as second:
            yield first, second


async def test_one_eventsource_carries_twelve_channels_through_a_drain(
    two_pods: tuple[GatewayProcess, GatewayProcess], browser: Browser
) -> None:
    """Acceptance 2: one native EventSource on a stream of 12 channels receives all of them; its pod drains
    while events keep coming (the Service now points at the other pod); the browser reconnects by itself with
    its last ``id:`` and ends with every event of every channel, in order, once, and no gap."""
    first, second = two_pods
    channels = [f"dash:w{i}" for i in range(WIDGETS)]
    async with front(first.port) as service, httpx.AsyncClient(base_url=second.url, timeout=10) as api:
        page = await browser.new_page()
        try:
            await page.goto(service.url + "/")
            await open_sources(page, [events_url(channels)])
            await page.wait_for_function("window.opens === 1", timeout=10_000)
            await publish_all(api, channels, 0, 3)
            await wait_until_each_has(page, channels, 3)

            service.target_port = second.port
            await drain(first)
            for n in range(3, 13):
                await publish_all(api, channels, n, n + 1)
                await asyncio.sleep(0.05)
            await wait_until_each_has(page, channels, 13)
            got = await received(page)
            assert got == {c: list(range(13)) for c in channels}
            assert await page.evaluate("window.gaps") == []
            # Told to go by the drain; a reconnect that reuses a kept-alive connection to the draining pod (the
            # page's own) is turned away too ("draining") and comes back again, now to the other pod.
            reasons = await page.evaluate("window.reconnects")
            assert reasons[0] == "drain"
            assert set(reasons[1:]) <= {"draining"}
            assert await page.evaluate("window.opens") == 1 + len(reasons)
        finally:
            await page.close()


async def test_twelve_eventsources_share_one_http2_connection_through_nginx(browser: Browser) -> None:
    """Acceptance 3: straight to the pod over HTTP/1.1 Chromium opens 6 of 12 single-channel EventSources and
    the others wait; through nginx speaking HTTP/2 over TLS all 12 open and receive, over one connection."""
    channels = [f"widget:w{i}" for i in range(WIDGETS)]
    urls = [f"/v1/channels/{c}/events" for c in channels]
    with gateway("--anonymous", "--drain-propagation", "0", "--drain-timeout", "1") as pod:
        context = await browser.new_context(ignore_https_errors=True)
        try:
            plain = await context.new_page()
            await plain.goto(pod.url + "/")
            await open_sources(plain, urls)
            await plain.wait_for_function("window.opens >= 6", timeout=10_000)
            await asyncio.sleep(1.0)
            assert await plain.evaluate("window.opens") == 6, "HTTP/1.1 allows 6 connections per host"
            await plain.close()

            with nginx_h2_front(pod.port) as edge:
                page = await context.new_page()
                await page.goto(edge.url + "/")
                protocol = await page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol")
                assert protocol == "h2"
                await open_sources(page, urls)
                await page.wait_for_function(f"window.opens === {WIDGETS}", timeout=10_000)
                async with httpx.AsyncClient(base_url=pod.url, timeout=10) as api:
                    await publish_all(api, channels, 0, 2)
                await wait_until_each_has(page, channels, 2)
                assert await received(page) == {c: [0, 1] for c in channels}
                await page.close()  # ends the streams, so nginx logs them
                streams = await _logged(edge, "/events", WIDGETS)
                assert {protocol for _, protocol, _ in streams} == {"HTTP/2.0"}
                assert len({connection for connection, _, _ in streams}) == 1, streams
        finally:
            await context.close()


async def _logged(edge: Nginx, path_part: str, count: int) -> list[tuple[str, str, str]]:
    """The access-log lines of finished requests whose path contains ``path_part``, once ``count`` are there."""
    async with asyncio.timeout(10):
        while len(lines := [line for line in edge.access_log() if path_part in line[2]]) < count:
            await asyncio.sleep(0.05)
    return lines
