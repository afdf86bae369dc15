"""Pages of other origins in a real Chromium (issue 12): a hostile page cannot open ``/v1/ws`` or read SSE even
with its visitor's token cookie; a page of an allowed origin can, with the cookie and with a query token."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page

from tests.support.gateway import QUICK_STOP, GatewayProcess, gateway
from tests.support.static import StaticServer
from tests.support.tokens import Keys

pytestmark = pytest.mark.browser

CHANNEL = "private:room-7"
BLANK = b"<!doctype html><title>a page</title><p>a page of some origin"

WS_SCRIPT = """async ([url, token, channel]) => new Promise((resolve) => {
  const seen = [];
  let ws;
  try { ws = new WebSocket(url, "fleetcast.v1"); } catch (e) { resolve({opened: false, error: String(e)}); return; }
  let opened = false;
  ws.onopen = () => {
    opened = true;
    if (token) ws.send(JSON.stringify({op: "auth", token, ref: 1}));
    ws.send(JSON.stringify({op: "subscribe", channel, ref: 2}));
  };
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    seen.push(msg.op);
    if (msg.op === "event") { ws.close(); resolve({opened, seen, data: msg.data}); }
  };
  ws.onclose = (e) => resolve({opened, seen, code: e.code});
  setTimeout(() => resolve({opened, seen, timeout: true}), 8000);
})"""

SSE_SCRIPT = """async ([url, withCredentials]) => new Promise((resolve) => {
  const source = new EventSource(url, {withCredentials});
  source.onmessage = (m) => { source.close(); resolve({data: JSON.parse(m.data)}); };
  source.onerror = () => { if (source.readyState === EventSource.CLOSED) resolve({error: true}); };
  setTimeout(() => { source.close(); resolve({timeout: true}); }, 8000);
})"""


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[GatewayProcess, Keys, StaticServer, StaticServer]]:
    keys = Keys()
    allowed, hostile = StaticServer(BLANK), StaticServer(BLANK)
    try:
        with allowed.running(), hostile.running():
            args = [*QUICK_STOP, *keys.pod_args(audience=None), "--allowed-origins", allowed.origin]
            with gateway(*args) as pod:
                yield pod, keys, allowed, hostile
    finally:
        keys.cleanup()


async def page_with_cookie(browser: Browser, origin: str, token: str) -> Page:
    """A page of ``origin`` whose visitor holds the token cookie (cookies are per host, so every port of
    127.0.0.1, the gateway's included, gets it)."""
    context = await browser.new_context()
    await context.add_cookies([{"name": "fleetcast_token", "value": token, "url": "http://127.0.0.1/"}])
    page = await context.new_page()
    await page.goto(origin + "/")
    return page


async def publish_later(pod: GatewayProcess, keys: Keys, page_result: Any, value: str) -> Any:
    """Publish ``value`` (with the API key) a moment after the page started listening; the page's result."""
    task = asyncio.ensure_future(page_result)
    async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
        for _ in range(40):
            if task.done():
                break
            await asyncio.sleep(0.25)
            auth = {"Authorization": f"Bearer {keys.api_key}"}
            await client.post(f"/v1/channels/{CHANNEL}/events", json={"data": value}, headers=auth)
    return await task


async def test_a_hostile_page_cannot_use_its_visitors_token(
    setup: tuple[GatewayProcess, Keys, StaticServer, StaticServer], browser: Browser
) -> None:
    """From a page of an origin not allowed: the WebSocket handshake fails (403), EventSource and fetch are
    refused, although the browser holds a token cookie that grants the channel."""
    pod, keys, _, hostile = setup
    token = keys.hs256(sub="victim", channels=[CHANNEL], publish=[CHANNEL])
    page = await page_with_cookie(browser, hostile.origin, token)
    ws = await publish_later(pod, keys, page.evaluate(WS_SCRIPT, [pod.ws_url, None, CHANNEL]), "for the victim only")
    assert ws["opened"] is False, ws
    sse = await publish_later(
        pod, keys, page.evaluate(SSE_SCRIPT, [f"{pod.url}/v1/channels/{CHANNEL}/events", True]), "still private"
    )
    assert sse == {"error": True}
    fetched = await page.evaluate(
        """async (url) => { try { const r = await fetch(url, {credentials: "include"}); return r.status; }
                            catch (e) { return "blocked"; } }""",
        f"{pod.url}/v1/channels/{CHANNEL}/history",
    )
    assert fetched == "blocked"
    posted = await page.evaluate(
        """async (url) => { try { const r = await fetch(url, {method: "POST", credentials: "include",
                              headers: {"Content-Type": "application/json"}, body: '{"data": "forged"}'});
                              return r.status; } catch (e) { return "blocked"; } }""",
        f"{pod.url}/v1/channels/{CHANNEL}/events",
    )
    assert posted == "blocked"
    async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
        reader = {"since": "0-0", "token": keys.hs256(channels=[CHANNEL])}
        history = await client.get(f"/v1/channels/{CHANNEL}/history", params=reader)
    assert "forged" not in history.text
    await page.context.close()


async def test_an_allowed_page_subscribes_with_a_cookie_and_with_a_query_token(
    setup: tuple[GatewayProcess, Keys, StaticServer, StaticServer], browser: Browser
) -> None:
    """From the allowed origin: EventSource with the cookie (withCredentials) and with ``?token=``, and a
    WebSocket authenticated by its first op, each receive the channel's events."""
    pod, keys, allowed, _ = setup
    token = keys.hs256(sub="alice", channels=[CHANNEL])
    page = await page_with_cookie(browser, allowed.origin, token)
    url = f"{pod.url}/v1/channels/{CHANNEL}/events"
    with_cookie = await publish_later(pod, keys, page.evaluate(SSE_SCRIPT, [url, True]), "via cookie")
    assert with_cookie == {"data": "via cookie"}
    with_query = await publish_later(pod, keys, page.evaluate(SSE_SCRIPT, [f"{url}?token={token}", False]), "via q")
    assert with_query == {"data": "via q"}
    ws = await publish_later(pod, keys, page.evaluate(WS_SCRIPT, [pod.ws_url, token, CHANNEL]), "via ws")
    assert ws["data"] == "via ws"
    assert ws["seen"][:2] == ["authed", "subscribed"]
    await page.context.close()
