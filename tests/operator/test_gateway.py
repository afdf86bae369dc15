"""Acceptance 1: a Gateway becomes a Deployment, a Service and a PodDisruptionBudget that it owns."""

from __future__ import annotations

from typing import Any

import kmock

from tests.operator.harness import GATEWAYS, create, current, eventually, new_object, running_operator
from tests.support.processes import RedisServer

DEPLOYMENTS, SERVICES, PDBS = "apps/v1/deployments", "v1/services", "policy/v1/poddisruptionbudgets"


def gateway(redis_url: str, **spec: Any) -> dict[str, Any]:
    body = {"image": "fleetcast:test", "redis": {"url": redis_url}, "replicas": {"min": 2, "max": 5}}
    body.update(spec)
    return new_object("fleetcast.dev/v1alpha1", "Gateway", "edge", body)


async def test_gateway_creates_owned_children(k8s: tuple[kmock.KubernetesEmulator, str], redis: RedisServer) -> None:
    """Deployment (probes, preStop drain, grace above the deadline, env), Service and PDB, each owned."""
    emulator, url = k8s
    async with running_operator(url):
        body = gateway(redis.url, drain={"timeoutSeconds": 45, "connectionsPerSecond": 50})
        await create(emulator, GATEWAYS, body)
        uid = body["metadata"]["uid"]
        deployment = await eventually(lambda: current(emulator, DEPLOYMENTS, "edge-gateway"), what="Deployment")
        service = await eventually(lambda: current(emulator, SERVICES, "edge-gateway"), what="Service")
        pdb = await eventually(lambda: current(emulator, PDBS, "edge-gateway"), what="PDB")
        ready = await eventually(
            lambda: _condition(current(emulator, GATEWAYS, "edge"), "Ready"), what="Ready condition"
        )

    for child in (deployment, service, pdb):
        (owner,) = child["metadata"]["ownerReferences"]
        assert owner == {
            "apiVersion": "fleetcast.dev/v1alpha1",
            "kind": "Gateway",
            "name": "edge",
            "uid": uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["terminationGracePeriodSeconds"] > 45
    assert container["lifecycle"]["preStop"] == {"exec": {"command": ["fleetcast", "drain"]}}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["ports"] == [
        {"name": "http", "containerPort": 8000, "protocol": "TCP"},
        {"name": "admin", "containerPort": 9090, "protocol": "TCP"},
    ]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["FLEETCAST_REDIS_URL"] == redis.url
    assert env["FLEETCAST_GATEWAY"] == "edge"
    assert env["FLEETCAST_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["FLEETCAST_DRAIN_TIMEOUT"] == "45"
    assert env["FLEETCAST_DRAIN_RATE"] == "50.0"
    assert env["FLEETCAST_ADMIN_PORT"] == "9090"
    # The admin port (drain, metrics, docs) stays off the Service.
    assert [(p["name"], p["targetPort"]) for p in service["spec"]["ports"]] == [("http", "http")]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": deployment["spec"]["selector"]}
    assert ready["status"] == "True"


def _condition(body: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for condition in ((body or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return None
