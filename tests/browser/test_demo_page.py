"""The demo page in a real headless Chromium: live events, publishing, and a reload that resumes without loss."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.async_api import Browser, Page

from tests.support.clients import publish
from tests.support.gateway import GatewayProcess, gateway

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def pod() -> Iterator[GatewayProcess]:
    with gateway() as running:
        yield running


async def logged_ids(page: Page) -> list[str]:
    texts = await page.locator("#log li.event").all_inner_texts()
    return [text.split()[0] for text in texts]


@pytest.mark.parametrize("transport", ["sse", "ws"])
async def test_demo_page_shows_events_and_resumes_after_reload(
    pod: GatewayProcess, browser: Browser, transport: str
) -> None:
    """The page shows what is published (by its own button and by a backend); after a reload it shows exactly
    the events published while it was away, then live ones."""
    channel = f"demo-{transport}"
    page = await browser.new_page()
    await page.goto(pod.url + "/")
    await page.fill("#channel", channel)
    await page.select_option("#transport", transport)
    await page.click("#connect")
    await page.wait_for_selector("#state.state-open", timeout=10_000)

    await page.fill("#data", '{"from": "page"}')
    await page.click("#publish")
    await page.wait_for_function("document.querySelectorAll('#log li.event').length === 1", timeout=10_000)
    async with httpx.AsyncClient(base_url=pod.url) as client:
        before = [await publish(client, channel, {"n": i}) for i in range(3)]
        await page.wait_for_function("document.querySelectorAll('#log li.event').length === 4", timeout=10_000)
        shown = await logged_ids(page)
        assert shown[1:] == before

        await page.goto("about:blank")  # leave the page: events published now are missed
        missed = [await publish(client, channel, {"n": i}) for i in range(3, 8)]
        await page.go_back()
        await page.wait_for_selector("#state.state-open", timeout=10_000)
        await page.wait_for_function("document.querySelectorAll('#log li.event').length === 5", timeout=10_000)
        assert await logged_ids(page) == missed
        live = await publish(client, channel, {"n": 8})
        await page.wait_for_function("document.querySelectorAll('#log li.event').length === 6", timeout=10_000)
        assert await logged_ids(page) == [*missed, live]
    assert await page.inner_text("#gaps") == "0"
    await page.close()
