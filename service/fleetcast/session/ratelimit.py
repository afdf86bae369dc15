"""Token buckets for publish rates: per channel (the Channel's ``publishPerSecond``) and per WebSocket client.

Each pod keeps its own buckets, so a fleet of N pods admits up to N times a channel's rate in the worst case
(publishers spread over pods); exact fleet-wide limits would cost a Redis round trip per publish. Buckets of
idle channels are forgotten, so the table stays bounded by the channels published to recently.
"""

from __future__ import annotations

import time

_MAX_CHANNEL_BUCKETS = 10_000


class TokenBucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def take(self, now: float | None = None) -> float:
        """Take one token: 0.0 if granted, else the seconds until one will be there."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


class ChannelRates:
    """One bucket per rate-limited channel."""

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, channel: str, rate: float) -> float:
        bucket = self._buckets.get(channel)
        if bucket is None or bucket.rate != rate:
            if len(self._buckets) >= _MAX_CHANNEL_BUCKETS:
                self._forget_idle()
            bucket = self._buckets[channel] = TokenBucket(rate)
        return bucket.take()

    def _forget_idle(self) -> None:
        now = time.monotonic()
        for channel in [c for c, b in self._buckets.items() if b.full(now)]:
            del self._buckets[channel]
        if len(self._buckets) >= _MAX_CHANNEL_BUCKETS:  # all busy: start over rather than grow
            self._buckets.clear()
