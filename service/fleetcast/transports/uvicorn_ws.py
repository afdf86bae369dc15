"""The WebSocket fast path: uvicorn's sans-I/O WebSocket protocol, offering the app a direct frame writer.

ASGI's ``send`` costs an await, a dict and an encode per message per connection; at fan-out that dominates
(docs/decisions.md, "WebSocket fast path"). uvicorn lets a server choose its WebSocket protocol class
(``Config(ws=...)``); this subclass puts a :class:`FrameWriter` into ``scope["extensions"]`` so the session
core can write pre-built frames straight to the transport, one buffer per connection per batch, and read the
transport's write-buffer size to judge slow consumers. Everything else (handshake, pings, close handshake,
reading client frames) stays uvicorn's.

This module is the only place that touches uvicorn's internals: the attributes of ``WebSocketsSansIOProtocol``
in :data:`UVICORN_ATTRIBUTES`, the ones its own ``send`` uses. ``tests/unit/test_uvicorn_canary.py`` opens a real
connection through this class and fails, naming what is missing, on a uvicorn that no longer has them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

UVICORN_ATTRIBUTES = (
    "conn",
    "transport",
    "loop",
    "queue",
    "writable",
    "handshake_complete",
    "close_sent",
    "disconnected",
    "read_paused",
    "close_timer",
    "request",
    "response",
)
"""What :class:`FrameWriter` and :class:`FleetcastWebSocketProtocol` read or write on uvicorn's protocol."""
EXTENSION = "fleetcast.frames"
ABORT_AFTER_CLOSE_SECONDS = 10.0
"""A client that does not read our close frame within this time (a stuck reader) is cut off."""


class FrameWriter:
    """Direct access to one WebSocket connection's transport, for pre-built server frames."""

    __slots__ = ("_protocol", "on_writable")

    def __init__(self, protocol: FleetcastWebSocketProtocol) -> None:
        self._protocol = protocol
        self.on_writable: Callable[[], None] | None = None
        """Called when the transport's buffer drains below its low-water mark after pausing writes."""

    @property
    def writable(self) -> bool:
        return self._protocol.writable.is_set()

    @property
    def open(self) -> bool:
        p = self._protocol
        return p.handshake_complete and not p.close_sent and not p.disconnected and not p.transport.is_closing()

    def write(self, frames: bytes) -> int:
        """Write complete frames and return the bytes the transport now holds unsent; once the connection is
        closing, write nothing and return 0. The hot path of every delivery: one check, one write, one size."""
        p = self._protocol
        if p.close_sent or p.disconnected:
            return 0
        transport = p.transport
        if transport.is_closing():
            return 0
        transport.write(frames)
        return transport.get_write_buffer_size()

    def buffered(self) -> int:
        p = self._protocol
        if p.disconnected or p.transport.is_closing():
            return 0
        return p.transport.get_write_buffer_size()

    async def wait_writable(self, timeout: float) -> bool:
        """Wait until the transport's buffer fell below its low-water mark; False on timeout."""
        try:
            await asyncio.wait_for(self._protocol.writable.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def close(self, code: int, reason: str) -> None:
        """Send a close frame now (behind whatever is buffered) and cut the connection if the client never
        reads it. Unlike ASGI ``websocket.close`` this does not wait for the buffer to drain first."""
        p = self._protocol
        if not self.open:
            return
        p.conn.send_close(code, reason)
        p.transport.write(b"".join(p.conn.data_to_send()))
        p.close_sent = True
        p.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        if p.read_paused:
            p.read_paused = False
            p.transport.resume_reading()
        p.close_timer = p.loop.call_later(ABORT_AFTER_CLOSE_SECONDS, p.transport.abort)


class FleetcastWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol plus the :data:`EXTENSION` frame writer."""

    frame_writer: FrameWriter | None = None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # The scope holds its own copy of the headers now. websockets' parser generator keeps the request
        # alive for the connection's life; emptying its headers returns ~1 KiB per idle connection.
        event.headers.clear()
        scope = getattr(self, "scope", None)
        if scope is not None:
            self.frame_writer = FrameWriter(self)
            scope.setdefault("extensions", {})[EXTENSION] = self.frame_writer

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":
            # The handshake is done: its request and response (headers and all) are not read again, and
            # keeping them would cost every idle connection a few KiB for its whole life.
            self.request = None  # type: ignore[assignment]
            self.response = None  # type: ignore[assignment]

    def resume_writing(self) -> None:
        super().resume_writing()
        writer = self.frame_writer
        if writer is not None and writer.on_writable is not None and writer.open:
            writer.on_writable()
