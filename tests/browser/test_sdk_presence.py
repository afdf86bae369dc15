"""The browser SDK's presence (issue 16) in a real Chromium against a real pod: ``onPresence`` hears another
client join and leave, ``presence()`` and ``presenceStats()`` read the list and the counts, over both transports.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Browser

from tests.support.clients import ws_client, ws_subscribe
from tests.support.gateway import QUICK_STOP, gateway

pytestmark = pytest.mark.browser
CHANNEL = "lobby:presence"

WATCH = """async ([base, channel, transport]) => {
  const { Fleetcast } = await import(base + "/v1/client.js");
  window.heard = [];
  window.fc = new Fleetcast(base, { transport, clientId: "page-tab-0001" });
  fc.subscribe(channel, { onPresence: (p) => window.heard.push([p.kind, p.channel, p.sub]) });
}"""


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_the_sdk_hears_joins_and_leaves_and_reads_presence(browser: Browser, transport: str) -> None:
    """A page subscribes with onPresence; a WebSocket client joins the channel and leaves: the page hears its
    join, then (after the grace) its leave; presence() lists both while both are there, presenceStats() counts
    them."""
    with gateway("--presence", "--presence-grace-seconds", "0.5", *QUICK_STOP) as pod:
        page = await browser.new_page()
        try:
            await page.goto(pod.url + "/healthz")
            await page.evaluate(WATCH, [pod.url, CHANNEL, transport])
            await page.wait_for_function("window.heard.length >= 1", timeout=10_000)  # its own join
            async with ws_client(f"{pod.ws_url}?client=other-tab-01") as ws:
                await ws_subscribe(ws, CHANNEL)
                await page.wait_for_function("window.heard.length >= 2", timeout=10_000)
                listed = await page.evaluate("async (c) => (await fc.presence(c, {limit: 10})).clients.length", CHANNEL)
                stats = await page.evaluate("async (c) => await fc.presenceStats(c)", CHANNEL)
                assert listed == 2
                assert stats == {"clients": 2, "users": 0}
            await page.wait_for_function("window.heard.length >= 3", timeout=10_000)
            heard = await page.evaluate("window.heard")
            assert heard == [["join", CHANNEL, None], ["join", CHANNEL, None], ["leave", CHANNEL, None]]
        finally:
            await page.evaluate("window.fc.close()")
            await page.close()
