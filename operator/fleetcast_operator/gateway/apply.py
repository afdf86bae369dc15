"""Make a Gateway's children exist as built: create what is missing, merge-patch what exists.

The Deployment's ``spec.replicas`` is written only on creation (to ``replicas.min``); afterwards only the
autoscaler changes it. Patching an unchanged object is harmless (the API server does not bump its
generation), so a reconcile simply re-applies everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetcast_operator.gateway import resources
from fleetcast_operator.gateway.spec import GatewaySpec
from fleetcast_operator.kube import JsonObject, Kube


@dataclass(frozen=True, slots=True)
class Applied:
    created: tuple[str, ...]
    updated: tuple[str, ...]


async def apply_children(kube: Kube, name: str, namespace: str, uid: str, spec: GatewaySpec) -> Applied:
    created: list[str] = []
    updated: list[str] = []
    child = resources.child_name(name)

    async def ensure(kind: str, body: JsonObject, *, create_body: JsonObject | None = None) -> None:
        if await kube.get(kind, namespace, child) is None:
            await kube.create(kind, namespace, create_body or body)
            created.append(kind)
        else:
            await kube.patch(kind, namespace, child, body)
            updated.append(kind)

    await ensure(
        "Deployment",
        resources.deployment(name, namespace, uid, spec, replicas=None),
        create_body=resources.deployment(name, namespace, uid, spec, replicas=spec.scaling.min_replicas),
    )
    await ensure("Service", resources.service(name, namespace, uid, spec))
    await ensure("PodDisruptionBudget", resources.pod_disruption_budget(name, namespace, uid))
    return Applied(tuple(created), tuple(updated))
