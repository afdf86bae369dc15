"""Server-Sent Events framing (the WHATWG ``text/event-stream`` format).

Event payloads are compact JSON and therefore one line each, so an event is exactly
``id: <id>\\nevent: <type>\\ndata: <json>\\n\\n``. Control events carry the ``fleetcast.`` prefix and no id, so a
browser's ``lastEventId`` always names a real event of the channel.
"""

from __future__ import annotations

import json

PING = b": ping\n\n"
GAP_EVENT = "fleetcast.gap"
RECONNECT_EVENT = "fleetcast.reconnect"
JOIN_EVENT = "fleetcast.join"
LEAVE_EVENT = "fleetcast.leave"
"""Presence announcements (:mod:`fleetcast.hub.notice` frames them): no id, like the other control events."""


def event(event_id: str, type: str, data: bytes) -> bytes:
    return b"id: " + event_id.encode() + b"\nevent: " + type.encode() + b"\ndata: " + data + b"\n\n"


def retry(ms: int) -> bytes:
    return b"retry: %d\n\n" % ms


def control(name: str, payload: dict[str, object]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def gap(requested: str, earliest: str | None) -> bytes:
    return control(GAP_EVENT, {"requested": requested, "earliest": earliest})


def reconnect(reason: str, after_ms: int) -> bytes:
    """Tell the client why the stream ends and when to come back; the ``retry:`` makes EventSource obey."""
    return control(RECONNECT_EVENT, {"reason": reason, "after_ms": after_ms}) + retry(after_ms)
