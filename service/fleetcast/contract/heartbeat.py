"""The heartbeat record every pod writes to the pod registry.

A pod writes its record to the hash :attr:`fleetcast.contract.keys.Keys.pods` every :data:`INTERVAL_SECONDS` and
removes it when it exits. A record older than :data:`STALE_AFTER_SECONDS` belongs to a pod that died without
saying so: readers ignore it, as the HPA ignores a pod without metrics.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA = 1
INTERVAL_SECONDS = 2.0
STALE_AFTER_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One pod's state as the operator sees it."""

    pod: str
    """The pod's name (``metadata.name`` on Kubernetes)."""
    gateway: str
    """The Gateway resource this pod belongs to."""
    timestamp: float
    """Wall-clock time (Unix seconds) when the record was written."""
    connections: dict[str, int] = field(default_factory=dict)
    """Open client connections by transport: ``{"ws": 10, "sse": 3}``."""
    subscriptions: dict[str, int] = field(default_factory=dict)
    """Local subscribers by channel family: ``{"chat": 12}``."""
    present: dict[str, int] = field(default_factory=dict)
    """Presence entries this pod holds, by channel family (families with presence only)."""
    draining: bool = False
    """True from the moment the pod started draining; it then takes no new sessions."""
    remaining: int = 0
    """While draining: connections not yet moved away."""
    ready: bool = True
    """The pod's own readiness (broker reachable, not draining)."""
    shedding: bool = False
    """True while a shed (rebalance) moves some of this pod's clients away; the pod stays ready meanwhile."""
    shed_remaining: int = 0
    """While shedding: sessions the shed has still to close."""
    shed_round: str = ""
    """The last shed round this pod took (see :class:`fleetcast.contract.commands.ShedCommand`)."""
    schema: int = SCHEMA

    @property
    def total_connections(self) -> int:
        return sum(self.connections.values())

    def is_stale(self, now: float) -> bool:
        return now - self.timestamp > STALE_AFTER_SECONDS

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Heartbeat:
        """Parse a record; raises ``ValueError`` for anything that is not a heartbeat of a known schema."""
        raw: Any = json.loads(text)
        if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
            raise ValueError(f"not a heartbeat of schema {SCHEMA}: {str(text)[:80]!r}")
        try:
            return cls(
                pod=str(raw["pod"]),
                gateway=str(raw["gateway"]),
                timestamp=float(raw["timestamp"]),
                connections={str(k): int(v) for k, v in raw.get("connections", {}).items()},
                subscriptions={str(k): int(v) for k, v in raw.get("subscriptions", {}).items()},
                present={str(k): int(v) for k, v in raw.get("present", {}).items()},
                draining=bool(raw.get("draining", False)),
                remaining=int(raw.get("remaining", 0)),
                ready=bool(raw.get("ready", True)),
                shedding=bool(raw.get("shedding", False)),
                shed_remaining=int(raw.get("shed_remaining", 0)),
                shed_round=str(raw.get("shed_round", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"malformed heartbeat: {exc}") from exc
