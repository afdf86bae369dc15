"""One autoscaler step for one Gateway: read, decide, act, report.

Run by a timer per Gateway. Each step reads everything it acts on fresh (the Gateway with its status, the
Deployment, the heartbeats), so a step never trusts a stale watch event, and an operator restarted halfway
through a scale-down simply picks it up from ``status.scaleDown`` (see :mod:`fleetcast_operator.drain.executor`).
While a scale-down is in progress nothing else is decided: its pods are draining irrevocably, so it always
completes first, and a scale-up, if needed, follows on the next step.

After the scale decision comes the rebalancer (:mod:`fleetcast_operator.rebalance`): it follows a round in
progress, or, once the fleet has settled (every replica ready, nothing draining, the cool-down over), asks the
pods above their share of clients to shed some, so new pods take load off the hot ones.

The recommendations for the stabilization windows are kept in memory only. After a restart the history
starts again from the current replica count, which delays a scale-down by one window rather than risking one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from fleetcast.contract.keys import Keys
from fleetcast_operator import conditions, tracing
from fleetcast_operator.autoscaler.policy import Recommendation, decide
from fleetcast_operator.autoscaler.signals import FleetView, read_fleet
from fleetcast_operator.drain import executor
from fleetcast_operator.drain.planner import pick_pods
from fleetcast_operator.errors import InvalidSpec, TemporaryFailure
from fleetcast_operator.gateway import scale
from fleetcast_operator.gateway.resources import child_name
from fleetcast_operator.gateway.spec import parse_gateway_spec
from fleetcast_operator.rebalance.step import rebalance_step
from fleetcast_operator.runtime import Runtime


@dataclass
class GatewayMemory:
    """Per-Gateway state that lives as long as the operator process (kopf's per-object memo holds it)."""

    history: tuple[Recommendation, ...] | None = None
    status_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Serializes status writes of the reconcile handler and this timer: both upsert the condition list."""


async def autoscale_step(rt: Runtime, namespace: str, name: str, memory: GatewayMemory) -> None:
    with tracing.span("autoscale Gateway", {"k8s.namespace.name": namespace, "fleetcast.gateway": name}):
        await _step(rt, namespace, name, memory)


async def _step(rt: Runtime, namespace: str, name: str, memory: GatewayMemory) -> None:
    body = await rt.kube.get_gateway(namespace, name)
    if body is None or body.get("metadata", {}).get("deletionTimestamp"):
        return
    try:
        spec = parse_gateway_spec(body.get("spec") or {})
    except InvalidSpec:
        return  # The reconcile handler reports it (condition and event); nothing to scale meanwhile.
    status: dict[str, Any] = body.get("status") or {}
    deployment = await rt.kube.get("Deployment", namespace, child_name(name))
    if deployment is None:
        return  # Not created yet: the reconcile handler will.
    current = int((deployment.get("spec") or {}).get("replicas", 1))

    try:
        fleet = await rt.fleet(namespace, spec.redis)
        view = read_fleet(await fleet.heartbeats(Keys(namespace, name)), gateway=name, now=rt.wall_clock())
    except (TemporaryFailure, InvalidSpec) as exc:
        await _report(rt, namespace, name, memory, status, None, current, None, False, "SignalsUnavailable", str(exc))
        return

    now = rt.monotonic()
    if memory.history is None:
        memory.history = (Recommendation(now, current),)
    decision = decide(spec.scaling, current, view.load(current), memory.history, now)
    memory.history = decision.history
    replicas, reason, message = current, decision.reason, ""
    scaled = False

    raw_plan = status.get("scaleDown")
    if raw_plan:
        try:
            plan = executor.ScaleDown.from_status(raw_plan)
        except ValueError as exc:
            await rt.kube.patch_gateway_status(namespace, name, {"scaleDown": None})
            reason, message = "ScaleDownRecordReset", str(exc)
        else:
            if not plan.sent:
                plan = await executor.send(rt.kube, fleet, namespace, name, plan, spec.drain)
            state = await executor.finish_if_drained(
                rt.kube, namespace, name, plan, view.by_pod(), current, rt.wall_clock()
            )
            if state.done:
                replicas, scaled = (plan.to_replicas if current == plan.from_replicas else current), True
                reason = "DrainTimedOut" if state.timed_out else "Drained"
                message = f"removed {', '.join(s.name for s in plan.pods)}"
            else:
                reason, message = "Draining", f"waiting for {', '.join(state.waiting)}"
    elif decision.replicas > current:
        await scale.scale_to(rt.kube, namespace, name, decision.replicas)
        replicas, scaled = decision.replicas, True
    elif decision.replicas < current:
        pods = pick_pods(view.fresh, current - decision.replicas)
        if pods:
            await executor.begin(rt.kube, fleet, namespace, name, pods, current, spec.drain, rt.wall_clock())
            reason, message = "Draining", f"draining {', '.join(pods)} before removing them"
        else:
            # No pod reports: none has clients to lose, so the replicas drop at once (min/max clamps, disabled).
            await scale.scale_to(rt.kube, namespace, name, decision.replicas)
            replicas, scaled = decision.replicas, True

    await _report(rt, namespace, name, memory, status, view, replicas, decision.recommendation, scaled, reason, message)
    # After the autoscaler's own report, so a failure here (retried on the next step) never hides it.
    await rebalance_step(
        rt.kube,
        fleet,
        body,
        spec.rebalance,
        status.get("rebalance"),
        view.fresh,
        replicas=replicas,
        scale_down=bool(raw_plan) or decision.replicas < current,
        # A scale-down waiting out its stabilization window: clients moved now would move again when it drains.
        scale_down_pending=spec.scaling.enabled and spec.scaling.clamp(decision.recommendation) < current,
        now=rt.wall_clock(),
    )


async def _report(
    rt: Runtime,
    namespace: str,
    name: str,
    memory: GatewayMemory,
    status: dict[str, Any],
    view: FleetView | None,
    replicas: int,
    recommendation: int | None,
    scaled: bool,
    reason: str,
    message: str,
) -> None:
    ok = view is not None and reason not in ("NoHeartbeats", "ScaleDownRecordReset")
    trace_span = tracing.trace_current()
    trace_span.set_attributes({"fleetcast.autoscale.replicas": replicas, "fleetcast.autoscale.reason": reason})
    if recommendation is not None:
        trace_span.set_attribute("fleetcast.autoscale.recommendation", recommendation)
    if view is not None:
        trace_span.set_attribute("fleetcast.autoscale.connections", view.connections)
    if scaled:
        trace_span.add_event("fleetcast.autoscale.scaled", {"fleetcast.autoscale.replicas": replicas})
    patch: dict[str, Any] = {"replicas": replicas}
    if recommendation is not None:
        patch["desiredReplicas"] = recommendation
    if view is not None:
        patch["connections"] = view.connections
        patch["pods"] = view.summary()
    if scaled:
        patch["lastScaleTime"] = conditions.now_iso()
    async with memory.status_lock:
        fresh = await rt.kube.get_gateway(namespace, name)
        current = ((fresh or {}).get("status") or status).get("conditions")
        patch["conditions"] = conditions.upsert(current, "Autoscaling", ok, reason, message or reason)
        await rt.kube.patch_gateway_status(namespace, name, patch)
