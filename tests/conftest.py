"""Shared fixtures. Everything a test starts, it stops, by PID."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.support.processes import RedisServer, redis_server

REQUIRE_BROWSER = os.environ.get("FLEETCAST_REQUIRE_BROWSER") == "1"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A fresh redis-server (no persistence) for one test."""
    with redis_server() as server:
        yield server


def chromium_or_skip() -> str:
    """The Chromium binary for browser tests; a skip where it is absent, a failure where CI demands it."""
    if os.path.exists(CHROMIUM) or shutil.which("chromium"):
        return CHROMIUM if os.path.exists(CHROMIUM) else str(shutil.which("chromium"))
    message = f"Chromium is not installed at {CHROMIUM} (Debian: apt-get install chromium)"
    if REQUIRE_BROWSER:
        pytest.fail(message + "; FLEETCAST_REQUIRE_BROWSER=1 demands the browser tests run")
    pytest.skip(message)
