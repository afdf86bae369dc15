"""Shared fixtures. Everything a test starts, it stops, by PID."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser, async_playwright

from tests.support.cluster import RedisCluster, redis_cluster
from tests.support.processes import RedisServer, redis_server
from tests.support.tokens import Keys

REQUIRE_BROWSER = os.environ.get("FLEETCAST_REQUIRE_BROWSER") == "1"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
"""Headless on a machine with no network but loopback: no sandbox (root), no background calls out."""


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A fresh redis-server (no persistence) for one test."""
    with redis_server() as server:
        yield server


@pytest.fixture
def keys() -> Iterator[Keys]:
    """Key material in files (HMAC secret, RSA public key, API keys) for one test's pods; removed after it."""
    made = Keys()
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture(scope="session")
def shared_cluster() -> Iterator[RedisCluster]:
    """A 3-master, 3-replica Redis Cluster for the session's tests that leave its nodes alone."""
    with redis_cluster() as cluster:
        yield cluster


def chromium_or_skip() -> str:
    """The Chromium binary for browser tests; a skip where it is absent, a failure where CI demands it."""
    if os.path.exists(CHROMIUM) or shutil.which("chromium"):
        return CHROMIUM if os.path.exists(CHROMIUM) else str(shutil.which("chromium"))
    message = f"Chromium is not installed at {CHROMIUM} (Debian: apt-get install chromium)"
    if REQUIRE_BROWSER:
        pytest.fail(message + "; FLEETCAST_REQUIRE_BROWSER=1 demands the browser tests run")
    pytest.skip(message)


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's headless Chromium driven by Playwright (never ``playwright install``), closed afterwards."""
    executable = chromium_or_skip()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()
