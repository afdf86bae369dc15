"""The Deployment, Service and PodDisruptionBudget a Gateway implies: pure builders of desired objects.

Each builder returns the full object the operator wants to exist. The Deployment's ``spec.replicas`` is set
only when the Deployment is created (:func:`deployment` with ``replicas``): afterwards the autoscaler is its
single writer, and a reconcile of the rest of the spec must not undo a scale.

The pod contract used here is the gateway's (``fleetcast serve``): settings from ``FLEETCAST_*`` environment
variables, port 8000 named ``http``, ``GET /healthz`` for liveness, ``GET /readyz`` for readiness (503 while
draining), and ``fleetcast drain`` as the ``preStop`` hook, which drains the pod before Kubernetes sends SIGTERM.
The admin listener (``/internal/*``, ``/metrics``, the API docs) is port 9090 named ``admin``: the Service does
not expose it; the ``preStop`` hook reaches it on 127.0.0.1 with the admin token the pod generated into its
``/tmp``, and Prometheus scrapes it through the chart's metrics Service.
"""

from __future__ import annotations

from typing import Any

from fleetcast_operator.gateway.spec import AuthSpec, GatewaySpec

API_VERSION = "fleetcast.dev/v1alpha1"
KIND = "Gateway"
CONTAINER_PORT = 8000
ADMIN_PORT = 9090
TERMINATION_MARGIN_SECONDS = 30
"""Grace beyond the drain deadline: endpoint propagation before the drain, and process exit after it."""
MANAGED_BY = "fleetcast-operator"
SECRETS_DIR = "/etc/fleetcast"
"""Where the pods find the Secrets a Gateway's ``spec.auth`` names, each in its own read-only volume. Whole
Secret volumes, never ``subPath``: the kubelet then updates the files in place when a Secret is edited, which is
how keys rotate without a restart."""


def child_name(gateway: str) -> str:
    """The name of the Deployment, Service and PodDisruptionBudget of one Gateway."""
    return f"{gateway}-gateway"


def selector_labels(gateway: str) -> dict[str, str]:
    """The labels that select a Gateway's pods; fixed for the Deployment's lifetime (selectors are immutable)."""
    return {
        "app.kubernetes.io/name": "fleetcast",
        "app.kubernetes.io/component": "gateway",
        "app.kubernetes.io/instance": gateway,
    }


