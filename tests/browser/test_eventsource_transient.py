"""A native EventSource that meets a draining pod, then a full one, reconnects by itself and loses nothing
(issue 4, acceptance 6): fleetcast answers transient refusals with 200 and a reconnect event, never a 5xx."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from playwright.async_api import Browser, Page

from tests.browser.test_demo_page import logged_ids
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


async def wait_for_events(page: Page, count: int) -> None:
    await page.wait_for_function(f"document.querySelectorAll('#log li.event').length >= {count}", timeout=20_000)


async def test_eventsource_survives_a_draining_then_a_full_pod(
    pods: tuple[GatewayProcess, GatewayProcess], browser: Browser
) -> None:
    """The page subscribes through a front; its pod drains (the front moves to a full pod); the full pod turns
    it away until a slot frees up; the page ends with every event, in order, and no gap."""
    draining, full = pods
    async with front(draining.port) as service, httpx.AsyncClient(base_url=full.url, timeout=10) as api:
        page = await browser.new_page()
        await page.goto(service.url + "/")
        await page.fill("#channel", CHANNEL)
        await page.click("#connect")
        await page.wait_for_selector("#state.state-open", timeout=10_000)
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
                "[...document.querySelectorAll('#log li.control')].some(li => li.textContent.includes('overloaded'))",
                timeout=20_000,
            )
        # The slot is free: the page's own retry gets in and resumes from its Last-Event-ID.
        await wait_for_events(page, 15)
        published.append(await publish(api, CHANNEL, {"n": 15}))
        await wait_for_events(page, 16)
        assert await logged_ids(page) == published
        assert await page.inner_text("#gaps") == "0"
        log = " ".join(await page.locator("#log li.control").all_inner_texts())
        assert "draining" in log or "drain" in log
        await page.close()
