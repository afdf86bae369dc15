"""The steps of a drain-aware scale-down, each recorded in the Gateway's status before the next one.

A scale-down is a small state machine kept in ``status.scaleDown``:

1. the plan (pods, replicas from and to, deadline) is written first, so a restart knows what was decided;
2. for each pod: its deletion cost is set, then the drain command is sent, and each is recorded as done,
   so a restart repeats neither (the cost is set once, the command sent once);
3. on later steps the pods' heartbeats are checked: once all are empty (or gone), or the deadline passed,
   the replicas are set to the planned absolute number and the record is removed.

Setting an absolute number rather than decrementing is what makes step 3 safe to repeat: a restart between
the scale and the removal of the record finds the Deployment already at the target and just cleans up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from fleetcast.contract.commands import DrainCommand
from fleetcast.contract.heartbeat import Heartbeat
from fleetcast.contract.keys import Keys
from fleetcast_operator import tracing
from fleetcast_operator.conditions import now_iso
from fleetcast_operator.drain.planner import DEADLINE_MARGIN_SECONDS, DrainProgress, progress
from fleetcast_operator.gateway import scale
from fleetcast_operator.gateway.spec import DrainSpec
from fleetcast_operator.kube import Kube
from fleetcast_operator.runtime import Fleet


@dataclass(frozen=True, slots=True)
class PodStep:
    name: str
    cost_set: bool = False
    command_id: str | None = None


@dataclass(frozen=True, slots=True)
class ScaleDown:
    pods: tuple[PodStep, ...]
    from_replicas: int
    to_replicas: int
    deadline: float
    """Wall-clock seconds: it must survive an operator restart, which a monotonic clock does not."""
    started: str

    @property
    def sent(self) -> bool:
        return all(step.cost_set and step.command_id for step in self.pods)

    def to_status(self) -> dict[str, Any]:
        return {
            "pods": [{"name": s.name, "costSet": s.cost_set, "command": s.command_id} for s in self.pods],
            "fromReplicas": self.from_replicas,
            "toReplicas": self.to_replicas,
            "deadline": self.deadline,
            "started": self.started,
            "phase": "Draining" if self.sent else "Planned",
        }

    @classmethod
    def from_status(cls, raw: Mapping[str, Any]) -> ScaleDown:
        """Read the record back; ``ValueError`` if it is not one this operator wrote."""
        try:
            return cls(
                pods=tuple(
                    PodStep(str(p["name"]), bool(p.get("costSet")), p.get("command") or None) for p in raw["pods"]
                ),
                from_replicas=int(raw["fromReplicas"]),
                to_replicas=int(raw["toReplicas"]),
                deadline=float(raw["deadline"]),
                started=str(raw.get("started", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"unreadable status.scaleDown: {exc}") from exc


async def _record(kube: Kube, namespace: str, gateway: str, plan: ScaleDown | None) -> None:
    await kube.patch_gateway_status(namespace, gateway, {"scaleDown": plan.to_status() if plan else None})


async def begin(
    kube: Kube,
    fleet: Fleet,
    namespace: str,
    gateway: str,
    pods: list[str],
    current: int,
    drain: DrainSpec,
    now: float,
) -> ScaleDown:
    """Record the plan, then mark and command its pods (step 1, then step 2)."""
    with tracing.span("drain begin", {"fleetcast.gateway": gateway, "fleetcast.drain.pods": pods}):
        return await _begin(kube, fleet, namespace, gateway, pods, current, drain, now)


async def _begin(
    kube: Kube, fleet: Fleet, namespace: str, gateway: str, pods: list[str], current: int, drain: DrainSpec, now: float
) -> ScaleDown:
    plan = ScaleDown(
        pods=tuple(PodStep(pod) for pod in pods),
        from_replicas=current,
        to_replicas=current - len(pods),
        deadline=now + drain.timeout_seconds + DEADLINE_MARGIN_SECONDS,
        started=now_iso(),
    )
    await _record(kube, namespace, gateway, plan)
    return await send(kube, fleet, namespace, gateway, plan, drain)


async def send(kube: Kube, fleet: Fleet, namespace: str, gateway: str, plan: ScaleDown, drain: DrainSpec) -> ScaleDown:
    """Step 2 for every pod not done yet, recording each pod's progress as it goes."""
    with tracing.span(
        "drain send", {"fleetcast.gateway": gateway, "fleetcast.drain.pods": [s.name for s in plan.pods]}
    ):
        return await _send(kube, fleet, namespace, gateway, plan, drain)


async def _send(kube: Kube, fleet: Fleet, namespace: str, gateway: str, plan: ScaleDown, drain: DrainSpec) -> ScaleDown:
    steps = list(plan.pods)
    for index, step in enumerate(steps):
        if not step.cost_set:
            # A pod already gone needs no cost; record it as done either way.
            await scale.mark_for_removal(kube, namespace, step.name)
            step = replace(step, cost_set=True)
        if step.command_id is None:
            command = DrainCommand(
                pod=step.name,
                connections_per_second=drain.connections_per_second,
                timeout_seconds=drain.timeout_seconds,
            )
            step = replace(step, command_id=await fleet.send(Keys(namespace, gateway), command.to_fields()))
        if step != steps[index]:
            steps[index] = step
            plan = replace(plan, pods=tuple(steps))
            await _record(kube, namespace, gateway, plan)
    return plan


async def finish_if_drained(
    kube: Kube,
    namespace: str,
    gateway: str,
    plan: ScaleDown,
    heartbeats: Mapping[str, Heartbeat],
    current: int,
    now: float,
) -> DrainProgress:
    """Step 3: lower the replicas once every pod is empty or the deadline passed, then forget the plan."""
    state = progress([s.name for s in plan.pods], heartbeats, deadline=plan.deadline, now=now)
    if state.done:
        tracing.trace_current().add_event(
            "fleetcast.drain.finish",
            {
                "fleetcast.gateway": gateway,
                "fleetcast.drain.timed_out": state.timed_out,
                "fleetcast.replicas": plan.to_replicas,
            },
        )
        # Only from the count the plan started at: anything else means the scale already happened.
        if current == plan.from_replicas:
            await scale.scale_to(kube, namespace, gateway, plan.to_replicas)
        await _record(kube, namespace, gateway, None)
    return state
