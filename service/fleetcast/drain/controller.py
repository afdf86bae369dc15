"""The drain controller: how a pod leaves without losing anyone's events.

A drain is started by the ``preStop`` hook (``POST /internal/drain``), by SIGTERM, or by the operator's
``drain <pod>`` command, and runs these steps once, whichever comes first:

1. flip readiness to 503 at once, so Kubernetes takes the pod out of its Service's endpoints;
2. wait the propagation delay, while endpoints update everywhere; sessions still arrive and are served;
3. turn new sessions away (WebSocket: ``reconnect`` then close 1013; SSE: 200, ``fleetcast.reconnect``, end);
4. close existing sessions paced at ``rate`` per second (:class:`~fleetcast.drain.pacing.Pacer`: on schedule even
   when fan-out keeps the loop busy), each told to come back after a jittered ``after_ms``
   (WebSocket: ``reconnect`` then close 1012; SSE: ``fleetcast.reconnect`` with ``retry:``): clients resume
   from their last id on another pod, so nothing is lost;
5. at the deadline, close whatever is left at once; then, if asked, make the process exit.

It deliberately does not wait for clients to acknowledge anything: a client's resume is what guarantees no loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from opentelemetry.trace import Tracer

from fleetcast.core import disconnects
from fleetcast.drain.pacing import Pacer, pacing
from fleetcast.observability import tracing

if TYPE_CHECKING:
    from fleetcast.session.session import Session

log = logging.getLogger(__name__)

State = Literal["serving", "draining", "drained"]
_TICK_SECONDS = 0.02


@dataclass(frozen=True, slots=True)
class DrainSettings:
    rate: float = 200.0
    """Sessions closed per second."""
    timeout: float = 60.0
    """Seconds from the start of a drain until every remaining session is closed and the process may exit."""
    propagation_seconds: float = 5.0
    """Seconds between turning unready and turning new sessions away: the readiness probe must fail and the
    endpoint change reach every node's proxy first (a probe period of 2 s plus propagation)."""
    reconnect_delay_ms: int = 1000
    """Upper bound of the per-client jittered ``after_ms``."""


def jittered_after_ms(delay_ms: int) -> int:
    """A per-client reconnect delay in ``[min(100, delay), delay]`` ms, so clients sent away together do not
    arrive elsewhere in step."""
    return random.randint(min(100, delay_ms), delay_ms) if delay_ms > 0 else 0


class DrainController:
    def __init__(self, sessions: set[Session], settings: DrainSettings, *, tracer: Tracer | None = None) -> None:
        self._sessions = sessions
        self.settings = settings
        self._tracer = tracer
        """One ``drain`` span per drain, its steps as events (None: tracing off)."""
        self.state: State = "serving"
        self.accepting = True
        """False once new sessions are turned away (step 3)."""
        self.closed = 0
        """Sessions this drain closed."""
        self.close_times: list[float] = []
        """Monotonic times of each close, for the pacing record (bounded by the sessions there were)."""
        self.on_state: Callable[[], None] | None = None
        """Called when the drain starts and when it is done (the pod announces both in its heartbeat)."""
        self.on_exit: Callable[[], None] | None = None
        """Called when a drain that was asked to exit is done (the server sets it to stop itself)."""
        self._exit = False
        self._task: asyncio.Task[None] | None = None

    @property
    def draining(self) -> bool:
        return self.state != "serving"

    @property
    def remaining(self) -> int:
        return len(self._sessions) if self.draining else 0

    def pacing(self) -> dict[str, float]:
        """How the closes were spread: seconds from first to last, and the most in any one-second window."""
        return pacing(self.close_times)

    def after_ms(self) -> int:
        """A per-client jittered reconnect delay, so a drained pod's clients do not arrive elsewhere in step."""
        return jittered_after_ms(self.settings.reconnect_delay_ms)

    def begin(self, *, rate: float | None = None, timeout: float | None = None, exit: bool = False) -> bool:
        """Start draining; True if this call started it. A later call can only add ``exit``."""
        self._exit = self._exit or exit
        if self._task is not None:
            if self.state == "drained" and self._exit and self.on_exit is not None:
                self.on_exit()
            return False
        self.state = "draining"
        if self.on_state is not None:
            self.on_state()
        self._task = asyncio.create_task(
            self._run(rate or self.settings.rate, timeout or self.settings.timeout), name="drain"
        )
        return True

    async def close(self) -> None:
        """Cancel a drain in progress (the server is stopping anyway)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait(self, timeout: float) -> bool:
        """Wait until the drain is done; False on timeout, if none was started, or if it was cancelled (the
        server stopped first)."""
        if self._task is None or self._task.cancelled():
            return False
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._task)
        except TimeoutError:
            return False
        except asyncio.CancelledError:
            if self._task.cancelled():  # the drain was cancelled, not this wait
                return False
            raise
        return True

    async def _run(self, rate: float, timeout: float) -> None:
        tracer = self._tracer
        if tracer is None:
            await self._steps(rate, timeout)
            return
        # One span for the whole drain; its steps are events on it.
        with tracer.start_as_current_span("drain", attributes={"fleetcast.drain.rate": rate}):
            await self._steps(rate, timeout)

    async def _steps(self, rate: float, timeout: float) -> None:
        start = time.monotonic()
        deadline = start + timeout
        log.info("drain started: %d sessions, %.0f/s, deadline %.0f s", len(self._sessions), rate, timeout)
        tracing.add_event(
            self._tracer,
            "fleetcast.drain.start",
            {
                "fleetcast.sessions": len(self._sessions),
                "fleetcast.drain.rate": rate,
                "fleetcast.drain.timeout": timeout,
            },
            span_name="drain",
        )
        # Step 2: endpoints stop sending us clients; those that still come are served and drained below.
        await asyncio.sleep(min(self.settings.propagation_seconds, max(0.0, deadline - time.monotonic())))
        self.accepting = False
        tracing.add_event(
            self._tracer, "fleetcast.drain.refusing", {"fleetcast.sessions": len(self._sessions)}, span_name="drain"
        )
        # Step 4: paced closes.
        pace = Pacer(rate, time.monotonic())
        while self._sessions and (now := time.monotonic()) < deadline:
            count = min(pace.due(now), len(self._sessions))
            for _ in range(count):
                self._close_one()
            pace.closed(now, count)
            await asyncio.sleep(_TICK_SECONDS)
        # Step 5: the deadline passed (or nobody is left): close the rest at once.
        while self._sessions:
            self._close_one()
        self.state = "drained"
        if self.on_state is not None:
            self.on_state()
        log.info("drain done: %d sessions closed in %.1f s", self.closed, time.monotonic() - start)
        tracing.add_event(
            self._tracer,
            "fleetcast.drain.finish",
            {"fleetcast.drain.closed": self.closed, "fleetcast.drain.seconds": time.monotonic() - start},
            span_name="drain",
        )
        if self._exit and self.on_exit is not None:
            self.on_exit()

    def _close_one(self) -> None:
        session = next(iter(self._sessions))
        self._sessions.discard(session)
        session.close(disconnects.DRAIN, self.after_ms())
        self.closed += 1
        self.close_times.append(time.monotonic())
