"""The demo page (built on the browser SDK) in a real headless Chromium: chat and scoreboard live, any event type
shown, and a reload mid-stream that says where it resumed and how many missed events it recovered."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page

from tests.support.clients import publish
from tests.support.gateway import QUICK_STOP, GatewayProcess, gateway

pytestmark = pytest.mark.browser

SCREENSHOT_ENV = "FLEETCAST_DEMO_SCREENSHOT"
"""Set to a path (``docs/demo.png``) to write the README's screenshot there; otherwise it goes to a tmp dir."""


@pytest.fixture(scope="module")
def pod() -> Iterator[GatewayProcess]:
    with gateway(*QUICK_STOP, "--pod-name", "gateway-7d9f-x2k4q") as running:
        yield running


def demo_url(pod: GatewayProcess, transport: str, name: str) -> str:
    return f"{pod.url}/?transport={transport}&chat=chat:{name}&score=scores:{name}"


async def feed_ids(page: Page, channel: str) -> list[str]:
    ids: list[str] = await page.eval_on_selector_all(
        f'#feed li.event[data-channel="{channel}"]', "items => items.map(li => li.dataset.id).reverse()"
    )
    return ids


async def wait_feed(page: Page, channel: str, count: int) -> None:
    await page.wait_for_function(
        f"document.querySelectorAll('#feed li.event[data-channel=\"{channel}\"]').length >= {count}", timeout=10_000
    )


async def open_demo(page: Page, url: str) -> None:
    await page.goto(url)
    await page.wait_for_selector("#state.state-open", timeout=10_000)


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_demo_page_is_live_and_says_what_a_reload_recovered(
    pod: GatewayProcess, browser: Browser, transport: str
) -> None:
    """Chat from the page's own form and from a backend, scores, and an event type nobody announced all show; the
    page is left mid-stream and loaded again: it names the id it resumed from and the number of missed events,
    shows each exactly once, then goes on live."""
    name = f"reload-{transport}"
    chat, score = f"chat:{name}", f"scores:{name}"
    page = await browser.new_page()
    await open_demo(page, demo_url(pod, transport, name))
    # The pod's name arrives by its own fetch of /readyz, which may finish after the connection opened.
    await page.wait_for_function("document.getElementById('pod').textContent !== '…'", timeout=10_000)
    assert await page.inner_text("#pod") == "gateway-7d9f-x2k4q"
    assert await page.is_hidden("#resume")

    await page.fill("#chat-text", "hello from the page")
    await page.click("#chat-send")
    await page.wait_for_selector("#chat-list li.msg.mine", timeout=10_000)
    async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
        seen = [*await feed_ids(page, chat)]
        seen += [await publish(client, chat, {"user": "ada", "text": f"msg {n}"}, type="chat") for n in range(3)]
        seen.append(await publish(client, chat, {"level": "info"}, type="announcement"))
        await publish(client, score, {"team": "Otters", "score": 4}, type="score")
        await wait_feed(page, chat, 5)
        assert await feed_ids(page, chat) == seen
        assert await page.inner_text(f"#feed li.event[data-id='{seen[-1]}'] .type") == "announcement"
        await page.wait_for_function(
            "document.querySelector('#scoreboard li[data-team=Otters] .score').textContent === '4'", timeout=10_000
        )

        await page.goto("about:blank")  # away mid-stream: what is published now is missed
        missed = [
            await publish(client, chat, {"user": "bob", "text": f"while away {n}"}, type="chat") for n in range(7)
        ]
        missed_scores = [await publish(client, score, {"team": "Comets", "score": n}, type="score") for n in (1, 2)]
        await open_demo(page, demo_url(pod, transport, name))
        await page.wait_for_selector("#resume-chat.done", timeout=10_000)
        await page.wait_for_selector("#resume-score.done", timeout=10_000)
        assert await page.inner_text("#resume-chat") == f"Chat resumed from {seen[-1]}, 7 missed events recovered"
        assert "2 missed events recovered" in await page.inner_text("#resume-score")
        live = await publish(client, chat, {"user": "ada", "text": "back live"}, type="chat")
        await wait_feed(page, chat, 8)
        assert await feed_ids(page, chat) == [*missed, live]
        assert await feed_ids(page, score) == missed_scores
    assert await page.locator("#chat-list li.msg").count() == 5 + 7 + 1  # kept from before the reload, then new
    assert await page.inner_text("#scoreboard li[data-team=Comets] .score") == "2"
    assert await page.inner_text("#scoreboard li[data-team=Otters] .score") == "4"
    assert await page.inner_text("#gaps") == "0"
    assert await page.is_hidden("#gap-banner")
    await page.close()


