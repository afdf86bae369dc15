"""Reconnect delays: full-jitter exponential backoff, and the server's advice for each way a session ends.

Full jitter (base 500 ms, cap 10 s, docs/protocol.md) spreads a crowd of clients that lost the same pod over
the whole window instead of sending them back in waves. The first retry may come at once; each failed attempt
doubles the window until the cap; a successful subscribe resets it.

:func:`advice_for` turns a WebSocket close code into what to do next, using the server's own table
(:mod:`fleetcast.core.disconnects`) and then the ranges: 4000-4099 terminal, 4100-4199 back off. An explicit
``after_ms`` from the server (WS ``reconnect``, SSE ``fleetcast.reconnect`` or ``retry:``) is obeyed as it is,
with no backoff on top: the server already jittered it, and a drain paces clients by it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from fleetcast.core import disconnects
from fleetcast.core.backoff import BASE_MS, CAP_MS, jittered_ms

Next = Literal["stop", "backoff"]

_TERMINAL_RFC_CODES = frozenset({1002, 1003, 1007, 1008, 1010})
"""Standard close codes that say the client did something retrying cannot fix."""


def full_jitter_ms(
    attempt: int, *, base_ms: int = BASE_MS, cap_ms: int = CAP_MS, rng: random.Random | None = None
) -> int:
    """A uniform pick in ``[0, min(cap_ms, base_ms * 2**attempt)]`` (``attempt`` counts from 0)."""
    return jittered_ms(attempt, base_ms=base_ms, cap_ms=cap_ms, rng=rng)


@dataclass
class Backoff:
    """The attempt counter of one client. :meth:`next_ms` is the delay before the next attempt."""

    base_ms: int = BASE_MS
    cap_ms: int = CAP_MS
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0
    """Failed attempts since the last success."""

    def next_ms(self) -> int:
        """The delay before the next attempt, growing the window for the one after."""
        delay = full_jitter_ms(self.attempt, base_ms=self.base_ms, cap_ms=self.cap_ms, rng=self.rng)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """A success (a subscribe confirmed, an SSE stream opened): the next failure starts from the base again."""
        self.attempt = 0


def advice_for(code: int | None) -> Next:
    """Whether a close with ``code`` (None: no close frame, the connection was lost) ends the client or means
    reconnecting with backoff. A close the server announced with ``after_ms`` is not judged here."""
    if code is None:
        return "backoff"
    for entry in disconnects.ALL:
        if entry.code == code:
            return "stop" if entry.advice == "none" else "backoff"
    if 4000 <= code <= 4099 or code in _TERMINAL_RFC_CODES:
        return "stop"
    return "backoff"
