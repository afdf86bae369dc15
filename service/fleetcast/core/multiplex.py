"""Many channels on one Server-Sent Events stream: the composite cursor and the frames that carry it.

A browser's ``EventSource`` remembers only the last ``id:`` it saw and sends it back as ``Last-Event-ID``. On a
stream of many channels, every frame's ``id:`` must therefore stand for the position of *every* channel: it is
the stream's cursor after that frame. The cursor is text of the form::

    1.<check>.<base>.<p0>.<p1>.(...).<pN-1>

``1``
    the format version.
``<check>``
    CRC-32 of the request's channel names joined by newlines, in base62: a cursor resumes only the channel list
    it was made for, in the same order (another list gets 400).
``<base>``
    a time in milliseconds, base62; positions are written relative to it, so they stay a few characters long.
``<pi>``
    the position of the i-th channel of the request: the id ``<ms>-<seq>`` of the last event of that channel the
    stream sent, written ``[~]<ms - base>[-<seq>]`` in base62 (``~`` marks a negative difference, ``-<seq>`` is
    left out when the sequence is 0); empty for ``0-0``, the position before a channel's first event.

Base62 digits are ``0-9A-Za-z``; the separators ``.``, ``-`` and ``~`` are unreserved in URLs, so a cursor goes
into a header or a query string as it is.

Cost. A frame's ``id:`` line is the cursor with one position changed: the one of the frame's channel. A
:class:`Cursor` keeps the positions as encoded tokens, so the line is the text before that position, the
event's token and the text after it. Tokens are relative to the pod's base, the same for every stream on the pod,
so the hub's shared batch encodes each event's token and frame once (:func:`token`, :func:`event`); per stream
and event there are only the joins.

This module does no I/O. It does not decide who may read a channel: a cursor only says where to resume the
channels the request names, each of which is checked like a single subscription.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

from fleetcast.core import ids
from fleetcast.core.sse import GAP_EVENT, control

VERSION = "1"
_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_VALUE = {c: i for i, c in enumerate(_DIGITS)}
_MAX = 2**64 - 1
_TOKEN = re.compile(r"(~?)([0-9A-Za-z]{1,11})(?:-([0-9A-Za-z]{1,11}))?")
_NUMBER = re.compile(r"[0-9A-Za-z]{1,11}")
_TOKEN_MAX = 24
"""Characters of the longest position token (sign, 11 digits, dash, 11 digits)."""


def b62(n: int) -> str:
    """``n`` (>= 0) in base62."""
    if n == 0:
        return "0"
    out = []
    while n:
        n, r = divmod(n, 62)
        out.append(_DIGITS[r])
    return "".join(reversed(out))


def _from_b62(text: str) -> int:
    n = 0
    for c in text:
        n = n * 62 + _VALUE[c]
    return n


def check(channels: Sequence[str]) -> str:
    """The cursor's check of a channel list: base62 CRC-32 of the names joined by newlines."""
    return b62(zlib.crc32("\n".join(channels).encode()))


def token(event_id: str, base: int) -> str:
    """A position (an event id ``<ms>-<seq>``) as a cursor token relative to ``base``."""
    ms_text, _, seq_text = event_id.partition("-")
    ms = int(ms_text)
    seq = int(seq_text) if seq_text else 0
    if ms == 0 and seq == 0:
        return ""
    delta = ms - base
    text = b62(delta) if delta >= 0 else "~" + b62(-delta)
    return text if seq == 0 else text + "-" + b62(seq)


def position(text: str, base: int) -> ids.EventId:
    """The event id a cursor token stands for; ``ValueError`` if it is not a token or out of range."""
    if text == "":
        return ids.ZERO
    match = _TOKEN.fullmatch(text)
    if match is None:
        raise ValueError(f"{text[:_TOKEN_MAX]!r} is not a position")
    sign, delta, seq = match.groups()
    ms = base - _from_b62(delta) if sign else base + _from_b62(delta)
    seq_value = _from_b62(seq) if seq else 0
    if not (0 <= ms <= _MAX and seq_value <= _MAX):
        raise ValueError(f"position {text!r} is out of range for an event id")
    return ms, seq_value


