"""Event ids: ``<ms>-<seq>``, the Redis stream id format, strictly increasing per channel.

Ids are compared as ``(ms, seq)`` pairs, never as strings ("9-0" < "10-0"). ``0-0`` is the position before
the first event of every channel, so ``since=0-0`` asks for the whole retained history.
"""

from __future__ import annotations

import re

EventId = tuple[int, int]
ZERO: EventId = (0, 0)
_ID = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")
_MAX = 2**64 - 1


def parse(text: str) -> EventId:
    """Parse ``<ms>-<seq>`` (or ``<ms>``, meaning seq 0); ``ValueError`` with a readable message otherwise."""
    match = _ID.match(text)
    if match is None:
        raise ValueError(
            f"{text[:64]!r} is not an event id of the form <milliseconds>-<sequence>, such as 1764350000000-0"
        )
    ms, seq = int(match.group(1)), int(match.group(2) or 0)
    if ms > _MAX or seq > _MAX:
        raise ValueError(f"{text[:64]!r} is out of range for an event id")
    return ms, seq


def format_id(event_id: EventId) -> str:
    return f"{event_id[0]}-{event_id[1]}"


def next_id(last: EventId, now_ms: int) -> EventId:
    """The id the next event gets, as Redis assigns it: the clock, or one past the last id if the clock lags."""
    if now_ms > last[0]:
        return now_ms, 0
    return last[0], last[1] + 1
