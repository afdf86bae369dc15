"""A Gateway's spec, validated and with every default applied.

The CRD schema already rejects most mistakes and applies defaults at admission; this module applies the same
defaults again (the API server may be older than the CRD, tests may use an emulator that ignores schemas) and
checks what a schema cannot (``min <= max`` where CEL is unavailable, a Redis source given twice). Errors
name the field, because they end up in the Gateway's status for a human to read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fleetcast.contract.redis_url import MODES, Mode, seed_nodes
from fleetcast_operator.errors import InvalidSpec


@dataclass(frozen=True, slots=True)
class ScalingRules:
    """The autoscaling part of a Gateway spec, validated."""

    min_replicas: int = 1
    max_replicas: int = 10
    target_per_pod: int = 5000
    tolerance: float = 0.1
    up_stabilization: float = 0.0
    up_max_step: int = 4
    down_stabilization: float = 300.0
    down_max_step: int = 2
    enabled: bool = True

    def clamp(self, replicas: int) -> int:
        return max(self.min_replicas, min(self.max_replicas, replicas))


@dataclass(frozen=True, slots=True)
class DrainSpec:
    connections_per_second: float = 200.0
    timeout_seconds: int = 60
    reconnect_delay_ms: int = 1000


@dataclass(frozen=True, slots=True)
class RebalanceSpec:
    """How pods above their share of clients shed some after a scale-up (see :mod:`fleetcast_operator.rebalance`)."""

    enabled: bool = True
    tolerance: float = 0.2
    """A pod within this fraction of the mean of the ready pods is left alone."""
    max_reconnects_per_second: float = 100.0
    """Fleet-wide: clients sent away per second over all shedding pods."""
    cooldown_seconds: int = 15
    """After a round has finished, before another may start."""


@dataclass(frozen=True, slots=True)
class RedisSource:
    url: str | None = None
    secret_name: str | None = None
    secret_key: str = "url"
    operator_key: str | None = None
    """Key of the same Secret with the operator's own Redis URL (its ACL user); None: the operator uses the pods'."""
    mode: Mode = "standalone"
    """``standalone`` or ``cluster`` (a Redis Cluster: the URL lists seed nodes)."""
    wait_replicas: int = 0
    """Replicas that must hold a publish before the pods acknowledge it (``WAIT``); 0: the master alone."""


@dataclass(frozen=True, slots=True)
class OtelSpec:
    endpoint: str | None = None
    service_name: str = "fleetcast"
    sample_ratio: float = 1.0


@dataclass(frozen=True, slots=True)
class SecretEntry:
    name: str
    key: str


@dataclass(frozen=True, slots=True)
class AuthSpec:
    """What the pods accept as credentials; the per-family rules live in Channel resources."""

    default_anonymous: bool = False
    allowed_origins: tuple[str, ...] = ()
    token_cookie: str = "fleetcast_token"
    publish_keys_secret: str | None = None
    jwt_secret: SecretEntry | None = None
    jwt_public_key: SecretEntry | None = None
    jwks_url: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class GatewaySpec:
    image: str
    redis: RedisSource
    image_pull_policy: str = "IfNotPresent"
    scaling: ScalingRules = field(default_factory=ScalingRules)
    drain: DrainSpec = field(default_factory=DrainSpec)
    rebalance: RebalanceSpec = field(default_factory=RebalanceSpec)
    service_type: str = "ClusterIP"
    service_port: int = 80
    resources: Mapping[str, Any] = field(default_factory=dict)
    otel: OtelSpec = field(default_factory=OtelSpec)
    auth: AuthSpec = field(default_factory=AuthSpec)


def parse_gateway_spec(spec: Mapping[str, Any]) -> GatewaySpec:
    """Validate a Gateway spec; :class:`InvalidSpec` names the first bad field."""
    image = spec.get("image")
    if not isinstance(image, str) or not image:
        raise InvalidSpec("spec.image must be a non-empty image reference")
    replicas = _section(spec, "replicas")
    autoscaling = _section(spec, "autoscaling")
    up = _section(autoscaling, "scaleUp", "autoscaling.")
    down = _section(autoscaling, "scaleDown", "autoscaling.")
    drain = _section(spec, "drain")
    rebalance = _section(spec, "rebalance")
    service = _section(spec, "service")
    otel = _section(spec, "otel")

    rules = ScalingRules(
        min_replicas=_int(replicas, "min", 1, "replicas.", low=1),
        max_replicas=_int(replicas, "max", 10, "replicas.", low=1),
        enabled=_bool(autoscaling, "enabled", True, "autoscaling."),
        target_per_pod=_int(autoscaling, "targetConnectionsPerPod", 5000, "autoscaling.", low=1),
        tolerance=_number(autoscaling, "tolerance", 0.1, "autoscaling.", low=0.0, high=1.0),
        up_stabilization=_int(up, "stabilizationSeconds", 0, "autoscaling.scaleUp.", low=0),
        up_max_step=_int(up, "maxPodsPerStep", 4, "autoscaling.scaleUp.", low=1),
        down_stabilization=_int(down, "stabilizationSeconds", 300, "autoscaling.scaleDown.", low=0),
        down_max_step=_int(down, "maxPodsPerStep", 2, "autoscaling.scaleDown.", low=1),
    )
    if rules.min_replicas > rules.max_replicas:
        raise InvalidSpec(f"spec.replicas.min ({rules.min_replicas}) must not exceed max ({rules.max_replicas})")

    redis = _section(spec, "redis")
    url, secret = redis.get("url"), redis.get("secretRef")
    if (url is None) == (secret is None):
        raise InvalidSpec("spec.redis needs exactly one of url or secretRef")
    if url is not None and (not isinstance(url, str) or not url.startswith(("redis://", "rediss://"))):
        raise InvalidSpec("spec.redis.url must start with redis:// or rediss://")
    if secret is not None and (not isinstance(secret, Mapping) or not secret.get("name")):
        raise InvalidSpec("spec.redis.secretRef needs a name")
    mode = redis.get("mode", "standalone")
    if mode not in MODES:
        raise InvalidSpec(f"spec.redis.mode must be one of {', '.join(MODES)}, got {mode!r}")
    if url is not None and mode == "cluster":
        try:
            seed_nodes(url)
        except ValueError as exc:
            raise InvalidSpec(f"spec.redis.url: {exc}") from None
    wait = _int(redis, "waitReplicas", 0, "redis.", low=0, high=5)
    if url is not None:
        source = RedisSource(url=url)
    else:
        assert isinstance(secret, Mapping)
        source = redis_source_of(secret)
    source = dataclasses.replace(source, mode=mode, wait_replicas=wait)

    pull = spec.get("imagePullPolicy", "IfNotPresent")
    if pull not in ("Always", "IfNotPresent", "Never"):
        raise InvalidSpec(f"spec.imagePullPolicy must be Always, IfNotPresent or Never, got {pull!r}")
    service_type = service.get("type", "ClusterIP")
    if service_type not in ("ClusterIP", "NodePort", "LoadBalancer"):
        raise InvalidSpec(f"spec.service.type must be ClusterIP, NodePort or LoadBalancer, got {service_type!r}")
    resources = spec.get("resources") or {}
    if not isinstance(resources, Mapping):
        raise InvalidSpec("spec.resources must be an object with requests and limits")
    endpoint = otel.get("endpoint")
    return GatewaySpec(
        image=image,
        image_pull_policy=str(pull),
        redis=source,
        scaling=rules,
        drain=DrainSpec(
            connections_per_second=_number(drain, "connectionsPerSecond", 200.0, "drain.", low=1e-9),
            timeout_seconds=_int(drain, "timeoutSeconds", 60, "drain.", low=1),
            reconnect_delay_ms=_int(drain, "reconnectDelayMs", 1000, "drain.", low=0),
        ),
        rebalance=RebalanceSpec(
            enabled=_bool(rebalance, "enabled", True, "rebalance."),
            tolerance=_number(rebalance, "tolerance", 0.2, "rebalance.", low=0.0, high=1.0),
            max_reconnects_per_second=_number(rebalance, "maxReconnectsPerSecond", 100.0, "rebalance.", low=1e-9),
            cooldown_seconds=_int(rebalance, "cooldownSeconds", 15, "rebalance.", low=0, high=3600),
        ),
        service_type=str(service_type),
        service_port=_int(service, "port", 80, "service.", low=1, high=65535),
        resources=dict(resources),
        otel=OtelSpec(
            endpoint=str(endpoint) if endpoint else None,
            service_name=str(otel.get("serviceName") or "fleetcast"),
            sample_ratio=_number(otel, "sampleRatio", 1.0, "otel.", low=0.0, high=1.0),
        ),
        auth=_auth(_section(spec, "auth")),
    )


def _auth(auth: Mapping[str, Any]) -> AuthSpec:
    jwt = _section(auth, "jwt", "auth.")
    origins = auth.get("allowedOrigins") or []
    if not isinstance(origins, list) or not all(
        isinstance(o, str) and o.startswith(("http://", "https://")) and "," not in o for o in origins
    ):
        raise InvalidSpec("spec.auth.allowedOrigins must be a list of origins such as https://app.example.com")
    keys = _section(auth, "publishKeysSecretRef", "auth.")
    if "publishKeysSecretRef" in auth and not keys.get("name"):
        raise InvalidSpec("spec.auth.publishKeysSecretRef needs a name")
    jwks = jwt.get("jwksUrl")
    if jwks is not None and (not isinstance(jwks, str) or not jwks.startswith(("http://", "https://"))):
        raise InvalidSpec("spec.auth.jwt.jwksUrl must be an http(s) URL")
    return AuthSpec(
        default_anonymous=_bool(auth, "defaultAnonymous", False, "auth."),
        allowed_origins=tuple(origins),
        token_cookie=str(auth.get("tokenCookie") or "fleetcast_token"),
        publish_keys_secret=str(keys["name"]) if keys else None,
        jwt_secret=_secret_entry(jwt, "secretRef", "secret"),
        jwt_public_key=_secret_entry(jwt, "publicKeySecretRef", "public.pem"),
        jwks_url=jwks,
        jwt_audience=str(jwt["audience"]) if jwt.get("audience") else None,
        jwt_issuer=str(jwt["issuer"]) if jwt.get("issuer") else None,
        jwt_leeway_seconds=_number(jwt, "leewaySeconds", 5.0, "auth.jwt.", low=0.0, high=300.0),
    )


def _secret_entry(jwt: Mapping[str, Any], key: str, default_key: str) -> SecretEntry | None:
    if key not in jwt:
        return None
    ref = _section(jwt, key, "auth.jwt.")
    if not ref.get("name"):
        raise InvalidSpec(f"spec.auth.jwt.{key} needs a name")
    return SecretEntry(name=str(ref["name"]), key=str(ref.get("key") or default_key))


def _section(parent: Mapping[str, Any], key: str, prefix: str = "") -> Mapping[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSpec(f"spec.{prefix}{key} must be an object")
    return value


def _int(section: Mapping[str, Any], key: str, default: int, prefix: str, *, low: int, high: int | None = None) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise InvalidSpec(f"spec.{prefix}{key} must be a whole number {bound}, got {value!r}")
    return value


def _number(
    section: Mapping[str, Any], key: str, default: float, prefix: str, *, low: float, high: float | None = None
) -> float:
    value = section.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise InvalidSpec(f"spec.{prefix}{key} must be a number {bound}, got {value!r}")
    return float(value)


def _bool(section: Mapping[str, Any], key: str, default: bool, prefix: str) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise InvalidSpec(f"spec.{prefix}{key} must be true or false, got {value!r}")
    return value


def redis_source_of(secret_ref: Mapping[str, Any]) -> RedisSource:
    """``spec.redis.secretRef`` (already checked to have a name) as a :class:`RedisSource`."""
    operator_key = secret_ref.get("operatorKey")
    return RedisSource(
        secret_name=str(secret_ref["name"]),
        secret_key=str(secret_ref.get("key") or "url"),
        operator_key=str(operator_key) if operator_key else None,
    )