class Cursor:
    """The positions of one stream's channels, and the ``id:`` lines that state all of them after each frame.

    ``tokens`` are the positions, already encoded relative to ``base`` (see :func:`token`). The cursor is what
    the stream has *written*: :meth:`frames` moves a channel's position as it writes that channel's events.
    """

    __slots__ = ("_head", "_tokens", "base", "channels")

    def __init__(self, channels: Sequence[str], positions: Sequence[ids.EventId], base: int) -> None:
        if len(channels) != len(positions):
            raise ValueError("one position per channel")
        self.channels = tuple(channels)
        self.base = base
        self._head = f"{VERSION}.{check(channels)}.{b62(base)}".encode()
        self._tokens = [token(ids.format_id(p), base).encode() for p in positions]

    def text(self) -> str:
        return b".".join((self._head, *self._tokens)).decode()

    def id_frame(self) -> bytes:
        """The cursor alone: ``id: <cursor>`` and the blank line. It dispatches no event, but sets the browser's
        last event id (the WHATWG parser takes the id at every blank line), so a stream that drops before its
        first event still resumes from where it began."""
        return b"id: " + self.text().encode() + b"\n\n"

    def frames(self, index: int, tokens: Sequence[bytes], frames: Sequence[bytes]) -> bytes:
        """The frames of a batch of the ``index``-th channel, each preceded by its ``id:`` line, and the cursor
        moved to the batch's last event. ``tokens[j]`` and ``frames[j]`` are the j-th event's position token and
        frame (:func:`event`), shared by every stream on the pod."""
        if not frames:
            return b""
        own = self._tokens
        before = b"id: " + b".".join((self._head, *own[:index])) + b"."
        after = (b"." + b".".join(own[index + 1 :]) if index + 1 < len(own) else b"") + b"\n"
        parts: list[bytes] = []
        for event_token, frame in zip(tokens, frames, strict=True):
            parts += (before, event_token, after, frame)
        own[index] = tokens[-1]
        return b"".join(parts)


def parse(text: str, channels: Sequence[str]) -> list[ids.EventId]:
    """The positions of a cursor a client sent back for a stream of ``channels``, one per channel; ``ValueError``
    with a message a client can act on if it is malformed, made for another channel list, or names more or fewer
    channels than the request."""
    if len(text) > 32 + len(channels) * (_TOKEN_MAX + 1):
        raise ValueError(f"the cursor is {len(text)} characters long, more than {len(channels)} channels need")
    parts = text.split(".")
    if len(parts) < 3 or parts[0] != VERSION:
        raise ValueError(f"{text[:64]!r} is not a cursor of this stream (format version {VERSION})")
    got_check, base_text, tokens = parts[1], parts[2], parts[3:]
    if got_check != check(channels):
        raise ValueError("the cursor was made for another list of channels (the same channels, in the same order)")
    if len(tokens) != len(channels):
        raise ValueError(f"the cursor names {len(tokens)} channels, the request {len(channels)}")
    if not _NUMBER.fullmatch(base_text):
        raise ValueError(f"{base_text!r} is not the base of a cursor")
    base = _from_b62(base_text)
    return [position(t, base) for t in tokens]


def event(channel: bytes, event_id: str, type: str, data: bytes) -> bytes:
    """One event of a multiplexed stream, without its ``id:`` line (which is per stream): ``channel`` is the
    channel name as a JSON string (names need no escaping, see :mod:`fleetcast.core.channels`)."""
    head = b"event: " + type.encode() + b'\ndata: {"channel":' + channel + b',"id":"' + event_id.encode()
    return head + b'","data":' + data + b"}\n\n"


def gap(channel: str, requested: str, earliest: str | None) -> bytes:
    """The gap signal of one channel of the stream; the other channels are not concerned."""
    return control(GAP_EVENT, {"channel": channel, "requested": requested, "earliest": earliest})
