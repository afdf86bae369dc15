"""Fixtures for the operator tests: a kmock emulator and a real redis-server, both stopped after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import kmock
import pytest

from tests.operator.harness import emulator
from tests.support.processes import RedisServer, redis_server


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
async def k8s() -> AsyncIterator[tuple[kmock.KubernetesEmulator, str]]:
    async with emulator() as pair:
        yield pair
