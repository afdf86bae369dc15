"""The close pacer of drains and sheds: the configured rate on average, late wake-ups included, and never more
than the rate plus 5 % in any second."""

from __future__ import annotations

import random

import pytest

from fleetcast.drain.pacing import Pacer, pacing


def run(pacer: Pacer, total: int, wakeups: list[float]) -> list[float]:
    """Close ``total`` sessions, waking at the given times; the close times."""
    times: list[float] = []
    for now in wakeups:
        n = min(pacer.due(now), total - len(times))
        pacer.closed(now, n)
        times.extend([now] * n)
        if len(times) == total:
            break
    return times


def ticks(start: float, step: float, until: float) -> list[float]:
    count = int((until - start) / step) + 1
    return [start + i * step for i in range(count)]


@pytest.mark.parametrize("step", [0.02, 0.1, 0.25, 0.5])
def test_late_wakeups_keep_the_average_rate(step: float) -> None:
    """5,000 closes at 1,000/s take about 5 s whether the loop wakes every 20 ms or every 500 ms."""
    times = run(Pacer(1000, 0.0), 5000, ticks(0.0, step, 30.0))
    assert len(times) == 5000
    assert 4.5 <= times[-1] - times[0] <= 5.0 + step
    assert pacing(times)["max_per_second"] <= 1050


def test_a_long_stall_never_becomes_a_burst() -> None:
    """After a 3 s stall the pacer closes at most the one-second limit at once, then follows the rate again."""
    pacer = Pacer(100, 0.0)
    wakeups = [*ticks(0.0, 0.02, 1.0), *ticks(4.0, 0.02, 20.0)]
    times = run(pacer, 600, wakeups)
    assert len(times) == 600
    assert pacing(times)["max_per_second"] <= pacer.limit == 105


def test_random_wakeups_never_exceed_the_limit() -> None:
    """Jittered wake-ups (1 to 400 ms apart) over several rates: any one-second window holds at most the limit."""
    rng = random.Random(7)
    for rate in (1, 7, 50, 333, 2000):
        now, wakeups = 0.0, []
        while now < 40:
            wakeups.append(now)
            now += rng.uniform(0.001, 0.4)
        pacer = Pacer(rate, 0.0)
        times = run(pacer, int(rate * 10), wakeups)
        assert pacing(times)["max_per_second"] <= pacer.limit, rate


def test_the_first_close_is_due_at_once_and_rates_must_be_positive() -> None:
    assert Pacer(1, 0.0).due(0.0) == 1
    with pytest.raises(ValueError, match="positive"):
        Pacer(0, 0.0)
