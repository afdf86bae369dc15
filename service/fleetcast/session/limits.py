"""Per-session bounds: the ``session`` section of the settings (:mod:`fleetcast.settings`), standard library only
so that the command line can read its defaults without importing the session core."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-session bounds."""

    outbox_max_bytes: int = 4 * 1024 * 1024
    """A session holding more unsent bytes than this is a slow consumer."""
    replay_page: int = 500
    """Events per history read during a resume."""
    replay_pending_max: int = 10_000
    """Live events buffered per subscription while its replay runs."""
    replay_drain_seconds: float = 10.0
    """How long a replay waits for the client to take a page before calling it a slow consumer."""
    max_channels: int = 100
    """Subscriptions one connection may hold."""
    publish_per_second: float = 50.0
    """Publishes one connection may make per second (token bucket)."""
    publish_burst: float = 100.0
    """Publishes one connection may make at once before the rate applies."""
    subscribe_per_second: float = 20.0
    """Subscribe and unsubscribe requests one connection may make per second."""
    subscribe_burst: float = 200.0
    """... at once: a client resuming every channel after a reconnect (up to ``max_channels``) fits."""
    presence_reads_per_second: float = 5.0
    """``presence`` and ``presence_stats`` requests one connection may make per second (a page can be 1,000
    entries: a client looping on it would keep Redis scanning)."""
    presence_reads_burst: float = 20.0
    """... at once."""
    abuse_strikes: int = 20
    """Requests refused for rate in a row, after which the connection is cut off (4129)."""
