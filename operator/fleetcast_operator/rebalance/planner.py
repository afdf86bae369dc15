"""Whether to rebalance, and how many clients each pod sheds: pure decisions over heartbeats and a clock.

WebSocket and SSE connections live for hours: after a scale-up the old pods stay full and the new ones only get
new clients. A round of rebalancing asks the pods above their share to close some sessions (``shed``), paced;
the clients reconnect wherever the Service sends them and resume without loss.

The rules, in the order they are checked (the first that holds is the decision's ``reason``):

* ``Disabled``: ``spec.rebalance.enabled`` is false;
* ``ScaleDownInProgress``, ``PodDraining``: never while pods drain (their clients are moving already, and the
  mean of the ready pods is about to change);
* ``ScaleDownPending``: nor while the autoscaler recommends fewer pods and waits out its stabilization window
  (clients moved now would move again when the scale-down drains their pod);
* ``NotSettled``: every replica must report fresh and ready (new pods still starting would be counted empty);
* ``PodShedding``, ``RoundInProgress``: one round at a time;
* ``CoolingDown``: not within ``cooldownSeconds`` of the end of the previous round, so heartbeats show where
  the moved clients landed before anyone decides again (no oscillation);
* ``WithinTolerance``: every pod holds between ``floor(mean * (1 - tolerance))`` and
  ``ceil(mean * (1 + tolerance))``; rounding keeps a fleet of a few clients from chasing fractions;
* ``Rebalancing``: otherwise the pods above the mean shed.

How many: a client sent away lands on any ready pod, its own included (a Service spreads new connections
evenly, or at random, over ready endpoints). If the ``H`` pods above the mean hold ``E`` clients too many, they
must send away ``S = E * N / (N - H)`` so that, once ``S / N`` come back to each of them, they hold the mean
(and the pods below receive ``S / N`` each, their mean deficit). That factor is capped at 2: a round never
moves more than twice what an ideal balancer would, and the next round corrects what chance left over. A
round moves at most ``maxReconnectsPerSecond * ROUND_SECONDS`` clients, and each pod's pace is its share of the
budget, less the small burst a pod's token bucket allows and a margin for reconnects that arrive in clumps, so
the fleet never exceeds the budget.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fleetcast.contract.heartbeat import Heartbeat
from fleetcast_operator.gateway.spec import RebalanceSpec

ROUND_SECONDS = 10.0
"""A round moves at most this many seconds' worth of the reconnect budget; a bigger imbalance takes rounds."""
SETTLE_SECONDS = 10.0
"""Past the planned pace, how long a round waits for its pods' reports (reconnect delays, heartbeats)."""
RETURN_FACTOR_CAP = 2.0
"""At most this many clients moved per client of excess in one round (see the module docstring)."""


@dataclass(frozen=True, slots=True)
class PodShed:
    pod: str
    count: int
    connections_per_second: float


@dataclass(frozen=True, slots=True)
class Decision:
    reason: str
    message: str
    sheds: tuple[PodShed, ...] = ()
    mean: float = 0.0
    seconds: float = 0.0
    """How long the planned closes take at the planned pace."""

    @property
    def shed(self) -> bool:
        return bool(self.sheds)


def bounds(mean: float, tolerance: float) -> tuple[int, int]:
    """The whole numbers of clients a pod may hold and be left alone."""
    return math.floor(mean * (1 - tolerance) + 1e-9), math.ceil(mean * (1 + tolerance) - 1e-9)


PACE_OF_BUDGET = 0.85
"""The planned pace, as a fraction of the budget: a pod's token bucket may close ``max(1, rate / 20)`` more in
one second than its rate (5 %), and the rest is a margin for reconnects that busy event loops complete in
clumps (docs/decisions.md has the measurements)."""


def pod_rate(budget_share: float) -> float:
    """A pod's pace for its share of the budget, leaving the room :data:`PACE_OF_BUDGET` describes."""
    return max(0.5, min(budget_share - 1.0, budget_share * PACE_OF_BUDGET))


