"""How fast a drain or a shed closes sessions: ``rate`` per second on average, even when the loop wakes late.

A pod that is drained while it is busy with fan-out wakes the closing loop late: every 100-300 ms instead of
every 20. A token bucket small enough to keep bursts small (50 ms worth) then throws away most of its tokens,
and a drain configured for 5 s took 11 s (docs/benchmarks.md, W6). So closes follow a *schedule* instead: at
any moment, ``rate`` times the seconds since the start are due, and a late wake-up closes what fell due while
it slept. The one limit is the one clients and the next pods care about: no one-second window ever holds more
than ``rate`` plus a small allowance, however late the loop was.

Pure and clock-driven (callers pass ``time.monotonic()``), so its guarantees are unit-tested without a loop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence


class Pacer:
    def __init__(self, rate: float, now: float) -> None:
        if rate <= 0:
            raise ValueError("a close rate must be positive")
        self.rate = rate
        self.limit = int(rate + max(1.0, rate / 20))
        """Closes any one-second window may hold: the rate plus 5 % (at least one)."""
        self._started = now
        self._done = 0
        self._recent: deque[float] = deque()
        """Times of the closes less than a second old (at most :attr:`limit`)."""

    def due(self, now: float) -> int:
        """How many sessions to close now: what the schedule says fell due, within the one-second limit."""
        recent = self._recent
        while recent and now - recent[0] >= 1.0:
            recent.popleft()
        scheduled = int(self.rate * (now - self._started)) + 1 - self._done
        return max(0, min(scheduled, self.limit - len(recent)))

    def closed(self, now: float, count: int = 1) -> None:
        """Record ``count`` closes made at ``now``."""
        self._done += count
        self._recent.extend([now] * count)


def pacing(times: Sequence[float]) -> dict[str, float]:
    """How closes at monotonic ``times`` were spread: seconds from first to last, and the most in any
    one-second window."""
    if not times:
        return {"span_seconds": 0.0, "max_per_second": 0.0}
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return {"span_seconds": round(times[-1] - times[0], 3), "max_per_second": float(most)}
