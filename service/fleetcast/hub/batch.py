"""A batch of one channel's events, encoded at most once per wire format and shared by every subscriber."""

from __future__ import annotations

from collections.abc import Sequence

from fleetcast.broker.base import Event
from fleetcast.core import messages, multiplex, sse, wsframe


class Batch:
    """Events of one channel in id order, with their WebSocket and SSE encodings built on first use.

    Every subscriber of the channel on this pod gets the same bytes object: the per-subscriber cost of a
    delivery is one buffer write, not an encoding.
    """

    __slots__ = ("_mux", "_mux_base", "_sse", "_ws", "channel", "events")

    def __init__(self, channel: str, events: Sequence[Event]) -> None:
        self.channel = channel
        self.events = events
        self._ws: bytes | None = None
        self._sse: bytes | None = None
        self._mux: tuple[list[bytes], list[bytes]] | None = None
        self._mux_base = 0

    def __len__(self) -> int:
        return len(self.events)

    def ws(self) -> bytes:
        """Every event as its own complete WebSocket text frame, concatenated."""
        if self._ws is None:
            prefix = messages.event_prefix(self.channel)
            self._ws = b"".join(wsframe.text_frame(messages.event(prefix, e.id, e.type, e.data)) for e in self.events)
        return self._ws

    def sse(self) -> bytes:
        """Every event as an SSE frame, concatenated."""
        if self._sse is None:
            self._sse = b"".join(sse.event(e.id, e.type, e.data) for e in self.events)
        return self._sse

    def mux(self, base: int) -> tuple[list[bytes], list[bytes]]:
        """Per event, its cursor token relative to ``base`` and its multiplexed SSE frame without the ``id:``
        line (:mod:`fleetcast.core.multiplex`). Every stream on a pod uses the same base, so this is built once."""
        if self._mux is None or self._mux_base != base:
            channel = b'"' + self.channel.encode() + b'"'
            self._mux = (
                [multiplex.token(e.id, base).encode() for e in self.events],
                [multiplex.event(channel, e.id, e.type, e.data) for e in self.events],
            )
            self._mux_base = base
        return self._mux
