"""Acceptance 1 and 2: the chart renders and lints strictly with every value set, and every object it renders is
valid for Kubernetes 1.31 to 1.35 (built-in kinds by kubernetes-validate in strict mode, Gateway and Channel by
our CRD schemas, ServiceMonitor and HTTPRoute by bundled schemas)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from fleetcast_operator.gateway.spec import AuthSpec, SecretEntry, parse_gateway_spec
from tests.chart.chart import CHART, KUBE_VERSIONS, VALUE_SETS, crd_schemas, gateway_manifests, objects, render

SERVICEMONITOR_SCHEMA = json.loads((Path(__file__).parent / "schemas" / "servicemonitor-v1.json").read_text())
HTTPROUTE_SCHEMA = json.loads((Path(__file__).parent / "schemas" / "httproute-v1.json").read_text())
BUNDLED_SCHEMAS = {"ServiceMonitor": SERVICEMONITOR_SCHEMA, "HTTPRoute": HTTPROUTE_SCHEMA}
CUSTOM_KINDS = {"Gateway", "Channel", *BUNDLED_SCHEMAS}


def validate_custom(doc: dict[str, Any]) -> None:
    if doc["kind"] in BUNDLED_SCHEMAS:
        jsonschema.Draft202012Validator(BUNDLED_SCHEMAS[doc["kind"]]).validate(doc)
    else:
        # CRD schemas are OpenAPI v3.0 (boolean exclusiveMinimum): draft 4 semantics.
        jsonschema.Draft4Validator(crd_schemas()[doc["kind"]]).validate(doc)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_renders(name: str) -> None:
    """The chart renders with each value set, into the operator, its RBAC and, by default, Redis and the CRDs."""
    kinds = {doc["kind"] for _, doc in objects(VALUE_SETS[name])}
    assert {"Deployment", "ServiceAccount"} <= kinds
    assert {"ClusterRole", "ClusterRoleBinding"} <= kinds or {"Role", "RoleBinding"} <= kinds
    assert ("StatefulSet" in kinds) == VALUE_SETS[name].get("redis", {}).get("enabled", True)
    assert "NOTES.txt" in " ".join(render(VALUE_SETS[name]))


@pytest.mark.parametrize("name", VALUE_SETS)
def test_lint_strict(name: str) -> None:
    """`helm lint --strict` finds no warning or error with each value set."""
    import helm_python as helm

    report = helm.lint(CHART, VALUE_SETS[name], strict=True, namespace="realtime")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems, problems
    assert not report["errors"], report["errors"]


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", VALUE_SETS)
def test_objects_validate(name: str, version: str) -> None:
    """Every rendered object is valid for this Kubernetes version, with no field the API would drop."""
    docs = [doc for _, doc in objects(VALUE_SETS[name])] + gateway_manifests(VALUE_SETS[name])
    assert docs
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            if doc["kind"] in CUSTOM_KINDS:
                validate_custom(doc)
            else:
                kubernetes_validate.validate(doc, version, strict=True)
        except jsonschema.ValidationError as exc:
            path = ".".join(str(p) for p in exc.absolute_path)
            pytest.fail(f"{where} invalid for Kubernetes {version} at {path}: {exc.message}")


def test_default_gateway_matches_crd() -> None:
    """The default Gateway carries the values' image, bounds, drain and Redis URL, and satisfies the CRD."""
    (gateway,) = gateway_manifests({})
    spec = gateway["spec"]
    assert spec["image"] == "fleetcast/gateway:0.1.0"
    assert spec["replicas"] == {"min": 2, "max": 10}
    # The in-release Redis is locked: the pods' URL (and the operator's) come from the chart's auth Secret.
    ref = {"name": "fleetcast-redis-auth", "key": "gateway-url", "operatorKey": "operator-url"}
    assert spec["redis"] == {"secretRef": ref}
    assert spec["replicas"]["min"] <= spec["replicas"]["max"]  # the CRD's CEL rule, which jsonschema cannot run
    assert spec["rebalance"] == {
        "enabled": True,
        "tolerance": 0.2,
        "maxReconnectsPerSecond": 100,
        "cooldownSeconds": 15,
    }


def test_default_gateway_is_closed_and_auth_values_reach_the_operator() -> None:
    """The chart's default Gateway admits nobody to undeclared families; the auth values arrive as a spec the
    operator reads back field for field (the chart and the operator agree on spec.auth)."""
    (default,) = gateway_manifests({})
    assert default["spec"]["auth"]["defaultAnonymous"] is False
    assert parse_gateway_spec(default["spec"]).auth == AuthSpec()
    (gateway,) = gateway_manifests(VALUE_SETS["auth"])
    auth = parse_gateway_spec(gateway["spec"]).auth
    assert auth.allowed_origins == ("https://app.example.com", "https://*.example.org")
    assert auth.publish_keys_secret == "backend-keys"
    assert auth.jwt_secret == SecretEntry("jwt", "hs256")
    assert (auth.jwt_audience, auth.jwt_issuer, auth.jwt_public_key, auth.jwks_url) == (
        "realtime",
        "https://id",
        None,
        None,
    )


