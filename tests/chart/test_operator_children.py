"""What the operator builds for a Gateway is valid Kubernetes, and speaks the gateway's own settings.

The chart tests prove what Helm renders; this proves what the operator renders at run time (the Deployment,
Service and PodDisruptionBudget), with the same strict schemas, and that every ``FLEETCAST_*`` variable it sets
on the pods is a flag ``fleetcast serve`` reads: a renamed flag would otherwise be ignored in silence.
"""

from __future__ import annotations

import argparse
from typing import Any

import kubernetes_validate
import pytest

from fleetcast.__main__ import _add_serve
from fleetcast_operator.gateway.resources import deployment, pod_disruption_budget, service
from fleetcast_operator.gateway.spec import parse_gateway_spec
from tests.chart.chart import KUBE_VERSIONS

SPEC: dict[str, Any] = {
    "image": "fleetcast/gateway:0.1.0",
    "redis": {"secretRef": {"name": "redis", "key": "url"}},
    "otel": {"endpoint": "http://collector:4317"},
    "auth": {
        "allowedOrigins": ["https://app.example.com"],
        "publishKeysSecretRef": {"name": "backends"},
        "jwt": {"secretRef": {"name": "jwt"}, "jwksUrl": "https://idp.example.com/jwks", "audience": "rt"},
    },
}


def children() -> list[dict[str, Any]]:
    spec = parse_gateway_spec(SPEC)
    return [
        deployment("edge", "realtime", "uid-1", spec, replicas=2),
        service("edge", "realtime", "uid-1", spec),
        pod_disruption_budget("edge", "realtime", "uid-1"),
    ]


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_operator_children_validate_strictly(version: str) -> None:
    """Deployment, Service and PDB pass kubernetes-validate in strict mode."""
    for child in children():
        kubernetes_validate.validate(child, version, strict=True)


def test_every_fleetcast_variable_is_a_serve_flag() -> None:
    """FLEETCAST_<NAME> on the pods maps to a `--<name>` flag of `fleetcast serve`."""
    parser = argparse.ArgumentParser()
    _add_serve(parser.add_subparsers())
    serve = parser._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    flags = {option for action in serve._actions for option in action.option_strings}
    container = children()[0]["spec"]["template"]["spec"]["containers"][0]
    names = [e["name"] for e in container["env"] if e["name"].startswith("FLEETCAST_")]
    assert names
    for name in names:
        flag = "--" + name.removeprefix("FLEETCAST_").lower().replace("_", "-")
        assert flag in flags, f"{name} is set by the operator but `fleetcast serve` has no {flag}"