async def test_demo_page_shows_a_gap_banner(browser: Browser) -> None:
    """A resume from an id older than the retained history shows the gap banner with both ids."""
    with gateway(*QUICK_STOP, "--history-max-events", "3") as small:
        async with httpx.AsyncClient(base_url=small.url, timeout=10) as client:
            page = await browser.new_page()
            await open_demo(page, demo_url(small, "ws", "gap"))
            first = await publish(client, "chat:gap", {"user": "ada", "text": "first"}, type="chat")
            await wait_feed(page, "chat:gap", 1)
            await page.goto("about:blank")
            later = [await publish(client, "chat:gap", {"user": "ada", "text": f"{n}"}, type="chat") for n in range(10)]
            await open_demo(page, demo_url(small, "ws", "gap"))
            await page.wait_for_selector("#gap-banner:not([hidden])", timeout=10_000)
            banner = await page.inner_text("#gap-banner")
            assert first in banner
            assert later[-3] in banner
            assert await page.inner_text("#gaps") == "1"
            await page.close()


async def test_demo_page_screenshot(pod: GatewayProcess, browser: Browser, tmp_path: Path) -> None:
    """The page at 1280x800 with a conversation, a game in progress and a reload behind it; saved as a test
    artifact (and as the README's picture when ``FLEETCAST_DEMO_SCREENSHOT`` names a path)."""
    name = "screenshot"
    chat, score = f"chat:{name}", f"scores:{name}"
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await open_demo(page, demo_url(pod, "ws", name))
    await page.evaluate("localStorage.setItem('demo:name', 'you'); document.getElementById('chat-name').value = 'you'")
    lines = [
        ("maya", "Kick-off in two minutes, who's watching?"),
        ("jon", "Here! Otters all the way"),
        ("you", "Falcons have the better defence this season"),
        ("maya", "Bold. Let's see after the first half."),
    ]
    async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
        for user, text in lines:
            await publish(client, chat, {"user": user, "text": text}, type="chat")
        for team, points in [("Falcons", 3), ("Otters", 2), ("Comets", 1), ("Otters", 5), ("Lynx", 2), ("Falcons", 6)]:
            await publish(client, score, {"team": team, "score": points}, type="score")
        await wait_feed(page, score, 6)
        await page.goto("about:blank")
        for user, text in [("jon", "GOAL! Otters level it"), ("priya", "just joined, what did I miss?")]:
            await publish(client, chat, {"user": user, "text": text}, type="chat")
        await publish(client, score, {"team": "Otters", "score": 6}, type="score")
        await publish(client, chat, {"minute": 38, "note": "half-time soon"}, type="match-clock")
        await open_demo(page, demo_url(pod, "ws", name))
        await page.wait_for_selector("#resume-chat.done", timeout=10_000)
        await publish(client, chat, {"user": "maya", "text": "Recovered all of it after my reload"}, type="chat")
        await wait_feed(page, chat, 4)
    await page.wait_for_timeout(700)  # let the last animation settle
    target = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "demo.png")
    png = await page.screenshot(path=str(target))
    assert len(png) > 10_000
    await page.close()
