"""A Channel's status from what Redis holds: subscribers over the pods, events/s, latest id, stream length.

Pure: the Redis reads are in :mod:`fleetcast_operator.fleet_redis`; this module adds them up. Events per
second come from the growth of XINFO's ``entries-added`` between two refreshes, a counter that trimming does
not lower, so retention never shows as negative traffic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fleetcast.contract.heartbeat import Heartbeat


@dataclass(frozen=True, slots=True)
class StreamStats:
    """The family's streams (its base channel and the ``family:*`` channels found), summed."""

    streams: int = 0
    length: int = 0
    entries_added: int = 0
    latest_id: str | None = None
    truncated: bool = False
    """True when the scan stopped at its bound: the sums cover only the streams it saw."""


@dataclass(frozen=True, slots=True)
class Sample:
    """The counter and the time it was read, kept between refreshes to derive a rate."""

    at: float
    entries_added: int


def subscribers(family: str, heartbeats: Iterable[Heartbeat]) -> int:
    return sum(hb.subscriptions.get(family, 0) for hb in heartbeats)


def events_per_second(previous: Sample | None, current: Sample) -> float | None:
    """None until two samples exist (or after a counter reset, such as a Redis restart without persistence)."""
    if previous is None or current.at <= previous.at or current.entries_added < previous.entries_added:
        return None
    return round((current.entries_added - previous.entries_added) / (current.at - previous.at), 2)


def latest_of(ids: Iterable[str]) -> str | None:
    """The greatest stream id (``<ms>-<seq>``, compared numerically)."""
    best: tuple[int, int] | None = None
    best_text: str | None = None
    for text in ids:
        ms, _, seq = text.partition("-")
        try:
            key = (int(ms), int(seq or 0))
        except ValueError:
            continue
        if key != (0, 0) and (best is None or key > best):
            best, best_text = key, text
    return best_text


def channel_status(
    family: str, heartbeats: Iterable[Heartbeat], stats: StreamStats, rate: float | None
) -> dict[str, object]:
    beats = list(heartbeats)
    status: dict[str, object] = {
        "subscribers": subscribers(family, beats),
        "present": sum(hb.present.get(family, 0) for hb in beats),
        "streamLength": stats.length,
        "latestId": stats.latest_id or "",
    }
    if rate is not None:
        status["eventsPerSecond"] = rate
    return status
