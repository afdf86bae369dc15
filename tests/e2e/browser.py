"""One headless Chromium page subscribed with the browser's own ``EventSource``, through the Service.

The page is the gateway's ``GET /healthz`` through the Service, chosen for its origin: an ``EventSource`` opened
from it is same-origin (a ``data:`` page would be cross-origin, and the gateway sends no CORS headers), and,
unlike the demo page at ``/``, it opens no connections of its own that the scenario would count. The test opens
its own ``EventSource`` in that page, starting after the last acknowledged id with ``?lastEventId=`` (the
first-load form); after that, every reconnect is the browser's own, with its own ``Last-Event-ID`` header and
the server's ``retry:``. What arrives is kept in ``window.__e2e`` and read back at the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from playwright.async_api import Page

from tests.conftest import chromium
from tests.e2e.traffic import Received

_SUBSCRIBE = """([url]) => {
  const state = {numbers: [], ids: [], opens: 0, errors: 0, gaps: [], reconnectAdvice: 0};
  window.__e2e = state;
  const source = new EventSource(url);
  window.__e2eSource = source;
  source.onopen = () => { state.opens += 1; };
  source.onerror = () => { state.errors += 1; };
  source.onmessage = (e) => { state.numbers.push(JSON.parse(e.data).n); state.ids.push(e.lastEventId); };
  source.addEventListener("fleetcast.gap", (e) => state.gaps.push(e.data));
  source.addEventListener("fleetcast.reconnect", () => { state.reconnectAdvice += 1; });
}"""


@dataclass
class BrowserClient:
    """The page, and what it received on its one channel."""

    page: Page
    received: Received
    name: str = "chromium"

    async def sync(self) -> dict[str, Any]:
        """Copy what the page received into :attr:`received`; returns the page's counters."""
        state: dict[str, Any] = await self.page.evaluate("() => window.__e2e")
        self.received.numbers[:] = state["numbers"]
        self.received.ids[:] = state["ids"]
        return state


@contextlib.asynccontextmanager
async def browser_client(service_url: str, channel: str, start: int, since: str | None) -> AsyncIterator[BrowserClient]:
    """A Chromium page subscribed to ``channel`` after ``since``; the browser is closed when the block ends."""
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(service_url + "/healthz", timeout=10_000)
        url = f"/v1/channels/{channel}/events" + (f"?lastEventId={since}" if since else "")
        await page.evaluate(_SUBSCRIBE, [url])
        yield BrowserClient(page, Received(channel, start))
