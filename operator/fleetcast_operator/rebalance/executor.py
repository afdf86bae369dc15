"""The steps of a rebalance round, each recorded in the Gateway's ``status.rebalance`` before the next one.

1. the round (its id, pods, counts, paces, deadline) is written first, so a restart knows what was decided;
2. each pod's ``shed`` command is sent and its stream id recorded; a restart sends only those without an id,
   and a pod ignores a round it has already taken, so a command sent twice (a crash between sending and
   recording) closes nobody twice;
3. later steps read the pods' heartbeats: once every pod reports the round taken and done (or drains, or is
   gone), or the deadline passed, the record is marked finished with the time, which starts the cool-down.

The finished record stays until the next round replaces it: it is what the cool-down counts from, and it
survives a restart as the plan does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from fleetcast.contract.commands import ShedCommand
from fleetcast.contract.heartbeat import Heartbeat
from fleetcast.contract.keys import Keys
from fleetcast_operator import tracing
from fleetcast_operator.conditions import now_iso
from fleetcast_operator.kube import Kube
from fleetcast_operator.rebalance.planner import SETTLE_SECONDS, Decision, RoundProgress, progress
from fleetcast_operator.runtime import Fleet


@dataclass(frozen=True, slots=True)
class PodStep:
    name: str
    count: int
    rate: float
    command_id: str | None = None


@dataclass(frozen=True, slots=True)
class Round:
    id: str
    pods: tuple[PodStep, ...]
    mean: float
    deadline: float
    """Wall-clock seconds: it must survive an operator restart, which a monotonic clock does not."""
    started: str
    finished_at: float | None = None
    outcome: str = ""

    @property
    def sent(self) -> bool:
        return all(step.command_id for step in self.pods)

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def phase(self) -> str:
        return "Finished" if self.finished else "Shedding" if self.sent else "Planned"

    def to_status(self) -> dict[str, Any]:
        return {
            "round": self.id,
            "pods": [{"name": s.name, "count": s.count, "rate": s.rate, "command": s.command_id} for s in self.pods],
            "mean": self.mean,
            "deadline": self.deadline,
            "started": self.started,
            "finishedAt": self.finished_at,
            "outcome": self.outcome,
            "phase": self.phase,
        }

    @classmethod
    def from_status(cls, raw: Mapping[str, Any]) -> Round:
        """Read the record back; ``ValueError`` if it is not one this operator wrote."""
        try:
            finished = raw.get("finishedAt")
            return cls(
                id=str(raw["round"]),
                pods=tuple(
                    PodStep(str(p["name"]), int(p["count"]), float(p["rate"]), p.get("command") or None)
                    for p in raw["pods"]
                ),
                mean=float(raw.get("mean", 0.0)),
                deadline=float(raw["deadline"]),
                started=str(raw.get("started", "")),
                finished_at=float(finished) if finished is not None else None,
                outcome=str(raw.get("outcome", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"unreadable status.rebalance: {exc}") from exc


async def _record(kube: Kube, namespace: str, gateway: str, plan: Round) -> None:
    await kube.patch_gateway_status(namespace, gateway, {"rebalance": plan.to_status()})


async def begin(kube: Kube, fleet: Fleet, namespace: str, gateway: str, decision: Decision, now: float) -> Round:
    """Record the round, then command its pods (step 1, then step 2)."""
    plan = Round(
        id=f"r{int(now * 1000)}",
        pods=tuple(PodStep(s.pod, s.count, round(s.connections_per_second, 3)) for s in decision.sheds),
        mean=round(decision.mean, 2),
        deadline=now + decision.seconds + SETTLE_SECONDS,
        started=now_iso(),
    )
    with tracing.span(
        "rebalance begin",
        {
            "fleetcast.gateway": gateway,
            "fleetcast.rebalance.round": plan.id,
            "fleetcast.rebalance.pods": [s.name for s in plan.pods],
        },
    ):
        await _record(kube, namespace, gateway, plan)
        return await _send(kube, fleet, namespace, gateway, plan)


async def send(kube: Kube, fleet: Fleet, namespace: str, gateway: str, plan: Round) -> Round:
    """Step 2 for every pod not commanded yet (after a restart), recording each as it goes."""
    with tracing.span("rebalance send", {"fleetcast.gateway": gateway, "fleetcast.rebalance.round": plan.id}):
        return await _send(kube, fleet, namespace, gateway, plan)


async def _send(kube: Kube, fleet: Fleet, namespace: str, gateway: str, plan: Round) -> Round:
    steps = list(plan.pods)
    for index, step in enumerate(steps):
        if step.command_id is not None:
            continue
        command = ShedCommand(pod=step.name, count=step.count, round=plan.id, connections_per_second=step.rate)
        steps[index] = replace(step, command_id=await fleet.send(Keys(namespace, gateway), command.to_fields()))
        plan = replace(plan, pods=tuple(steps))
        await _record(kube, namespace, gateway, plan)
    return plan


async def finish_if_done(
    kube: Kube, namespace: str, gateway: str, plan: Round, heartbeats: Mapping[str, Heartbeat], now: float
) -> tuple[Round, RoundProgress]:
    """Step 3: mark the round finished once every pod is done or the deadline passed."""
    state = progress(plan.id, [s.name for s in plan.pods], heartbeats, deadline=plan.deadline, now=now)
    if state.done:
        plan = replace(plan, finished_at=now, outcome="TimedOut" if state.timed_out else "Shed")
        tracing.trace_current().add_event(
            "fleetcast.rebalance.finish",
            {"fleetcast.rebalance.round": plan.id, "fleetcast.rebalance.timed_out": state.timed_out},
        )
        await _record(kube, namespace, gateway, plan)
    return plan, state
