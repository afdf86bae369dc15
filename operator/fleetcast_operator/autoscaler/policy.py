"""The autoscaling decision, with the semantics of the Kubernetes HPA, as a pure function of its inputs.

Inputs are the fleet's connection counts (from heartbeats), the current replicas, the spec's bounds and the
recent recommendations; the output is the replica count to run now. Time is a parameter, never read here, so
the tests drive it with a fake clock. Nothing here talks to Kubernetes or Redis.

Semantics (as the HPA's, with connections as the metric):

* recommendation = ceil(connections / targetConnectionsPerPod), unless the usage ratio is within ``tolerance``
  of 1, in which case the current replica count stands;
* pods without a fresh heartbeat count as using nothing when scaling up and as using exactly the target when
  scaling down, so missing data never causes a scale in its own direction; with no fresh heartbeat at all,
  nothing is decided (the replicas stay, clamped to the bounds);
* scale-up goes to the lowest recommendation over its stabilization window (0 s: at once), scale-down to the
  highest over its window, so a brief dip never removes pods;
* each step changes at most ``maxPodsPerStep`` pods, and the result is clamped to ``[min, max]`` (the clamp
  wins over the step limit, as the HPA's does).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from fleetcast_operator.gateway.spec import ScalingRules


@dataclass(frozen=True, slots=True)
class Load:
    """What the fleet reports right now: the autoscaler's only metric."""

    connections: int
    """Open connections over the fresh heartbeats (draining pods included: their clients stay in the fleet)."""
    reporting: int
    """Pods with a fresh heartbeat that are not draining: the pods the connections are spread over."""
    missing: int
    """Pods of the current replica count without a fresh heartbeat (starting, stuck, or dead)."""


@dataclass(frozen=True, slots=True)
class Recommendation:
    at: float
    replicas: int


@dataclass(frozen=True, slots=True)
class Decision:
    replicas: int
    """The replica count to run now."""
    recommendation: int
    """The raw recommendation before stabilization and step limits (shown as ``desiredReplicas``)."""
    reason: str
    history: tuple[Recommendation, ...]
    """The recommendations to keep for the next decision (older than both windows dropped)."""


def recommend(rules: ScalingRules, current: int, load: Load) -> tuple[int, str]:
    """The raw recommendation and why: HPA arithmetic with tolerance and missing-pod handling."""
    if not rules.enabled:
        return rules.min_replicas, "AutoscalingDisabled"
    if load.reporting == 0:
        return current, "NoHeartbeats"
    target = rules.target_per_pod
    ratio = load.connections / (load.reporting * target)
    if load.missing == 0:
        if abs(ratio - 1.0) <= rules.tolerance:
            return current, "WithinTolerance"
        return math.ceil(load.connections / target), "ScaleUp" if ratio > 1.0 else "ScaleDown"
    # As the HPA: assume missing pods use nothing when the fleet looks overloaded, and exactly the target
    # when it looks underused; if that flips the direction or lands within tolerance, change nothing.
    pods = load.reporting + load.missing
    if ratio > 1.0:
        adjusted = load.connections / (pods * target)
        if adjusted <= 1.0 + rules.tolerance:
            return current, "MissingHeartbeats"
        return math.ceil(load.connections / target), "ScaleUp"
    if ratio < 1.0:
        total = load.connections + load.missing * target
        adjusted = total / (pods * target)
        if adjusted >= 1.0 - rules.tolerance:
            return current, "MissingHeartbeats"
        return math.ceil(total / target), "ScaleDown"
    return current, "WithinTolerance"


def decide(
    rules: ScalingRules,
    current: int,
    load: Load,
    history: Iterable[Recommendation],
    now: float,
) -> Decision:
    """The replica count to run now, given the recommendations made before ``now``."""
    raw, reason = recommend(rules, current, load)
    horizon = now - max(rules.up_stabilization, rules.down_stabilization)
    kept = (*tuple(r for r in history if r.at >= horizon and r.at <= now), Recommendation(now, raw))

    if not rules.enabled:
        return Decision(rules.min_replicas, raw, reason, kept)

    up_floor = min(r.replicas for r in kept if r.at >= now - rules.up_stabilization)
    down_ceiling = max(r.replicas for r in kept if r.at >= now - rules.down_stabilization)
    desired = current
    if desired < up_floor:
        desired = up_floor
    if desired > down_ceiling:
        desired = down_ceiling
    if desired != raw and reason in ("ScaleUp", "ScaleDown"):
        reason = "Stabilizing"

    # Step limits bound the change, the replica bounds bound the result; the bounds win (as in the HPA).
    if desired > current:
        highest = min(rules.max_replicas, current + rules.up_max_step)
        lowest = rules.min_replicas
    elif desired < current:
        highest = rules.max_replicas
        lowest = max(rules.min_replicas, current - rules.down_max_step)
    else:
        highest, lowest = rules.max_replicas, rules.min_replicas
    limited = max(lowest, min(highest, desired))
    if limited != desired and reason in ("ScaleUp", "ScaleDown"):
        reason = "StepLimited"
    return Decision(limited, raw, reason, kept)