def test_jwt_without_allowed_origins_fails_the_render() -> None:
    """Tokens are for browsers; a chart that configures them must say which pages may use them."""
    import helm_python as helm

    with pytest.raises(helm.HelmError, match=r"gateway\.auth\.allowedOrigins"):
        render({"gateway": {"auth": {"jwt": {"jwksUrl": "https://id.example.com/jwks"}}}})


def test_helm_test_channel_is_the_only_open_family() -> None:
    """`helm test` carries no credential, so its own Channel (deleted when the test succeeds) opens its family."""
    channels = [d for _, d in objects({}) if d["kind"] == "Channel"]
    assert [c["metadata"]["annotations"]["helm.sh/hook"] for c in channels] == ["test"]
    assert channels[0]["spec"]["subscribe"]["anonymous"]
    assert channels[0]["spec"]["publish"]["anonymous"]


def test_existing_secret_never_inlines_the_url() -> None:
    """With existingSecret the Redis URL reaches the Gateway only as a Secret reference; the chart makes no Secret."""
    values = VALUE_SETS["existing-secret"]
    (gateway,) = gateway_manifests(values)
    assert gateway["spec"]["redis"] == {"secretRef": {"name": "fleetcast-redis", "key": "url"}}
    assert "redis://" not in "".join(render(values).values())
    for name in VALUE_SETS:
        secrets = [doc["metadata"]["name"] for _, doc in objects(VALUE_SETS[name]) if doc["kind"] == "Secret"]
        assert set(secrets) <= {"fleetcast-redis-auth"}, "the only Secret the chart makes is the Redis ACL one"


def test_redis_acl_secret_is_rendered_and_mounted_by_default() -> None:
    """By default the chart makes the Redis ACL Secret (default user off, one user per Gateway confined to its
    keys, the operator's user; passwords only hashed in the aclfile), Redis loads it, and its probes log in."""
    (secret,) = [doc for _, doc in objects({}) if doc["kind"] == "Secret"]
    data = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert set(data) == {"users.acl", "operator-password", "operator-url", "gateway-password", "gateway-url"}
    acl = data["users.acl"].splitlines()
    assert acl[0] == "user default off"
    (gateway_user,) = [line for line in acl if line.startswith("user gateway.realtime.fleetcast ")]
    assert "~fc:realtime/fleetcast:{*" in gateway_user.split()
    assert "&fc:realtime/fleetcast:*" in gateway_user.split()
    assert "-@all" in gateway_user.split()
    for line in acl[1:]:
        for dangerous in ("+@all", "+flushall", "+config", "+script", "+keys", "+debug", "+acl", "~*", "allkeys"):
            assert dangerous not in line.split(), (dangerous, line)
        assert data["gateway-password"] not in line
        assert data["operator-password"] not in line
    assert data["gateway-url"].startswith("redis://gateway.realtime.fleetcast:")
    config = render({})["fleetcast/templates/redis-configmap.yaml"]
    assert "aclfile /etc/redis-acl/users.acl" in config
    (redis,) = [doc for _, doc in objects({}) if doc["kind"] == "StatefulSet"]
    pod = redis["spec"]["template"]["spec"]
    assert {"name": "acl", "secret": {"secretName": "fleetcast-redis-auth", "items": [
        {"key": "users.acl", "path": "users.acl"}]}} in pod["volumes"]  # fmt: skip
    assert pod["containers"][0]["readinessProbe"]["exec"]["command"] == ["redis-cli", "--user", "operator", "ping"]


def test_redis_auth_existing_secret_is_used_not_made() -> None:
    """With redis.auth.existingSecret the chart makes no Secret and points Redis and the Gateway at that one."""
    values = VALUE_SETS["redis-auth-existing-secret"]
    assert not [doc for _, doc in objects(values) if doc["kind"] == "Secret"]
    (gateway,) = gateway_manifests(values)
    assert gateway["spec"]["redis"]["secretRef"]["name"] == "my-redis-users"
    (redis,) = [doc for _, doc in objects(values) if doc["kind"] == "StatefulSet"]
    volumes = redis["spec"]["template"]["spec"]["volumes"]
    assert [v["secret"]["secretName"] for v in volumes if v["name"] == "acl"] == ["my-redis-users"]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_pods_are_locked_down(name: str) -> None:
    """Every pod the chart makes runs non-root with a read-only root, no capabilities and RuntimeDefault seccomp."""
    for _, doc in objects(VALUE_SETS[name]):
        if doc["kind"] not in {"Deployment", "StatefulSet", "Job"}:
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"]["drop"] == ["ALL"]


