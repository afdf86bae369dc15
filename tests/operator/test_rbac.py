"""The RBAC list is complete: every request the operator sends in a full scenario is in REQUIRED_PERMISSIONS."""

from __future__ import annotations

from typing import Any

import kmock

from fleetcast.contract.keys import Keys
from fleetcast_operator.rbac import REQUIRED_PERMISSIONS, allows
from tests.operator import fleet
from tests.operator.harness import (
    CHANNELS,
    GATEWAYS,
    NAMESPACE,
    create,
    current,
    delete,
    eventually,
    new_object,
    path,
    running_operator,
)
from tests.support.processes import RedisServer

VERBS = {
    kmock.action.LIST: "list",
    kmock.action.WATCH: "watch",
    kmock.action.FETCH: "get",
    kmock.action.CREATE: "create",
    kmock.action.UPDATE: "patch",
    kmock.action.DELETE: "delete",
}


def operator_calls(emulator: kmock.KubernetesEmulator) -> set[tuple[str, str, str]]:
    """(group, resource[/subresource], verb) of every resource request not sent by the test itself."""
    calls: set[tuple[str, str, str]] = set()
    for request in emulator:
        if request.resource is None or request.resource.plural is None or request.action is None:
            continue  # discovery (/api, /apis/...): non-resource URLs every authenticated client may read
        if request.headers.get("User-Agent", "").startswith("kmock/"):
            continue
        resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
        verb = VERBS[request.action] if request.method != "PUT" else "update"
        calls.add((request.resource.group or "", resource, verb))
    return calls


async def test_every_api_call_is_granted(k8s: tuple[kmock.KubernetesEmulator, str], redis: RedisServer) -> None:
    """Gateway with a Secret-held Redis URL, scale-up, scale-down with drain, Channel lifecycle, a bad spec."""
    emulator, url = k8s
    client = fleet.connect(redis.url)
    try:
        secret = new_object(
            "v1", "Secret", "redis", data={"url": __import__("base64").b64encode(redis.url.encode()).decode()}
        )
        await create(emulator, "v1/secrets", secret)
        spec: dict[str, Any] = {
            "image": "fleetcast:test",
            "redis": {"secretRef": {"name": "redis"}},
            "autoscaling": {"targetConnectionsPerPod": 100, "scaleDown": {"stabilizationSeconds": 0}},
        }
        async with running_operator(url):
            await create(emulator, GATEWAYS, new_object("fleetcast.dev/v1alpha1", "Gateway", "edge", spec))
            await create(emulator, "v1/pods", new_object("v1", "Pod", "edge-a", {"containers": []}))
            await fleet.report(client, fleet.beat("edge-a", 150))
            deployment = "apps/v1/deployments"
            await eventually(
                lambda: (current(emulator, deployment, "edge-gateway") or {}).get("spec", {}).get("replicas") == 2
            )
            await fleet.report(client, fleet.beat("edge-a", 0), fleet.beat("edge-b", 0))
            gw = GATEWAYS
            await eventually(lambda: ((current(emulator, gw, "edge") or {}).get("status") or {}).get("scaleDown"))
            await fleet.report(client, fleet.beat("edge-a", 0, draining=True), fleet.beat("edge-b", 0, draining=True))
            await eventually(
                lambda: current(emulator, deployment, "edge-gateway")["spec"]["replicas"] == 1, what="scale-down"
            )
            patch = {"spec": {"image": "fleetcast:next"}, "metadata": {"generation": 2}}
            async with emulator.patch(path(GATEWAYS, "edge"), json=patch) as response:
                assert response.status == 200
            await eventually(
                lambda: (
                    current(emulator, deployment, "edge-gateway")["spec"]["template"]["spec"]["containers"][0]["image"]
                    == "fleetcast:next"
                ),
                what="an update re-applied to the children",
            )
            await create(emulator, CHANNELS, new_object("fleetcast.dev/v1alpha1", "Channel", "chat", {}))
            await create(emulator, CHANNELS, new_object("fleetcast.dev/v1alpha1", "Channel", "bad-" + "x" * 70, {}))
            await eventually(lambda: client.hget(Keys(NAMESPACE, "edge").policies, "chat"), what="policy written")
            await delete(emulator, CHANNELS, "chat")
            await eventually(lambda: current(emulator, CHANNELS, "chat") is None, what="channel deleted")
    finally:
        await client.aclose()

    calls = operator_calls(emulator)
    missing = sorted(call for call in calls if not allows(*call))
    assert not missing, f"calls not in REQUIRED_PERMISSIONS: {missing}"
    # And the list holds nothing the scenario never needed (except kopf's own retry paths).
    granted = {(p.group, p.resource, verb) for p in REQUIRED_PERMISSIONS for verb in p.verbs}
    assert granted - calls <= {("fleetcast.dev", "channels", "get")}, sorted(granted - calls)
