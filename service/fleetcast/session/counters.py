"""Counts the session core keeps for metrics: what slow consumers cost."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SessionCounters:
    dropped: dict[str, int] = field(default_factory=lambda: {"dropOldest": 0, "conflate": 0})
    """Events a slow subscriber never got, by slow-consumer policy (superseded conflated values not counted)."""
    slow_disconnects: int = 0
    """Sessions closed with 4108 (slow consumer, ``disconnect`` policy or outbox limit)."""
