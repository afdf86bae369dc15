"""The Deployment, Service and PodDisruptionBudget a Gateway implies: pure builders of desired objects.

Each builder returns the full object the operator wants to exist. The Deployment's ``spec.replicas`` is set
only when the Deployment is created (:func:`deployment` with ``replicas``): afterwards the autoscaler is its
single writer, and a reconcile of the rest of the spec must not undo a scale.

The pod contract used here is the gateway's (``fleetcast serve``): settings from ``FLEETCAST_*`` environment
variables, port 8000 named ``http``, ``GET /healthz`` for liveness, ``GET /readyz`` for readiness (503 while
draining), and ``fleetcast drain`` as the ``preStop`` hook, which drains the pod through its loopback-only
endpoint before Kubernetes sends SIGTERM.
"""

from __future__ import annotations

from typing import Any

from fleetcast_operator.gateway.spec import GatewaySpec

API_VERSION = "fleetcast.dev/v1alpha1"
KIND = "Gateway"
CONTAINER_PORT = 8000
TERMINATION_MARGIN_SECONDS = 30
"""Grace beyond the drain deadline: endpoint propagation before the drain, and process exit after it."""
MANAGED_BY = "fleetcast-operator"


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
        redis,
        {"name": "FLEETCAST_DRAIN_RATE", "value": repr(spec.drain.connections_per_second)},
        {"name": "FLEETCAST_DRAIN_TIMEOUT", "value": str(spec.drain.timeout_seconds)},
        {"name": "FLEETCAST_DRAIN_RECONNECT_DELAY_MS", "value": str(spec.drain.reconnect_delay_ms)},
    ]
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


def deployment(gateway: str, namespace: str, uid: str, spec: GatewaySpec, *, replicas: int | None) -> dict[str, Any]:
    """The gateway Deployment; ``replicas`` only when creating it (see the module docstring)."""
    container: dict[str, Any] = {
        "name": "gateway",
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["fleetcast", "serve"],
        "env": environment(gateway, spec),
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
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
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
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
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
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
