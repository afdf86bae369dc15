"""One rebalance step of the autoscaler's tick, after the scale decision: follow the round in progress, or decide
whether to start one. Every decision is a span attribute; a round's start and end are Kubernetes Events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fleetcast.contract.heartbeat import Heartbeat
from fleetcast_operator import tracing
from fleetcast_operator.gateway.spec import RebalanceSpec
from fleetcast_operator.kube import Kube
from fleetcast_operator.rebalance import executor
from fleetcast_operator.rebalance.planner import plan
from fleetcast_operator.runtime import Fleet


@dataclass(frozen=True, slots=True)
class Outcome:
    reason: str
    message: str


async def rebalance_step(
    kube: Kube,
    fleet: Fleet,
    gateway: Mapping[str, Any],
    spec: RebalanceSpec,
    record: Mapping[str, Any] | None,
    fresh: Sequence[Heartbeat],
    *,
    replicas: int,
    scale_down: bool,
    scale_down_pending: bool = False,
    now: float,
) -> Outcome:
    metadata = gateway.get("metadata") or {}
    namespace, name = str(metadata.get("namespace") or ""), str(metadata.get("name") or "")
    with tracing.span("rebalance Gateway", {"k8s.namespace.name": namespace, "fleetcast.gateway": name}) as span:
        outcome = await _step(
            kube, fleet, gateway, namespace, name, spec, record, fresh, replicas, scale_down, scale_down_pending, now
        )
        span.set_attributes(
            {"fleetcast.rebalance.reason": outcome.reason, "fleetcast.rebalance.message": outcome.message}
        )
        return outcome


async def _step(
    kube: Kube,
    fleet: Fleet,
    gateway: Mapping[str, Any],
    namespace: str,
    name: str,
    spec: RebalanceSpec,
    record: Mapping[str, Any] | None,
    fresh: Sequence[Heartbeat],
    replicas: int,
    scale_down: bool,
    scale_down_pending: bool,
    now: float,
) -> Outcome:
    previous: executor.Round | None = None
    if record:
        try:
            previous = executor.Round.from_status(record)
        except ValueError as exc:
            await kube.patch_gateway_status(namespace, name, {"rebalance": None})
            return Outcome("RebalanceRecordReset", str(exc))
    if previous is not None and not previous.finished:
        if not previous.sent:
            previous = await executor.send(kube, fleet, namespace, name, previous)
        heartbeats = {hb.pod: hb for hb in fresh}
        previous, state = await executor.finish_if_done(kube, namespace, name, previous, heartbeats, now)
        if not state.done:
            return Outcome("RoundInProgress", f"round {previous.id}: waiting for {', '.join(state.waiting)}")
        moved = sum(s.count for s in previous.pods)
        if state.timed_out:
            message = f"round {previous.id} timed out waiting for {', '.join(state.waiting)}"
            await kube.post_event(namespace, dict(gateway), "RebalanceTimedOut", message, warning=True)
            return Outcome("RebalanceTimedOut", message)
        message = f"round {previous.id} done: {', '.join(s.name for s in previous.pods)} sent {moved} clients away"
        await kube.post_event(namespace, dict(gateway), "Rebalanced", message)
        return Outcome("Rebalanced", message)

    decision = plan(
        spec,
        fresh,
        replicas=replicas,
        scale_down=scale_down,
        scale_down_pending=scale_down_pending,
        round_in_progress=False,
        last_finished=previous.finished_at if previous is not None else None,
        now=now,
    )
    if not decision.shed:
        return Outcome(decision.reason, decision.message)
    started = await executor.begin(kube, fleet, namespace, name, decision, now)
    message = f"round {started.id}: {decision.message}"
    await kube.post_event(namespace, dict(gateway), "Rebalancing", message)
    return Outcome("Rebalancing", message)
