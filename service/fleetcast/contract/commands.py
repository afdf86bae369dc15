"""Commands the operator sends to pods on the gateway's control stream.

Each entry of :attr:`fleetcast.contract.keys.Keys.control` has the fields ``cmd`` and ``pod`` (the target pod's
name) plus command-specific fields, all strings: ``drain`` (:class:`DrainCommand`) and ``shed``
(:class:`ShedCommand`). Pods read the stream from the moment they start (``$``): a
command is for the pods alive when it was sent. Unknown commands are ignored, so the operator can be newer
than the pods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DRAIN = "drain"
SHED = "shed"


@dataclass(frozen=True, slots=True)
class DrainCommand:
    """Ask one pod to drain: stop taking sessions and move its clients away at a paced rate."""

    pod: str
    connections_per_second: float | None = None
    """Overrides the pod's ``--drain-rate`` when set."""
    timeout_seconds: float | None = None
    """Overrides the pod's ``--drain-timeout`` when set."""
    exit: bool = False
    """Exit the process when drained (a ``preStop`` drain exits; an operator drain waits for deletion)."""

    def to_fields(self) -> dict[str, str]:
        fields = {"cmd": DRAIN, "pod": self.pod, "exit": "1" if self.exit else "0"}
        if self.connections_per_second is not None:
            fields["rate"] = repr(float(self.connections_per_second))
        if self.timeout_seconds is not None:
            fields["timeout"] = repr(float(self.timeout_seconds))
        return fields

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> DrainCommand:
        if fields.get("cmd") != DRAIN or not fields.get("pod"):
            raise ValueError(f"not a drain command: {fields!r}")
        rate = fields.get("rate")
        timeout = fields.get("timeout")
        return cls(
            pod=fields["pod"],
            connections_per_second=float(rate) if rate else None,
            timeout_seconds=float(timeout) if timeout else None,
            exit=fields.get("exit") == "1",
        )


@dataclass(frozen=True, slots=True)
class ShedCommand:
    """Ask one pod to move ``count`` of its clients away (a rebalance), paced, while it stays ready.

    A shed for a ``round`` the pod has already taken is ignored, so the operator may send a round's commands
    again after a restart without doubling them; a new round replaces whatever is left of the previous one.
    """

    pod: str
    count: int
    """Sessions to close (each told to reconnect after a jittered ``after_ms``)."""
    round: str = ""
    """The operator's name for this rebalance round (empty: always taken)."""
    connections_per_second: float | None = None
    """Overrides the pod's ``--drain-rate`` when set (the operator's share of the fleet's reconnect budget)."""

    def to_fields(self) -> dict[str, str]:
        fields = {"cmd": SHED, "pod": self.pod, "count": str(int(self.count)), "round": self.round}
        if self.connections_per_second is not None:
            fields["rate"] = repr(float(self.connections_per_second))
        return fields

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> ShedCommand:
        if fields.get("cmd") != SHED or not fields.get("pod"):
            raise ValueError(f"not a shed command: {fields!r}")
        try:
            count = int(fields.get("count", ""))
            rate = float(fields["rate"]) if fields.get("rate") else None
        except ValueError:
            count, rate = -1, None
        if count < 0 or (rate is not None and not (math.isfinite(rate) and rate > 0)):
            raise ValueError(f"a shed needs a count >= 0 and a positive rate: {fields!r}")
        return cls(pod=fields["pod"], count=count, round=fields.get("round", ""), connections_per_second=rate)


Command = DrainCommand | ShedCommand


def parse(fields: dict[str, str]) -> Command | None:
    """The command an entry holds; None for a command this version does not know. Raises ``ValueError`` for a
    known command with malformed fields."""
    kind = fields.get("cmd")
    if kind == DRAIN:
        return DrainCommand.from_fields(fields)
    if kind == SHED:
        return ShedCommand.from_fields(fields)
    return None