def test_operator_is_a_single_recreated_replica() -> None:
    """One operator at a time (kopf has no leader election): one replica, Recreate, a liveness probe."""
    (deployment,) = [doc for _, doc in objects({}) if doc["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_config_changes_roll_pods() -> None:
    """Redis reads redis.conf only at start: its checksum annotation changes with it, so Redis restarts."""

    def checksum(values: dict[str, Any]) -> str:
        (doc,) = [d for _, d in objects(values) if d["kind"] == "StatefulSet"]
        return str(doc["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum({"redis": {"appendfsync": "always"}}) != checksum({})
    assert checksum({"redis": {"persistence": {"size": "20Gi"}}}) == checksum({})


def test_redis_refuses_writes_rather_than_evict_history() -> None:
    """The in-release Redis has a maxmemory below its container limit and never evicts (streams are history)."""
    (config,) = [d for _, d in objects({}) if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "fleetcast-redis"]
    lines = config["data"]["redis.conf"].splitlines()
    assert "maxmemory 768mb" in [line.strip() for line in lines]
    assert "maxmemory-policy noeviction" in [line.strip() for line in lines]
    (config,) = [
        d
        for _, d in objects({"redis": {"maxmemory": ""}})
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "fleetcast-redis"
    ]
    lines = [line.strip() for line in config["data"]["redis.conf"].splitlines()]
    assert "maxmemory-policy noeviction" in lines
    assert not any(line.startswith("maxmemory ") for line in lines)


def test_redis_is_durable() -> None:
    """The in-release Redis keeps an append-only file on a PersistentVolumeClaim."""
    (config,) = [d for _, d in objects({}) if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "fleetcast-redis"]
    assert "appendonly yes" in config["data"]["redis.conf"].splitlines()
    (statefulset,) = [d for _, d in objects({}) if d["kind"] == "StatefulSet"]
    assert statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "8Gi"


def test_helm_test_targets_the_gateway_service() -> None:
    """`helm test` runs a Job that talks to the Service the operator creates for the default Gateway."""
    (job,) = [d for p, d in objects({}) if d["kind"] == "Job" and "/tests/" in p]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "test"
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FLEETCAST_URL"] == "http://fleetcast-gateway.realtime.svc:80"


def test_external_cluster_reaches_the_gateway_as_a_secret_and_a_mode() -> None:
    """An external Redis Cluster: the seed list (with its password) comes from the Secret, the mode and the WAIT
    count go into the Gateway's spec.redis, which the operator accepts; no Redis is rendered."""
    values = VALUE_SETS["external-cluster"]
    (gateway,) = gateway_manifests(values)
    assert gateway["spec"]["redis"] == {
        "secretRef": {"name": "redis-cluster", "key": "seeds"},
        "mode": "cluster",
        "waitReplicas": 1,
    }
    spec = parse_gateway_spec(gateway["spec"])
    assert (spec.redis.mode, spec.redis.wait_replicas) == ("cluster", 1)
    assert "StatefulSet" not in {doc["kind"] for _, doc in objects(values)}


def test_cluster_mode_with_the_in_release_redis_fails_the_render() -> None:
    """The in-release Redis is one server: asking for cluster mode with it fails, saying what to set."""
    import helm_python as helm

    with pytest.raises(helm.HelmError, match=r"redis\.enabled=false"):
        render({"redis": {"external": {"mode": "cluster"}}})


def test_missing_redis_fails_the_render() -> None:
    """Turning off the in-release Redis without naming another one fails with a message saying what to set."""
    import helm_python as helm

    with pytest.raises(helm.HelmError, match=r"redis\.external\.url"):
        render({"redis": {"enabled": False}})


def test_strict_validation_catches_unknown_fields() -> None:
    """The validation above is strict: a field Kubernetes does not know (which the API would drop) fails."""
    (deployment,) = [doc for _, doc in objects({}) if doc["kind"] == "Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(jsonschema.ValidationError, match="livenessProbes"):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)


def test_redis_network_policy_admits_the_extra_gateways() -> None:
    """Redis's NetworkPolicy admits the operator, the chart's gateway pods, the helm test, and the pods of every
    Gateway given its own ACL user, each only from its own namespace."""
    values = VALUE_SETS["redis-auth-extra-gateways-all-namespaces"]
    (policy,) = [
        d for _, d in objects(values) if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("-redis")
    ]
    (rule,) = policy["spec"]["ingress"]
    extra = {
        "app.kubernetes.io/name": "fleetcast",
        "app.kubernetes.io/component": "gateway",
        "app.kubernetes.io/instance": "edge",
    }
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "chat"}},
        "podSelector": {"matchLabels": extra},
    } in rule["from"]
    assert len(rule["from"]) == 4
