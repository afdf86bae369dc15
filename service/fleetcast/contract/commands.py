"""Commands the operator sends to pods on the gateway's control stream.

Each entry of :attr:`fleetcast.contract.keys.Keys.control` has the fields ``cmd`` and ``pod`` (the target pod's
name) plus command-specific fields, all strings. Pods read the stream from the moment they start (``$``): a
command is for the pods alive when it was sent. Unknown commands are ignored, so the operator can be newer
than the pods.
"""

from __future__ import annotations

from dataclasses import dataclass

DRAIN = "drain"


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
