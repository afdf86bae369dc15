"""Every delay fleetcast chooses before something is tried again: one doubling window, one jitter.

The window for attempt ``n`` (from 0) is ``min(cap, base * 2**n)``. A delay is drawn uniformly from
``[floor * window, window]``:

* ``floor=0`` is full jitter, what a *client* does after a failure: a crowd that lost the same pod spreads over
  the whole window instead of coming back in waves (the reference client, ``fleetcast tail``);
* ``floor=0.5`` is what a *server* tells a client, or a pod does itself: spread out, but never "at once", because
  whoever waits was just told the other side is busy (``after_ms`` of a transient refusal, an SSE stream's
  ``retry:``, a pod's Redis reconnects).

The drain's ``after_ms`` is the one delay not drawn here: it spreads a paced close over a fixed bound the operator
sets (:meth:`fleetcast.drain.controller.DrainController.after_ms`).
"""

from __future__ import annotations

import random

BASE_MS = 500
CAP_MS = 10_000


def window_ms(attempt: int, *, base_ms: float = BASE_MS, cap_ms: float = CAP_MS) -> float:
    """``min(cap_ms, base_ms * 2**attempt)``; ``attempt`` counts from 0."""
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, not {attempt}")
    return cap_ms if attempt >= 32 else min(cap_ms, base_ms * 2**attempt)


def jittered_ms(
    attempt: int,
    *,
    base_ms: float = BASE_MS,
    cap_ms: float = CAP_MS,
    floor: float = 0.0,
    rng: random.Random | None = None,
) -> int:
    """A delay drawn uniformly from ``[floor * window, window]`` (whole milliseconds)."""
    window = window_ms(attempt, base_ms=base_ms, cap_ms=cap_ms)
    return (rng or random).randint(int(window * floor), max(0, int(window)))


def server_delay_ms(attempt: int = 0, *, base_ms: float = BASE_MS, cap_ms: float = CAP_MS) -> int:
    """What a server or a pod waits, or tells a client to wait: upper-half jitter (see the module docstring)."""
    return jittered_ms(attempt, base_ms=base_ms, cap_ms=cap_ms, floor=0.5)
