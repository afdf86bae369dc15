"""A native EventSource that meets a draining pod, then a full one, reconnects by itself and loses nothing
(issue 4, acceptance 6): fleetcast answers transient refusals with 200 and a reconnect event, never a 5xx."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from playwright.async_api import Browser, Page

from tests.support.clients import publish
from tests.support.front import front
from tests.support.gateway import GatewayProcess, gateway
from tests.support.processes import redis_server

pytestmark = pytest.mark.browser
CHANNEL = "es-transient"


@pytest.fixture
def pods() -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    with redis_server() as redis:
        common = ["--redis-url", redis.url, "--drain-propagation", "0.2", "--drain-reconnect-delay-ms", "300"]
        with gateway(*common) as draining, gateway(*common, "--max-connections", "1") as full:
            yield draining, full


# A bare EventSource, as a page without the SDK would use it: what it sees goes to `window.log`.
NATIVE = """(channel) => {
  const log = window.log = { ids: [], controls: [], gaps: 0, opened: false };
  const source = new EventSource("/v1/channels/" + encodeURIComponent(channel) + "/events");
  source.onopen = () => { log.opened = true; };
  source.onmessage = (e) => log.ids.push(e.lastEventId);
  source.addEventListener("fleetcast.gap", () => log.gaps++);
  source.addEventListener("fleetcast.reconnect", (e) => log.controls.push(e.data));
}"""


async def wait_for_events(page: Page, count: int) -> None:
    await page.wait_for_function(f"window.log.ids.length >= {count}", timeout=20_000)


async def test_eventsource_survives_a_draining_then_a_full_pod(
    pods: tuple[GatewayProcess, GatewayProcess], browser: Browser
) -> None:
    """The page subscribes through a front; its pod drains (the front moves to a full pod); the full pod turns
    it away until a slot frees up; the page ends with every event, in order, and no gap."""
    draining, full = pods
    async with front(draining.port) as service, httpx.AsyncClient(base_url=full.url, timeout=10) as api:
        page = await browser.new_page()
        await page.goto(service.url + "/healthz")
        await page.evaluate(NATIVE, CHANNEL)
        await page.wait_for_function("window.log.opened", timeout=10_000)
        published = [await publish(api, CHANNEL, {"n": n}) for n in range(5)]
        await wait_for_events(page, 5)

        # Another client fills the full pod's only slot; the Service now sends new connections there.
        async with api.stream("GET", f"/v1/channels/{CHANNEL}/events") as occupant:
            assert occupant.status_code == 200
            service.target_port = full.port
            async with httpx.AsyncClient(base_url=draining.admin_url, headers=draining.admin_headers) as admin:
                assert (await admin.post("/internal/drain?exit=false")).status_code == 202
            # While the page is bounced between refusals, events keep coming.
            for n in range(5, 15):
                published.append(await publish(api, CHANNEL, {"n": n}))
                await asyncio.sleep(0.1)
            await page.wait_for_function(
                "window.log.controls.some(text => text.includes('overloaded'))", timeout=20_000
            )
        # The slot is free: the page's own retry gets in and resumes from its Last-Event-ID.
        await wait_for_events(page, 15)
        published.append(await publish(api, CHANNEL, {"n": 15}))
        await wait_for_events(page, 16)
        log = await page.evaluate("window.log")
        assert log["ids"] == published
        assert log["gaps"] == 0
        assert any("drain" in text for text in log["controls"])
        await page.close()
