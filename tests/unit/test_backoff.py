"""The one backoff: a doubling window, drawn from with full jitter (clients) or upper-half jitter (servers)."""

from __future__ import annotations

import random

import pytest

from fleetcast.core.backoff import jittered_ms, server_delay_ms, window_ms


@pytest.mark.parametrize(("attempt", "window"), [(0, 500), (1, 1000), (4, 8000), (5, 10_000), (99, 10_000)])
def test_the_window_doubles_up_to_the_cap(attempt: int, window: int) -> None:
    assert window_ms(attempt) == window


@pytest.mark.parametrize("floor", [0.0, 0.5])
def test_draws_cover_exactly_the_floor_to_the_window(floor: float) -> None:
    rng = random.Random(3)
    draws = [jittered_ms(2, floor=floor, rng=rng) for _ in range(4000)]
    assert min(draws) >= 2000 * floor
    assert max(draws) <= 2000
    assert min(draws) < 2000 * floor + 100
    assert max(draws) > 1900


def test_a_server_never_says_come_back_at_once() -> None:
    """Told "busy, come back", a client waits at least half the window: 250-500 ms at the first attempt; an SSE
    stream's retry (attempt 1 of the configured retry) lies in [retry, 2 retry]."""
    draws = [server_delay_ms() for _ in range(2000)]
    assert min(draws) >= 250
    assert max(draws) <= 500
    retries = [server_delay_ms(1, base_ms=1000, cap_ms=2000) for _ in range(2000)]
    assert min(retries) >= 1000
    assert max(retries) <= 2000


def test_a_negative_attempt_is_a_bug_said_plainly() -> None:
    with pytest.raises(ValueError, match="attempt"):
        jittered_ms(-1)
