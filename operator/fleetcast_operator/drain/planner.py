"""Which pods a scale-down drains, and when a drain is over: pure decisions over heartbeats and a clock.

The planner picks the emptiest pods that report fresh and are not already draining, so the fewest clients
move; ties go by name so a retry picks the same pods. It never picks a pod it cannot see: a scale-down
removes only as many pods as it drained, and the ReplicaSet's own order (unready pods first, then the lowest
``controller.kubernetes.io/pod-deletion-cost``) does the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fleetcast.contract.heartbeat import Heartbeat

DEADLINE_MARGIN_SECONDS = 5.0
"""Extra time past the pods' own drain timeout before the operator stops waiting for their report."""


def pick_pods(fresh: Sequence[Heartbeat], count: int) -> list[str]:
    """Up to ``count`` pods to drain: non-draining, emptiest first, then by name."""
    candidates = sorted((hb for hb in fresh if not hb.draining), key=lambda hb: (hb.total_connections, hb.pod))
    return [hb.pod for hb in candidates[: max(0, count)]]


@dataclass(frozen=True, slots=True)
class DrainProgress:
    done: bool
    empty: tuple[str, ...]
    """Pods reported empty, or gone from the registry (the pod exited)."""
    waiting: tuple[str, ...]
    timed_out: bool


def progress(pods: Sequence[str], heartbeats: Mapping[str, Heartbeat], *, deadline: float, now: float) -> DrainProgress:
    """Whether the scale-down may lower the replicas now: every pod empty, or the deadline passed."""
    empty: list[str] = []
    waiting: list[str] = []
    for pod in pods:
        hb = heartbeats.get(pod)
        if hb is None or (hb.draining and hb.total_connections == 0 and hb.remaining == 0):
            empty.append(pod)
        else:
            waiting.append(pod)
    timed_out = bool(waiting) and now >= deadline
    return DrainProgress(done=not waiting or timed_out, empty=tuple(empty), waiting=tuple(waiting), timed_out=timed_out)
