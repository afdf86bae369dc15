"""Every way fleetcast ends a session, as one table.

A :class:`Disconnect` says what the WebSocket close code is, what a person reads as the reason, and whether
and how the client should come back. SSE maps the same table onto a ``fleetcast.reconnect`` event and a
``retry:`` line (see :mod:`fleetcast.core.sse`). Codes follow docs/protocol.md: 4000-4099 are terminal, 4100-4199
ask the client to reconnect with backoff, 1012 asks it to reconnect after ``after_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Advice = Literal["none", "reconnect", "backoff"]


@dataclass(frozen=True, slots=True)
class Disconnect:
    code: int
    reason: str
    """A short, stable reason (also the ``reason`` of the SSE ``fleetcast.reconnect`` event)."""
    advice: Advice
    """``none``: do not reconnect; ``reconnect``: come back after the server's ``after_ms``;
    ``backoff``: come back with full-jitter backoff (base 500 ms, cap 10 s)."""

    @property
    def reconnect(self) -> bool:
        return self.advice != "none"


NORMAL = Disconnect(1000, "normal", "none")
TOO_BIG = Disconnect(1009, "message too big", "none")
INTERNAL = Disconnect(1011, "internal error", "backoff")
DRAIN = Disconnect(1012, "drain", "reconnect")
REBALANCE = Disconnect(1012, "rebalance", "reconnect")
"""The pod holds more than its share of the fleet's clients: come back after ``after_ms`` (wherever the Service
sends you; this pod stays ready and keeps serving)."""
OVERLOADED = Disconnect(1013, "overloaded", "backoff")
DRAINING = Disconnect(1013, "draining", "reconnect")
"""A new session reached a pod that is draining: come back after ``after_ms`` (to another pod)."""
UNAUTHORIZED = Disconnect(4001, "unauthorized", "none")
TOKEN_EXPIRED = Disconnect(4001, "token expired", "none")
"""The connection's token expired without a refresh: come back with a fresh token (SSE: the stream ends)."""
FORBIDDEN = Disconnect(4003, "forbidden", "none")
UNKNOWN_CHANNEL = Disconnect(4004, "unknown channel", "none")
PROTOCOL_ERROR = Disconnect(4400, "protocol error", "none")
SLOW_CONSUMER = Disconnect(4108, "slow consumer", "backoff")
RATE_LIMITED = Disconnect(4129, "rate limited", "backoff")
BROKER_DOWN = Disconnect(1013, "broker unavailable", "backoff")

ALL = (
    NORMAL, TOO_BIG, INTERNAL, DRAIN, REBALANCE, OVERLOADED, DRAINING, UNAUTHORIZED, TOKEN_EXPIRED, FORBIDDEN,
    UNKNOWN_CHANNEL, PROTOCOL_ERROR, SLOW_CONSUMER, RATE_LIMITED, BROKER_DOWN,
)  # fmt: skip
