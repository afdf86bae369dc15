"""A presence join or leave of one channel, encoded at most once per wire format and shared by every subscriber.

The record comes as the broker stored it (:mod:`fleetcast.contract.presence`); clients see its public part only
(``client``, ``sub``, ``info``), never the pod or connection. Announcements carry no event id: they are not
history, and an SSE frame without ``id:`` leaves the browser's resume position alone.
"""

from __future__ import annotations

import json
from typing import Any

from fleetcast.core import sse, wsframe

KINDS = ("join", "leave")
SSE_EVENTS = {"join": sse.JOIN_EVENT.encode(), "leave": sse.LEAVE_EVENT.encode()}


class Notice:
    __slots__ = ("_mux", "_public", "_sse", "_ws", "channel", "kind", "record")

    def __init__(self, channel: str, kind: str, record: bytes) -> None:
        if kind not in KINDS:
            raise ValueError(f"presence announcements are join or leave, not {kind!r}")
        self.channel = channel
        self.kind = kind
        self.record = record
        self._public: dict[str, Any] | None = None
        self._ws: bytes | None = None
        self._sse: bytes | None = None
        self._mux: bytes | None = None

    def public(self) -> dict[str, Any]:
        """``{"client", "sub", "info"}`` of the entry (raises ValueError for a record that is not an entry)."""
        if self._public is None:
            raw = json.loads(self.record)
            if not isinstance(raw, dict) or "client" not in raw:
                raise ValueError("not a presence entry")
            self._public = {"client": raw["client"], "sub": raw.get("sub"), "info": raw.get("info")}
        return self._public

    def ws(self) -> bytes:
        """``{"op": "join"|"leave", "channel", "client", "sub", "info"}`` as one text frame."""
        if self._ws is None:
            message = {"op": self.kind, "channel": self.channel, **self.public()}
            self._ws = wsframe.text_frame(_dump(message))
        return self._ws

    def sse(self) -> bytes:
        """``event: fleetcast.join|leave`` with ``{"client", "sub", "info"}``, no ``id:``."""
        if self._sse is None:
            self._sse = b"event: " + SSE_EVENTS[self.kind] + b"\ndata: " + _dump(self.public()) + b"\n\n"
        return self._sse

    def mux(self) -> bytes:
        """As :meth:`sse`, the data naming the channel (a multiplexed stream carries many)."""
        if self._mux is None:
            data = _dump({"channel": self.channel, **self.public()})
            self._mux = b"event: " + SSE_EVENTS[self.kind] + b"\ndata: " + data + b"\n\n"
        return self._mux


def _dump(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
