"""Just enough of three wire protocols for a load client, as pure functions: no I/O.

- RFC 6455 client frames (masked, final) and a parser of server frames (unmasked, unfragmented);
- HTTP/1.1 chunked transfer decoding for SSE bodies;
- Engine.IO v4 / Socket.IO v5 packets over a WebSocket: ``0{...}`` open, ``2`` ping, ``3`` pong, ``40`` connect,
  ``42[...]`` event, ``41`` disconnect, ``44`` connect error.

It deliberately skips what a benchmark against well-behaved loopback servers does not need: UTF-8 validation,
fragmented messages, binary Socket.IO packets, acks, HTTP long-polling.
"""

from __future__ import annotations

import base64
import os
import struct

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame (RFC 6455 section 5.3). The mask is all zeros: legal (any 32-bit value
    is), and it keeps the client's CPU off the benchmark; the servers unmask as usual."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return header + b"\x00\x00\x00\x00" + payload


def parse_frames(buffer: bytes) -> tuple[list[tuple[int, int, int]], int]:
    """Complete server frames in ``buffer`` as ``(opcode, start, end)`` of their payloads, and the offset where
    the incomplete rest begins."""
    frames = []
    i = 0
    size = len(buffer)
    while size - i >= 2:
        length = buffer[i + 1] & 0x7F
        start = i + 2
        if length == 126:
            if size - i < 4:
                break
            length = int.from_bytes(buffer[i + 2 : i + 4])
            start = i + 4
        elif length == 127:
            if size - i < 10:
                break
            length = int.from_bytes(buffer[i + 2 : i + 10])
            start = i + 10
        end = start + length
        if end > size:
            break
        frames.append((buffer[i] & 0x0F, start, end))
        i = end
    return frames, i


def upgrade_request(host: str, port: int, path: str, subprotocol: str | None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    head = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    )
    if subprotocol:
        head += f"Sec-WebSocket-Protocol: {subprotocol}\r\n"
    return (head + "\r\n").encode()


def sse_request(host: str, port: int, path: str, last_event_id: str | None) -> bytes:
    head = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n"
    if last_event_id:
        head += f"Last-Event-ID: {last_event_id}\r\n"
    return (head + "\r\n").encode()


class Dechunker:
    """Decodes an HTTP/1.1 ``Transfer-Encoding: chunked`` body incrementally (chunk extensions and trailers
    ignored)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._left = 0
        """Bytes of the current chunk still to come, plus its trailing CRLF (-1: expecting a size line)."""
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        buffer = self._buffer + data if self._buffer else data
        out = []
        i = 0
        while i < len(buffer) and not self.finished:
            if self._left == 0:
                end = buffer.find(b"\r\n", i)
                if end < 0:
                    break
                size = int(buffer[i:end].split(b";", 1)[0], 16)
                i = end + 2
                if size == 0:
                    self.finished = True
                    break
                self._left = size + 2
                continue
            take = min(self._left, len(buffer) - i)
            chunk_data = max(0, min(take, self._left - 2))
            out.append(buffer[i : i + chunk_data])
            self._left -= take
            i += take
        self._buffer = buffer[i:]
        return b"".join(out)


def sse_blocks(buffer: bytes) -> tuple[list[bytes], int]:
    """Complete SSE blocks (separated by a blank line) and the offset of the incomplete rest; fleetcast ends
    lines with ``\\n`` only."""
    blocks: list[bytes] = []
    i = 0
    while True:
        end = buffer.find(b"\n\n", i)
        if end < 0:
            return blocks, i
        blocks.append(buffer[i:end])
        i = end + 2


def sse_field(block: bytes, name: bytes) -> bytes | None:
    """The value of the first ``name: value`` line of an SSE block."""
    prefix = name + b": "
    if block.startswith(prefix):
        start = len(prefix)
    else:
        at = block.find(b"\n" + prefix)
        if at < 0:
            return None
        start = at + 1 + len(prefix)
    end = block.find(b"\n", start)
    return block[start:] if end < 0 else block[start:end]


def number_after(payload: bytes, key: bytes, start: int = 0) -> float | None:
    """The JSON number following ``key`` (such as ``b'"ts":'``) in ``payload``; a scan, not a JSON parse."""
    at = payload.find(key, start)
    if at < 0:
        return None
    begin = at + len(key)
    end = begin
    size = len(payload)
    while end < size and payload[end] in b"0123456789.-+eE ":
        end += 1
    try:
        return float(payload[begin:end])
    except ValueError:
        return None


def string_after(payload: bytes, key: bytes) -> str | None:
    """The JSON string following ``key`` (such as ``b'"id":"'``), assuming it has no escapes."""
    at = payload.find(key)
    if at < 0:
        return None
    begin = at + len(key)
    end = payload.find(b'"', begin)
    return payload[begin:end].decode() if end >= 0 else None


def trailing_string(payload: bytes) -> str | None:
    """The last array element of a Socket.IO event if it is a string: the offset connection state recovery
    appends (``42["event",{...},"<offset>"]``)."""
    if not payload.endswith(b'"]'):
        return None
    begin = payload.rfind(b',"', 0, len(payload) - 2)
    return payload[begin + 2 : -2].decode() if begin >= 0 else None
