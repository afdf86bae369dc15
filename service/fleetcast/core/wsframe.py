"""Server-to-client WebSocket frames, built once and written to many connections.

A server frame is unmasked (RFC 6455 section 5.1), and fleetcast sends no compressed frames, so the bytes of a
text frame depend only on its payload: one pre-built frame can be written as-is to every subscriber of a
channel. This is what makes fan-out cheap (see docs/decisions.md, "WebSocket fast path").
"""

from __future__ import annotations

import struct

_TEXT_FIN = 0x81


def text_frame(payload: bytes) -> bytes:
    """One complete, final, unmasked text frame carrying ``payload`` (which must be UTF-8)."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", _TEXT_FIN, length)
    elif length < 65536:
        header = struct.pack("!BBH", _TEXT_FIN, 126, length)
    else:
        header = struct.pack("!BBQ", _TEXT_FIN, 127, length)
    return header + payload
