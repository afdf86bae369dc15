"""The browser SDK (issue 14) in a real Chromium: it loads ``/v1/client.js`` from a real pod and keeps every event
exactly once across a pod restart, a drain to another pod and token refreshes; ``onGap`` reports trimmed history.

The page is the pod's own origin (``/healthz`` is its document) and imports the module the pod serves."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page

from tests.support.clients import publish, wait_subscribers
from tests.support.front import front
from tests.support.gateway import QUICK_STOP, GatewayProcess, gateway
from tests.support.processes import RedisServer, declare, redis_server
from tests.support.static import StaticServer
from tests.support.tokens import Keys

pytestmark = pytest.mark.browser
TRANSPORTS = ["ws", "sse"]

# Loads the SDK from `base` and subscribes; what it sees goes to `window.seen`. With `withToken`, its token
# function asks the test for a fresh token (`window.freshToken`, exposed by Playwright) every time.
SUBSCRIBE = """async ([base, channel, transport, since, withToken]) => {
  const { Fleetcast } = await import(base + "/v1/client.js");
  const seen = window.seen = { ids: [], types: [], gaps: [], states: [], errors: [], tokens: 0 };
  const options = { transport };
  if (withToken) options.token = async () => { seen.tokens++; return await window.freshToken(); };
  window.fc = new Fleetcast(base, options);
  fc.on("state", (s) => seen.states.push(s.state));
  fc.subscribe(channel, {
    since,
    onEvent: (e) => { seen.ids.push(e.id); seen.types.push(e.type); },
    onGap: (g) => seen.gaps.push(g),
    onError: (e) => seen.errors.push(e.code + " " + e.message),
  });
}"""


async def subscribe_page(
    browser: Browser, base: str, channel: str, transport: str, *, since: str | None = None, token: Any = None
) -> Page:
    page = await browser.new_page()
    if token is not None:
        await page.expose_function("freshToken", token)
    await page.goto(base + "/healthz")
    await page.evaluate(SUBSCRIBE, [base, channel, transport, since, token is not None])
    return page


async def seen(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate("window.seen")
    return result


async def wait_for_count(page: Page, count: int, timeout: float = 20_000) -> None:
    await page.wait_for_function(f"window.seen.ids.length >= {count}", timeout=timeout)


async def close_page(page: Page) -> None:
    await page.evaluate("window.fc.close()")
    await page.close()


async def start_drain(pod: GatewayProcess) -> None:
    """Start a drain of ``pod`` without ending its process (the admin call lives here alone): on the pod's admin
    port with its token where the pod has one, else on its public port from loopback."""
    url, headers = getattr(pod, "admin_url", pod.url), getattr(pod, "admin_headers", {})
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as admin:
        assert (await admin.post("/internal/drain?exit=false")).status_code == 202


async def wait_subscribers_with(pod: GatewayProcess, channel: str, token: str) -> None:
    """Wait until ``pod`` counts a subscriber of ``channel`` (channel info, read with ``token``)."""
    async with asyncio.timeout(15), api(pod) as client:
        while (await client.get(f"/v1/channels/{channel}", params={"token": token})).json()["subscribers"] < 1:
            await asyncio.sleep(0.05)


@contextlib.contextmanager
def two_pods(redis: RedisServer, *extra: str) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    common = ["--redis-url", redis.url, *extra]
    with gateway(*common) as first, gateway(*common, *QUICK_STOP) as second:
        yield first, second


@contextlib.asynccontextmanager
async def api(pod: GatewayProcess, headers: dict[str, str] | None = None) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=pod.url, timeout=10, headers=headers) as client:
        yield client


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_pod_restart_loses_nothing_and_repeats_nothing(browser: Browser, transport: str) -> None:
    """50 events: 25 while connected, 25 while the page's pod is dead (SIGKILL); a new pod on the same port and
    the page's own reconnect resume from its last id: all 50, in order, once each."""
    channel = f"sdk-restart-{transport}"
    with redis_server() as redis, two_pods(redis, *QUICK_STOP) as (serving, publisher):
        page = await subscribe_page(browser, serving.url, channel, transport)
        await wait_subscribers(serving.url, channel, 1)
        async with api(publisher) as client:
            published = [await publish(client, channel, {"n": n}) for n in range(25)]
            await wait_for_count(page, 25)
            serving.stop(sig=signal.SIGKILL)
            published += [await publish(client, channel, {"n": n}) for n in range(25, 50)]
            serving.start()
            await wait_for_count(page, 50)
            published.append(await publish(client, channel, {"n": 50}))
            await wait_for_count(page, 51)
        result = await seen(page)
        assert result["ids"] == published
        assert result["gaps"] == []
        assert result["errors"] == []
        assert "reconnecting" in result["states"]
        assert result["states"][-1] == "open"
        await close_page(page)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_on_gap_fires_when_history_was_trimmed(browser: Browser, transport: str) -> None:
    """A family that keeps 5 events; the page resumes from the first of 30: ``onGap`` names what was asked and
    where history starts, and the page gets the 5 retained events."""
    channel = f"trimmed:{transport}"
    with redis_server() as redis:
        declare(redis, "trimmed", "--anonymous", "--publish-anonymous", "--max-events", "5")
        with gateway("--redis-url", redis.url, *QUICK_STOP) as pod:
            async with api(pod) as client:
                published = [await publish(client, channel, {"n": n}) for n in range(30)]
            page = await subscribe_page(browser, pod.url, channel, transport, since=published[0])
            await wait_for_count(page, 5)
            await page.wait_for_function("window.seen.gaps.length === 1", timeout=10_000)
            result = await seen(page)
            assert result["gaps"] == [{"channel": channel, "requested": published[0], "earliest": published[-5]}]
            assert result["ids"] == published[-5:]
            await close_page(page)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_drain_moves_the_page_to_another_pod_without_loss(browser: Browser, transport: str) -> None:
    """The page reaches pod A through a front (a Service); the front turns to pod B and A drains: the page
    follows the server's ``reconnect`` to B and resumes there, losing and repeating nothing while events flow."""
    channel = f"sdk-drain-{transport}"
    drain = ["--drain-propagation", "0.2", "--drain-reconnect-delay-ms", "300", "--drain-timeout", "5"]
    with redis_server() as redis, two_pods(redis, *drain) as (pod_a, pod_b):
        async with front(pod_a.port) as service, api(pod_b) as client:
            page = await subscribe_page(browser, service.url, channel, transport)
            await wait_subscribers(pod_a.url, channel, 1)
            published = [await publish(client, channel, {"n": n}) for n in range(10)]
            await wait_for_count(page, 10)
            service.target_port = pod_b.port
            await start_drain(pod_a)
            for n in range(10, 30):
                published.append(await publish(client, channel, {"n": n}))
                await asyncio.sleep(0.05)
            await wait_subscribers(pod_b.url, channel, 1)
            published.append(await publish(client, channel, {"n": 30}))
            await wait_for_count(page, 31)
            result = await seen(page)
            assert result["ids"] == published
            assert result["errors"] == []
            assert "reconnecting" in result["states"]
            await close_page(page)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_expiring_token_is_refreshed_twice_without_loss(browser: Browser, transport: str) -> None:
    """Tokens live 3 s (no leeway); events flow for 8 s. Over WS the SDK refreshes in place with ``auth`` before
    each expiry (the socket never drops); over SSE it reopens the stream with a fresh token and the last id when
    the stream ends at expiry. Every event arrives once."""
    channel = f"private:{transport}"
    keys = Keys()
    try:
        args = [*QUICK_STOP, *keys.pod_args(audience=None), "--jwt-leeway", "0"]
        with gateway(*args) as pod:

            def fresh_token() -> str:
                return keys.hs256(ttl=3, sub="u1", channels=[channel])

            page = await subscribe_page(browser, pod.url, channel, transport, token=fresh_token)
            await wait_subscribers_with(pod, channel, fresh_token())
            published: list[str] = []
            async with api(pod, {"Authorization": f"Bearer {keys.api_key}"}) as client:
                for n in range(32):
                    published.append(await publish(client, channel, {"n": n}))
                    await asyncio.sleep(0.25)
                await wait_for_count(page, len(published))
            result = await seen(page)
            assert result["ids"] == published
            assert result["errors"] == []
            assert result["tokens"] >= 3, "the first token and at least two refreshes"
            if transport == "ws":
                assert "reconnecting" not in result["states"], "a refresh happens on the open socket"
            await close_page(page)
    finally:
        keys.cleanup()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_page_of_another_allowed_origin_imports_the_sdk_and_subscribes_with_a_token(
    browser: Browser, transport: str
) -> None:
    """The app's page lives on its own origin: it imports ``/v1/client.js`` across origins (CORS) and subscribes
    with a token, which the SDK sends as a header (SSE: after a CORS preflight), never in a URL."""
    channel = f"private:x-{transport}"
    keys = Keys()
    app = StaticServer(b"<!doctype html><title>the app</title>")
    try:
        with app.running(), gateway(*QUICK_STOP, *keys.pod_args(audience=None), "--allowed-origins", app.origin) as pod:
            page = await browser.new_page()
            urls: list[str] = []
            page.on("request", lambda request: urls.append(request.url))
            await page.expose_function("freshToken", lambda: keys.hs256(sub="u1", channels=[channel]))
            await page.goto(app.origin + "/")
            await page.evaluate(SUBSCRIBE, [pod.url, channel, transport, None, True])
            await wait_subscribers_with(pod, channel, keys.hs256(channels=[channel]))
            async with api(pod, {"Authorization": f"Bearer {keys.api_key}"}) as client:
                published = [await publish(client, channel, {"n": n}) for n in range(3)]
            await wait_for_count(page, 3)
            assert (await seen(page))["ids"] == published
            assert not any("token=" in url for url in urls), urls
            await close_page(page)
    finally:
        keys.cleanup()
