"""The hands of the autoscaler and the drain: the Deployment's replicas and a pod's deletion cost. Nothing else
writes them."""

from __future__ import annotations

from fleetcast_operator.gateway.resources import child_name
from fleetcast_operator.kube import Kube

DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
DRAINED_DELETION_COST = "-1000"
"""Below the default of 0, so the ReplicaSet removes drained pods before any other ready pod."""


async def scale_to(kube: Kube, namespace: str, gateway: str, replicas: int) -> None:
    """Set the replicas to an absolute number: repeating it after a restart changes nothing (idempotent)."""
    await kube.patch("Deployment", namespace, child_name(gateway), {"spec": {"replicas": replicas}})


async def mark_for_removal(kube: Kube, namespace: str, pod: str) -> bool:
    """Make the ReplicaSet remove this pod first when the replicas drop; False when the pod is gone."""
    body = {"metadata": {"annotations": {DELETION_COST_ANNOTATION: DRAINED_DELETION_COST}}}
    return await kube.patch("Pod", namespace, pod, body) is not None
