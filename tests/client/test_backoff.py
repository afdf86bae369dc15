"""Unit tests of the client's pure parts: full-jitter backoff, close-code advice, the SSE parser."""

from __future__ import annotations

import random

import pytest

from fleetcast.client import Backoff, advice_for, full_jitter_ms
from fleetcast.client.sse_parse import Retry, SseFrame, SseParser
from fleetcast.core import disconnects


@pytest.mark.parametrize(("attempt", "window"), [(0, 500), (1, 1000), (2, 2000), (4, 8000), (5, 10_000), (60, 10_000)])
def test_full_jitter_stays_within_the_doubling_window_up_to_the_cap(attempt: int, window: int) -> None:
    """Every delay lies in [0, min(10 s, 500 ms * 2**attempt)], and the draws cover the window."""
    rng = random.Random(7)
    draws = [full_jitter_ms(attempt, rng=rng) for _ in range(2000)]
    assert min(draws) >= 0
    assert max(draws) <= window
    assert min(draws) < window * 0.1
    assert max(draws) > window * 0.9


def test_backoff_grows_per_failure_and_reset_starts_over() -> None:
    """Each next_ms widens the window for the next; reset (a confirmed subscribe) returns to the base window."""
    backoff = Backoff(rng=random.Random(1))
    for _ in range(6):
        backoff.next_ms()
    assert backoff.attempt == 6
    backoff.reset()
    assert backoff.attempt == 0
    assert all(0 <= Backoff(rng=random.Random(s)).next_ms() <= 500 for s in range(100))


def test_full_jitter_refuses_a_negative_attempt() -> None:
    """A negative attempt is a bug of the caller, said plainly."""
    with pytest.raises(ValueError, match="attempt"):
        full_jitter_ms(-1)


@pytest.mark.parametrize("entry", disconnects.ALL, ids=lambda d: f"{d.code}-{d.reason}")
def test_advice_follows_the_server_table(entry: disconnects.Disconnect) -> None:
    """Each code of the server's disconnect table is terminal exactly when its advice is 'none'."""
    assert advice_for(entry.code) == ("stop" if entry.advice == "none" else "backoff")


@pytest.mark.parametrize(
    ("code", "expected"),
    [(None, "backoff"), (1001, "backoff"), (1006, "backoff"), (1008, "stop"), (4000, "stop"), (4099, "stop"),
     (4042, "stop"), (4100, "backoff"), (4199, "backoff"), (4150, "backoff")],
)  # fmt: skip
def test_advice_uses_the_ranges_for_codes_outside_the_table(code: int | None, expected: str) -> None:
    """4000-4099 stop, 4100-4199 back off, a lost connection (no close frame) backs off."""
    assert advice_for(code) == expected


def test_sse_parser_reads_events_retry_and_skips_comments() -> None:
    """Fields as EventSource reads them: id/event/data per block, multi-line data joined, comments ignored."""
    parser = SseParser()
    lines = ["retry: 1500", "", ": ping", "", "id: 5-0", "event: update", "data: {\"a\":", "data: 1}", "",
             "event: fleetcast.gap", "data:{\"requested\":\"1-0\"}", ""]  # fmt: skip
    out = [f for f in map(parser.feed, lines) if f is not None]
    assert out == [
        Retry(1500),
        SseFrame("update", '{"a":\n1}', "5-0"),
        SseFrame("fleetcast.gap", '{"requested":"1-0"}', None),
    ]


def test_sse_parser_ignores_blocks_without_data_and_bad_retry() -> None:
    """A block with no data dispatches nothing; a non-numeric retry is ignored."""
    parser = SseParser()
    assert [parser.feed(line) for line in ["id: 1-0", "", "retry: soon", ""]] == [None, None, None, None]
