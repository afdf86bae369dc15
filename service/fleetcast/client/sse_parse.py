"""A ``text/event-stream`` parser, line by line, as the WHATWG EventSource reads it. Pure: no I/O.

It keeps what a client needs: ``event``, ``data`` (lines joined by ``\\n``), ``id`` and ``retry``. Comments
(``: ping``) are heartbeats and yield nothing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SseFrame:
    """One dispatched event: ``id`` is the id field of this block (None if it had none)."""

    event: str
    data: str
    id: str | None


@dataclass(frozen=True, slots=True)
class Retry:
    """A ``retry:`` field: the reconnection time the server asks for, in milliseconds."""

    ms: int


class SseParser:
    """Feed lines without their line ending; :meth:`feed` returns what a line completes, if anything."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> SseFrame | Retry | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            return Retry(int(value))
        return None

    def _dispatch(self) -> SseFrame | None:
        event, data, event_id = self._event or "message", self._data, self._id
        self._event, self._data, self._id = "", [], None
        if not data:
            return None
        return SseFrame(event, "\n".join(data), event_id)
