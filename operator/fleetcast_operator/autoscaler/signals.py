"""What the pods report, turned into the autoscaler's inputs.

The pods write heartbeats to the hash :attr:`fleetcast.contract.keys.Keys.pods` (see
:mod:`fleetcast.contract.heartbeat`); :mod:`fleetcast_operator.fleet_redis` reads that hash and hands its raw
values here. Parsing lives here, apart from the Redis I/O, so it is tested without a server and the
autoscaler package never imports ``redis``. Records that are unreadable, of another gateway or stale are set
aside, never trusted: a dead pod's last heartbeat must not hold the fleet up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fleetcast.contract.heartbeat import Heartbeat
from fleetcast_operator.autoscaler.policy import Load


@dataclass(frozen=True, slots=True)
class FleetView:
    """The heartbeats of one gateway at one instant, sorted out."""

    fresh: tuple[Heartbeat, ...]
    stale: tuple[str, ...]
    """Pods whose last record is older than the contract's staleness bound."""
    unreadable: tuple[str, ...]
    """Hash fields whose value is not a heartbeat of a known schema (a newer or broken pod)."""

    @property
    def connections(self) -> int:
        return sum(hb.total_connections for hb in self.fresh)

    def by_pod(self) -> dict[str, Heartbeat]:
        return {hb.pod: hb for hb in self.fresh}

    def load(self, current_replicas: int) -> Load:
        """The autoscaler's input: pods of the current replica count without a fresh record are missing."""
        reporting = sum(1 for hb in self.fresh if not hb.draining)
        return Load(
            connections=self.connections,
            reporting=reporting,
            missing=max(0, current_replicas - reporting),
        )

    def summary(self) -> list[dict[str, object]]:
        """Per-pod lines for the Gateway's status, emptiest last so the busy pods show first."""
        lines: list[dict[str, object]] = [
            {"name": hb.pod, "connections": hb.total_connections, "draining": hb.draining, "stale": False}
            for hb in sorted(self.fresh, key=lambda hb: (-hb.total_connections, hb.pod))
        ]
        lines.extend({"name": pod, "connections": 0, "draining": False, "stale": True} for pod in self.stale)
        return lines


def read_fleet(raw: Mapping[str, str], *, gateway: str, now: float) -> FleetView:
    """Sort one gateway's raw heartbeat hash (pod -> JSON) into fresh, stale and unreadable records."""
    fresh: list[Heartbeat] = []
    stale: list[str] = []
    unreadable: list[str] = []
    for pod, text in sorted(raw.items()):
        try:
            heartbeat = Heartbeat.from_json(text)
        except ValueError:
            unreadable.append(pod)
            continue
        if heartbeat.gateway != gateway or heartbeat.pod != pod:
            unreadable.append(pod)
        elif heartbeat.is_stale(now):
            stale.append(pod)
        else:
            fresh.append(heartbeat)
    return FleetView(tuple(fresh), tuple(stale), tuple(unreadable))
