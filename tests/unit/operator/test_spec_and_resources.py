"""Gateway spec validation, Channel policy from spec, and the shape of the children."""

from __future__ import annotations

import pytest

from fleetcast.contract.policy import ChannelPolicy
from fleetcast_operator.channels.policy import channel_policy
from fleetcast_operator.errors import InvalidSpec
from fleetcast_operator.gateway import resources
from fleetcast_operator.gateway.spec import parse_gateway_spec

BASE = {"image": "fleetcast:1", "redis": {"url": "redis://r:6379/0"}}


def test_defaults_match_the_crd() -> None:
    """A minimal spec gets the CRD's defaults."""
    spec = parse_gateway_spec(BASE)
    assert (spec.scaling.min_replicas, spec.scaling.max_replicas, spec.scaling.target_per_pod) == (1, 10, 5000)
    assert (spec.scaling.tolerance, spec.scaling.down_stabilization, spec.drain.timeout_seconds) == (0.1, 300, 60)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"image": ""}, "spec.image"),
        ({"replicas": {"min": 4, "max": 2}}, "replicas.min"),
        ({"redis": {}}, "spec.redis"),
        ({"redis": {"url": "redis://x", "secretRef": {"name": "s"}}}, "spec.redis"),
        ({"redis": {"url": "http://x"}}, "spec.redis.url"),
        ({"autoscaling": {"tolerance": 2}}, "autoscaling.tolerance"),
        ({"autoscaling": {"targetConnectionsPerPod": 0}}, "targetConnectionsPerPod"),
        ({"drain": {"timeoutSeconds": True}}, "drain.timeoutSeconds"),
        ({"service": {"type": "ExternalName"}}, "spec.service.type"),
    ],
)
def test_invalid_gateway_specs_name_the_field(patch: dict[str, object], field: str) -> None:
    """Each mistake is an InvalidSpec whose message names the field to fix."""
    with pytest.raises(InvalidSpec, match=field.replace(".", r"\.")):
        parse_gateway_spec({**BASE, **patch})


def test_channel_policy_uses_the_contract() -> None:
    """spec: {} is the default policy; a bad field or a non-family name is InvalidSpec."""
    assert channel_policy("chat", {}) == ChannelPolicy()
    with pytest.raises(InvalidSpec, match=r"slowConsumer\.policy"):
        channel_policy("chat", {"slowConsumer": {"policy": "nope"}})
    with pytest.raises(InvalidSpec, match="not a channel family"):
        channel_policy("chat.v2", {})


def test_deployment_replicas_only_on_creation_and_grace_above_deadline() -> None:
    """The autoscaler owns replicas after creation; the grace period outlasts the drain deadline."""
    spec = parse_gateway_spec({**BASE, "drain": {"timeoutSeconds": 90}})
    update = resources.deployment("edge", "ns", "uid-1", spec, replicas=None)
    assert "replicas" not in update["spec"]
    assert resources.deployment("edge", "ns", "uid-1", spec, replicas=2)["spec"]["replicas"] == 2
    assert update["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 90


def test_secret_redis_url_and_otel_env() -> None:
    """A secretRef becomes a secretKeyRef; an OTel endpoint sets the standard OTEL_* variables."""
    spec = parse_gateway_spec(
        {
            **BASE,
            "redis": {"secretRef": {"name": "redis"}},
            "otel": {"endpoint": "http://otel:4317", "sampleRatio": 0.5},
        }
    )
    env = {e["name"]: e for e in resources.environment("edge", spec)}
    assert env["FLEETCAST_REDIS_URL"]["valueFrom"] == {"secretKeyRef": {"name": "redis", "key": "url"}}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel:4317"
    assert env["OTEL_TRACES_SAMPLER_ARG"]["value"] == "0.5"


def test_pods_get_no_api_token_and_know_their_namespace() -> None:
    """Gateway pods never call the Kubernetes API: no service account token; their namespace (downward API) and
    Gateway name their Redis keys; an operatorKey reaches only the operator, never the pods' env."""
    spec = parse_gateway_spec({**BASE, "redis": {"secretRef": {"name": "auth", "key": "gw", "operatorKey": "op"}}})
    pod = resources.deployment("edge", "ns", "uid-1", spec, replicas=1)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["FLEETCAST_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["FLEETCAST_GATEWAY"]["value"] == "edge"
    assert env["FLEETCAST_REDIS_URL"]["valueFrom"] == {"secretKeyRef": {"name": "auth", "key": "gw"}}
    assert spec.redis.operator_key == "op"
