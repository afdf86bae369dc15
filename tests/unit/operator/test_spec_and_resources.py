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
    rebalance = spec.rebalance
    assert (rebalance.enabled, rebalance.tolerance, rebalance.max_reconnects_per_second) == (True, 0.2, 100.0)
    assert rebalance.cooldown_seconds == 15


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"image": ""}, "spec.image"),
        ({"replicas": {"min": 4, "max": 2}}, "replicas.min"),
        ({"redis": {}}, "spec.redis"),
        ({"redis": {"url": "redis://x", "secretRef": {"name": "s"}}}, "spec.redis"),
        ({"redis": {"url": "http://x"}}, "spec.redis.url"),
        ({"redis": {"url": "redis://x:1", "mode": "sentinel"}}, "spec.redis.mode"),
        ({"redis": {"url": "redis://x:1,y/0", "mode": "cluster"}}, "spec.redis.url"),
        ({"redis": {"url": "redis://x:1", "waitReplicas": -1}}, "redis.waitReplicas"),
        ({"autoscaling": {"tolerance": 2}}, "autoscaling.tolerance"),
        ({"autoscaling": {"targetConnectionsPerPod": 0}}, "targetConnectionsPerPod"),
        ({"drain": {"timeoutSeconds": True}}, "drain.timeoutSeconds"),
        ({"rebalance": {"tolerance": -0.1}}, "rebalance.tolerance"),
        ({"rebalance": {"maxReconnectsPerSecond": 0}}, "rebalance.maxReconnectsPerSecond"),
        ({"rebalance": {"enabled": "no"}}, "rebalance.enabled"),
        ({"rebalance": {"cooldownSeconds": 1.5}}, "rebalance.cooldownSeconds"),
        ({"service": {"type": "ExternalName"}}, "spec.service.type"),
        ({"auth": {"defaultAnonymous": "yes"}}, "auth.defaultAnonymous"),
        ({"auth": {"allowedOrigins": ["example.com"]}}, "spec.auth.allowedOrigins"),
        ({"auth": {"allowedOrigins": ["https://a.example,https://b.example"]}}, "spec.auth.allowedOrigins"),
        ({"auth": {"publishKeysSecretRef": {}}}, "spec.auth.publishKeysSecretRef"),
        ({"auth": {"jwt": {"secretRef": {"key": "k"}}}}, "spec.auth.jwt.secretRef"),
        ({"auth": {"jwt": {"jwksUrl": "file:///etc/passwd"}}}, "spec.auth.jwt.jwksUrl"),
        ({"auth": {"jwt": {"leewaySeconds": 3600}}}, "auth.jwt.leewaySeconds"),
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


def test_redis_mode_and_wait_replicas_reach_the_pods() -> None:
    """spec.redis.mode and waitReplicas become FLEETCAST_REDIS_MODE / _WAIT_REPLICAS; the defaults are standalone, 0."""
    plain = {e["name"]: e.get("value") for e in resources.environment("edge", parse_gateway_spec(BASE))}
    assert (plain["FLEETCAST_REDIS_MODE"], plain["FLEETCAST_REDIS_WAIT_REPLICAS"]) == ("standalone", "0")
    redis = {"secretRef": {"name": "seeds"}, "mode": "cluster", "waitReplicas": 1}
    spec = parse_gateway_spec({**BASE, "redis": redis})
    assert (spec.redis.mode, spec.redis.wait_replicas, spec.redis.secret_name) == ("cluster", 1, "seeds")
    env = {e["name"]: e.get("value") for e in resources.environment("edge", spec)}
    assert (env["FLEETCAST_REDIS_MODE"], env["FLEETCAST_REDIS_WAIT_REPLICAS"]) == ("cluster", "1")


def test_auth_defaults_to_closed() -> None:
    """With no spec.auth, undeclared families are closed (the CRD's default) and no key file is configured."""
    env = {e["name"]: e.get("value") for e in resources.environment("edge", parse_gateway_spec(BASE))}
    assert env["FLEETCAST_ANONYMOUS"] == "false"
    assert not {"FLEETCAST_JWT_SECRET_FILE", "FLEETCAST_PUBLISH_KEYS_DIR", "FLEETCAST_ALLOWED_ORIGINS"} & env.keys()


def test_auth_secrets_become_whole_secret_volumes_the_env_points_into() -> None:
    """Each Secret is mounted whole (no subPath, so edits reach the pod) and every *_FILE/*_DIR variable points
    inside one of the mounts."""
    spec = parse_gateway_spec(
        {
            **BASE,
            "auth": {
                "defaultAnonymous": True,
                "allowedOrigins": ["https://app.example.com", "https://*.example.org"],
                "publishKeysSecretRef": {"name": "backends"},
                "jwt": {
                    "secretRef": {"name": "jwt", "key": "hs"},
                    "publicKeySecretRef": {"name": "idp"},
                    "audience": "rt",
                    "issuer": "https://idp.example.com",
                },
            },
        }
    )
    deployment = resources.deployment("edge", "ns", "uid-1", spec, replicas=1)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FLEETCAST_ANONYMOUS"] == "true"
    assert env["FLEETCAST_ALLOWED_ORIGINS"] == "https://app.example.com,https://*.example.org"
    assert (env["FLEETCAST_JWT_AUDIENCE"], env["FLEETCAST_JWT_ISSUER"]) == ("rt", "https://idp.example.com")
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert volumes["publish-keys"]["secret"] == {"secretName": "backends", "defaultMode": 0o444}
    assert volumes["jwt-secret"]["secret"]["items"] == [{"key": "hs", "path": "secret"}]
    assert volumes["jwt-public-key"]["secret"]["items"] == [{"key": "public.pem", "path": "public.pem"}]
    assert all("subPath" not in m and m["readOnly"] for m in container["volumeMounts"][1:])
    for name in ("FLEETCAST_PUBLISH_KEYS_DIR", "FLEETCAST_JWT_SECRET_FILE", "FLEETCAST_JWT_PUBLIC_KEY_FILE"):
        path = env[name]
        mount = next(m for m in mounts if path == m or path.startswith(m + "/"))
        assert mounts[mount]["name"] in volumes


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