def plan(
    spec: RebalanceSpec,
    fresh: Sequence[Heartbeat],
    *,
    replicas: int,
    scale_down: bool,
    scale_down_pending: bool = False,
    round_in_progress: bool,
    last_finished: float | None,
    now: float,
) -> Decision:
    """The decision for this step (see the module docstring); ``now`` and ``last_finished`` are wall-clock."""
    if not spec.enabled:
        return Decision("Disabled", "spec.rebalance.enabled is false")
    if scale_down:
        return Decision("ScaleDownInProgress", "a scale-down is draining pods")
    if scale_down_pending:
        return Decision("ScaleDownPending", "the autoscaler recommends fewer pods: no client moves twice")
    draining = sorted(hb.pod for hb in fresh if hb.draining)
    if draining:
        return Decision("PodDraining", f"{', '.join(draining)} draining")
    ready = [hb for hb in fresh if hb.ready]
    if len(ready) != replicas or len(fresh) != replicas:
        return Decision("NotSettled", f"{len(ready)} of {replicas} replicas report ready")
    shedding = sorted(hb.pod for hb in ready if hb.shedding)
    if shedding:
        return Decision("PodShedding", f"{', '.join(shedding)} shedding")
    if round_in_progress:
        return Decision("RoundInProgress", "a round is in progress")
    if last_finished is not None and now - last_finished < spec.cooldown_seconds:
        left = spec.cooldown_seconds - (now - last_finished)
        return Decision("CoolingDown", f"the last round finished {now - last_finished:.0f} s ago ({left:.0f} s left)")
    return _targets(spec, ready)


def _targets(spec: RebalanceSpec, ready: Sequence[Heartbeat]) -> Decision:
    loads = {hb.pod: hb.total_connections for hb in ready}
    n = len(loads)
    total = sum(loads.values())
    mean = total / n if n else 0.0
    low, high = bounds(mean, spec.tolerance)
    spread = f"{min(loads.values(), default=0)}..{max(loads.values(), default=0)} around {mean:.1f}"
    if n < 2 or all(low <= load <= high for load in loads.values()):
        return Decision("WithinTolerance", f"every pod within {low}..{high} ({spread})", mean=mean)
    hot = {pod: load - mean for pod, load in sorted(loads.items()) if load > mean}
    excess = sum(hot.values())
    factor = min(RETURN_FACTOR_CAP, n / (n - len(hot)))
    extra = excess * (factor - 1) / len(hot)
    counts = {pod: min(loads[pod], round(over + extra)) for pod, over in hot.items()}
    cap = spec.max_reconnects_per_second * ROUND_SECONDS
    if sum(counts.values()) > cap:
        scale = cap / sum(counts.values())
        counts = {pod: math.floor(count * scale) for pod, count in counts.items()}
    counts = {pod: count for pod, count in counts.items() if count > 0}
    moved = sum(counts.values())
    if not moved:
        return Decision("WithinTolerance", f"nothing worth moving ({spread})", mean=mean)
    budget = spec.max_reconnects_per_second
    sheds = tuple(PodShed(pod, count, pod_rate(budget * count / moved)) for pod, count in counts.items())
    seconds = max(s.count / s.connections_per_second for s in sheds)
    listing = ", ".join(f"{s.pod} {loads[s.pod]} -> sheds {s.count}" for s in sheds)
    message = f"pods outside {low}..{high} ({spread}): {listing}, {moved} clients at up to {budget:g}/s"
    return Decision("Rebalancing", message, sheds, mean, seconds)


@dataclass(frozen=True, slots=True)
class RoundProgress:
    done: bool
    finished: tuple[str, ...]
    """Pods that took the round and are done shedding, started draining, or are gone from the registry."""
    waiting: tuple[str, ...]
    timed_out: bool


def progress(
    round_id: str, pods: Sequence[str], heartbeats: Mapping[str, Heartbeat], *, deadline: float, now: float
) -> RoundProgress:
    """Whether every pod of a round is done: it reports the round taken and no shed running (or it drains, or it
    is gone); a round whose deadline passed is over too (its record must not block the next one forever)."""
    finished: list[str] = []
    waiting: list[str] = []
    for pod in pods:
        hb = heartbeats.get(pod)
        if hb is None or hb.draining or (hb.shed_round == round_id and not hb.shedding):
            finished.append(pod)
        else:
            waiting.append(pod)
    timed_out = bool(waiting) and now >= deadline
    return RoundProgress(not waiting or timed_out, tuple(finished), tuple(waiting), timed_out)