def owner_reference(gateway: str, uid: str) -> dict[str, Any]:
    """Makes Kubernetes garbage-collect the children with their Gateway."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": gateway,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(gateway: str, namespace: str, uid: str) -> dict[str, Any]:
    return {
        "name": child_name(gateway),
        "namespace": namespace,
        "labels": {**selector_labels(gateway), "app.kubernetes.io/managed-by": MANAGED_BY},
        "ownerReferences": [owner_reference(gateway, uid)],
    }


def environment(gateway: str, spec: GatewaySpec) -> list[dict[str, Any]]:
    """The gateway's settings as ``FLEETCAST_*`` variables (and the standard ``OTEL_*`` ones)."""
    redis: dict[str, Any]
    if spec.redis.url is not None:
        redis = {"name": "FLEETCAST_REDIS_URL", "value": spec.redis.url}
    else:
        ref = {"name": spec.redis.secret_name, "key": spec.redis.secret_key}
        redis = {"name": "FLEETCAST_REDIS_URL", "valueFrom": {"secretKeyRef": ref}}
    env: list[dict[str, Any]] = [
        {"name": "FLEETCAST_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "FLEETCAST_GATEWAY", "value": gateway},
        {"name": "FLEETCAST_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "FLEETCAST_HOST", "value": "0.0.0.0"},
        {"name": "FLEETCAST_PORT", "value": str(CONTAINER_PORT)},
        {"name": "FLEETCAST_ADMIN_PORT", "value": str(ADMIN_PORT)},
        redis,
        {"name": "FLEETCAST_REDIS_MODE", "value": spec.redis.mode},
        {"name": "FLEETCAST_REDIS_WAIT_REPLICAS", "value": str(spec.redis.wait_replicas)},
        {"name": "FLEETCAST_DRAIN_RATE", "value": repr(spec.drain.connections_per_second)},
        {"name": "FLEETCAST_DRAIN_TIMEOUT", "value": str(spec.drain.timeout_seconds)},
        {"name": "FLEETCAST_DRAIN_RECONNECT_DELAY_MS", "value": str(spec.drain.reconnect_delay_ms)},
    ]
    env += auth_environment(spec.auth)
    if spec.otel.endpoint:
        env += [
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": spec.otel.endpoint},
            {"name": "OTEL_SERVICE_NAME", "value": spec.otel.service_name},
            {"name": "OTEL_TRACES_SAMPLER", "value": "parentbased_traceidratio"},
            {"name": "OTEL_TRACES_SAMPLER_ARG", "value": repr(spec.otel.sample_ratio)},
            {
                "name": "OTEL_RESOURCE_ATTRIBUTES",
                "value": f"k8s.pod.name=$(FLEETCAST_POD_NAME),fleetcast.gateway={gateway}",
            },
        ]
    return env


def auth_environment(auth: AuthSpec) -> list[dict[str, Any]]:
    """The pods' credential settings: the files of :func:`auth_volumes` and the plain values."""
    env: list[dict[str, Any]] = [
        {"name": "FLEETCAST_ANONYMOUS", "value": "true" if auth.default_anonymous else "false"},
        {"name": "FLEETCAST_TOKEN_COOKIE", "value": auth.token_cookie},
        {"name": "FLEETCAST_JWT_LEEWAY", "value": repr(auth.jwt_leeway_seconds)},
    ]
    if auth.allowed_origins:
        env.append({"name": "FLEETCAST_ALLOWED_ORIGINS", "value": ",".join(auth.allowed_origins)})
    if auth.publish_keys_secret:
        env.append({"name": "FLEETCAST_PUBLISH_KEYS_DIR", "value": f"{SECRETS_DIR}/publish-keys"})
    if auth.jwt_secret:
        env.append({"name": "FLEETCAST_JWT_SECRET_FILE", "value": f"{SECRETS_DIR}/jwt-secret/secret"})
    if auth.jwt_public_key:
        env.append({"name": "FLEETCAST_JWT_PUBLIC_KEY_FILE", "value": f"{SECRETS_DIR}/jwt-public-key/public.pem"})
    for name, value in (
        ("FLEETCAST_JWKS_URL", auth.jwks_url),
        ("FLEETCAST_JWT_AUDIENCE", auth.jwt_audience),
        ("FLEETCAST_JWT_ISSUER", auth.jwt_issuer),
    ):
        if value:
            env.append({"name": name, "value": value})
    return env


def auth_volumes(auth: AuthSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Secret volumes and their mounts for the key files :func:`auth_environment` points at."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []

    def add(name: str, secret: dict[str, Any]) -> None:
        # Read-only files (the image runs one non-root user with no fsGroup, so group-only modes would lock it out).
        volumes.append({"name": name, "secret": {**secret, "defaultMode": 0o444}})
        mounts.append({"name": name, "mountPath": f"{SECRETS_DIR}/{name}", "readOnly": True})

    if auth.publish_keys_secret:
        add("publish-keys", {"secretName": auth.publish_keys_secret})
    if auth.jwt_secret:
        add(
            "jwt-secret",
            {"secretName": auth.jwt_secret.name, "items": [{"key": auth.jwt_secret.key, "path": "secret"}]},
        )
    if auth.jwt_public_key:
        key = auth.jwt_public_key
        add("jwt-public-key", {"secretName": key.name, "items": [{"key": key.key, "path": "public.pem"}]})
    return volumes, mounts


def deployment(gateway: str, namespace: str, uid: str, spec: GatewaySpec, *, replicas: int | None) -> dict[str, Any]:
    """The gateway Deployment; ``replicas`` only when creating it (see the module docstring)."""
    secret_volumes, secret_mounts = auth_volumes(spec.auth)
    container: dict[str, Any] = {
        "name": "gateway",
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["fleetcast", "serve"],
        "env": environment(gateway, spec),
        "ports": [
            {"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"},
            # Not in the Service: the preStop hook (127.0.0.1, admin token) and Prometheus (NetworkPolicy) only.
            {"name": "admin", "containerPort": ADMIN_PORT, "protocol": "TCP"},
        ],
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        # Quick to fail: a draining pod answers 503 and must leave the endpoints before it moves clients.
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 2,
            "timeoutSeconds": 1,
            "failureThreshold": 1,
        },
        "lifecycle": {"preStop": {"exec": {"command": ["fleetcast", "drain"]}}},
        "resources": dict(spec.resources),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        # The root filesystem is read-only; anything that needs a scratch file gets this.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *secret_mounts],
    }
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(gateway, namespace, uid),
        "spec": {
            "selector": {"matchLabels": selector_labels(gateway)},
            # Surge, never unavailable: a rolling update adds a pod before draining one.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": selector_labels(gateway)},
                "spec": {
                    "terminationGracePeriodSeconds": spec.drain.timeout_seconds + TERMINATION_MARGIN_SECONDS,
                    "automountServiceAccountToken": False,  # pods never call the Kubernetes API
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}, *secret_volumes],
                },
            },
        },
    }
    if replicas is not None:
        body["spec"]["replicas"] = replicas
    return body


def service(gateway: str, namespace: str, uid: str, spec: GatewaySpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(gateway, namespace, uid),
        "spec": {
            "type": spec.service_type,
            "selector": selector_labels(gateway),
            "ports": [{"name": "http", "port": spec.service_port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def pod_disruption_budget(gateway: str, namespace: str, uid: str) -> dict[str, Any]:
    """One voluntary disruption at a time: each evicted pod drains its clients onto the others first."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(gateway, namespace, uid),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(gateway)}},
    }
