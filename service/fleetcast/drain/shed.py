"""The shed controller: a ready pod moves some of its clients away, so new pods take load off hot ones.

The operator's rebalancer sends ``shed <pod> <count>`` (or an admin calls ``POST /internal/shed?count=N``) when
a pod holds more than its share of the fleet's clients. Unlike a drain, the pod stays ready and keeps taking
sessions: a client told to go reconnects wherever the Service sends it, and one that lands here again is fine
(the next round corrects the spread). The shed:

1. picks ``count`` of the sessions open when it starts, spread over what they subscribe to: each group (transport
   and channel) gives up about the same fraction of its sessions, in an interleaved order, so no channel loses
   all its subscribers here at once and the channels' load moves in proportion;
2. closes them paced at ``rate`` per second (the drain's :class:`~fleetcast.drain.pacing.Pacer`), each told to
   come back after a jittered ``after_ms`` (WebSocket: ``reconnect`` then close 1012 ``rebalance``; SSE:
   ``fleetcast.reconnect``); clients resume from their last id, so nothing is lost;
3. stops when the count is reached, when the picked sessions are gone, or at once when a drain starts (the
   drain moves everyone anyway).

A new shed while one runs replaces what is left of it (the operator's latest word wins); a shed of a round
already taken is ignored, so a command sent again after an operator restart does not double.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from opentelemetry.trace import Tracer

from fleetcast.core import disconnects
from fleetcast.drain.controller import DrainSettings, jittered_after_ms
from fleetcast.drain.pacing import Pacer, pacing
from fleetcast.observability import tracing

if TYPE_CHECKING:
    from fleetcast.session.session import Session

log = logging.getLogger(__name__)

_TICK_SECONDS = 0.02
_CLOSE_TIMES = 10_000
"""Close times kept for the pacing record (the last shed's, bounded whatever the count)."""


def spread_order(sessions: list[Session], rng: random.Random | None = None) -> list[Session]:
    """``sessions`` in the order a shed closes them: grouped by transport and first channel, shuffled within a
    group, and interleaved so that any prefix takes about the same fraction of every group (stride order).
    Taking the first N therefore moves each channel's subscribers in proportion, never one channel at once."""
    rng = rng or random.Random()
    groups: dict[tuple[str, str], list[Session]] = {}
    for session in sessions:
        channels = session.subscriptions
        key = (session.wire.kind, min(channels) if channels else "")
        groups.setdefault(key, []).append(session)
    keyed: list[tuple[float, float, Session]] = []
    for members in groups.values():
        rng.shuffle(members)
        size = len(members)
        # The j-th of a group comes at (j + u) / size: groups advance at the same fractional pace.
        keyed.extend(((j + rng.random()) / size, rng.random(), session) for j, session in enumerate(members))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [session for _, _, session in keyed]


class ShedController:
    def __init__(
        self,
        sessions: set[Session],
        settings: DrainSettings,
        *,
        halted: Callable[[], bool] = lambda: False,
        tracer: Tracer | None = None,
    ) -> None:
        self._sessions = sessions
        self.settings = settings
        self._tracer = tracer
        self._halted = halted
        """True when a shed must stop at once (the pod started draining)."""
        self.closed = 0
        """Sessions closed by sheds, over the pod's life."""
        self.round = ""
        """The last round taken (reported in the heartbeat, so the operator can tell a command arrived)."""
        self.close_times: deque[float] = deque(maxlen=_CLOSE_TIMES)
        """Monotonic times of the current (or last) shed's closes, for the pacing record."""
        self.on_state: Callable[[], None] | None = None
        """Called when a shed starts and when it ends (the pod announces both in its heartbeat)."""
        self._order: deque[Session] = deque()
        self._left = 0
        self._rate = settings.rate
        self._task: asyncio.Task[None] | None = None

    @property
    def shedding(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def remaining(self) -> int:
        """Sessions the running shed has still to close (0 when none runs)."""
        return min(self._left, len(self._order)) if self.shedding else 0

    def pacing(self) -> dict[str, float]:
        """How the current (or last) shed's closes were spread (see :func:`fleetcast.drain.pacing.pacing`)."""
        return pacing(list(self.close_times))

    def begin(self, count: int, *, rate: float | None = None, round: str = "") -> bool:
        """Shed ``count`` of the sessions open now; True if taken. A round already taken, or a pod that is
        draining, is refused (False). A shed in progress is replaced (``count`` 0 stops it)."""
        if self._halted() or (round and round == self.round):
            return False
        self.round = round
        self._rate = rate or self.settings.rate
        self._order = deque(spread_order(list(self._sessions)))
        self._left = max(0, count)
        self.close_times.clear()
        log.info("shed %d of %d sessions at %.0f/s (round %r)", self._left, len(self._order), self._rate, round)
        tracing.add_event(
            self._tracer,
            "fleetcast.shed.start",
            {
                "fleetcast.shed.count": self._left,
                "fleetcast.sessions": len(self._order),
                "fleetcast.shed.rate": self._rate,
            },
            span_name="shed",
        )
        if not self.shedding and self._left > 0:
            self._task = asyncio.create_task(self._run(), name="shed")
            if self.on_state is not None:
                self.on_state()
        return True

    async def close(self) -> None:
        """Stop a shed in progress (the server is stopping)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait(self, timeout: float) -> bool:
        """Wait until no shed runs; False on timeout."""
        if self._task is None:
            return True
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._task)
        except TimeoutError:
            return False
        except asyncio.CancelledError:
            if self._task.cancelled():
                return True
            raise
        return True

    async def _run(self) -> None:
        tracer = self._tracer
        if tracer is None:
            await self._steps()
            return
        # One span for the whole shed (the finish event lands on it), as for a drain.
        with tracer.start_as_current_span("shed", attributes={"fleetcast.shed.rate": self._rate}):
            await self._steps()

    async def _steps(self) -> None:
        start, closed_before = time.monotonic(), self.closed
        try:
            pace = Pacer(self._rate, time.monotonic())
            while self._left > 0 and self._order and not self._halted():
                now = time.monotonic()
                if pace.rate != self._rate:  # a newer shed replaced this one's rate
                    pace = Pacer(self._rate, now)
                due, count = pace.due(now), 0
                while count < due and self._left > 0 and self._order:
                    count += self._close_next()
                pace.closed(now, count)
                await asyncio.sleep(_TICK_SECONDS)
        finally:
            halted = self._halted()
            self._order.clear()
            self._left = 0
            log.info(
                "shed %s: %d sessions closed in %.1f s",
                "cut short by a drain" if halted else "done",
                self.closed - closed_before,
                time.monotonic() - start,
            )
            tracing.add_event(
                self._tracer,
                "fleetcast.shed.finish",
                {"fleetcast.shed.closed": self.closed - closed_before, "fleetcast.shed.halted": halted},
                span_name="shed",
            )
            if self.on_state is not None:
                asyncio.get_running_loop().call_soon(self.on_state)  # after the task is done: heartbeat says so

    def _close_next(self) -> int:
        """Close the next picked session still open (1), or find none left (0); those gone already are skipped
        (they cost no place in the pace)."""
        while self._order:
            session = self._order.popleft()
            if session not in self._sessions or session.wire.closed:
                continue
            self._sessions.discard(session)
            session.close(disconnects.REBALANCE, jittered_after_ms(self.settings.reconnect_delay_ms))
            self._left -= 1
            self.closed += 1
            self.close_times.append(time.monotonic())
            return 1
        return 0
