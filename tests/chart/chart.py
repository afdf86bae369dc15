"""Rendering the fleetcast chart offline with the Helm v4 engine, and the value sets the tests render it with."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "fleetcast"
CRD_SOURCES = ROOT / "manifests" / "crds"
RELEASE, NAMESPACE = "fleetcast", "realtime"

# Kubernetes minor versions every rendered manifest must be valid for (Chart.yaml says the same).
KUBE_VERSIONS = ("1.31", "1.32", "1.33", "1.34", "1.35")

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "external-redis": {"redis": {"enabled": False, "external": {"url": "rediss://redis.example.internal:6380/2"}}},
    "existing-secret": {
        "redis": {"enabled": False, "existingSecret": "fleetcast-redis", "existingSecretUrlKey": "url"},
    },
    "external-cluster": {
        "redis": {
            "enabled": False,
            "existingSecret": "redis-cluster",
            "existingSecretUrlKey": "seeds",
            "external": {"mode": "cluster", "waitReplicas": 1},
        },
    },
    "no-crds": {"crds": {"enabled": False}, "tests": {"enabled": False}},
    "auth": {
        "gateway": {
            "auth": {
                "allowedOrigins": ["https://app.example.com", "https://*.example.org"],
                "publishKeysSecret": "backend-keys",
                "jwt": {"secret": {"name": "jwt", "key": "hs256"}, "audience": "realtime", "issuer": "https://id"},
            }
        }
    },
    "redis-auth-extra-gateways-all-namespaces": {
        "operator": {"watchAllNamespaces": True, "rbac": {"secretNames": ["chat-redis"]}},
        "redis": {"auth": {"extraGateways": [{"namespace": "chat", "name": "edge"}]}},
        "networkPolicy": {"enabled": True},
    },
    "redis-auth-existing-secret": {"redis": {"auth": {"existingSecret": "my-redis-users"}}},
    "crds-not-kept": {"crds": {"keep": False}, "gateway": {"create": False}},
    "networkpolicy-servicemonitor": {
        "networkPolicy": {
            "enabled": True,
            "gatewayIngressFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}],
        },
        "serviceMonitor": {"enabled": True, "interval": "15s", "scrapeTimeout": "5s", "labels": {"release": "prom"}},
        "otel": {"endpoint": "http://otel-collector.observability:4317", "sampleRatio": 0.25},
    },
    "edge": {
        "ingress": {
            "enabled": True,
            "hosts": ["rt.example.com", "*.rt.example.com"],
            "tls": {"secretName": "rt-tls"},
            "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
            "labels": {"exposure": "public"},
        },
        "httpRoute": {
            "enabled": True,
            "parentRefs": [{"name": "edge", "namespace": "infra", "sectionName": "https"}],
            "hostnames": ["rt.example.com"],
            "timeouts": {"request": "0s", "backendRequest": "0s"},
        },
    },
    "custom-resources": {
        "fullnameOverride": "rt",
        "commonLabels": {"team": "realtime"},
        "imagePullSecrets": [{"name": "registry-credentials"}],
        "operator": {
            "image": {"repository": "example/operator", "digest": "sha256:" + "a" * 64},
            "watchNamespaces": ["realtime", "chat"],
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": 1, "memory": "512Mi"}},
            "extraEnv": [{"name": "KOPF_LOG", "value": "debug"}],
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "realtime", "effect": "NoSchedule"}],
            "priorityClassName": "system-cluster-critical",
        },
        "gateway": {
            "name": "edge",
            "image": {"repository": "example/gateway", "tag": "1.2.3", "pullPolicy": "Always"},
            "service": {"type": "LoadBalancer", "port": 443},
            "replicas": {"min": 3, "max": 50},
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
            "drain": {"connectionsPerSecond": 50.5, "timeoutSeconds": 300, "reconnectDelayMs": 2500},
        },
        "redis": {
            "auth": {"enabled": False},  # one shared password instead of ACL users
            "existingSecret": "redis-auth",
            "existingSecretPasswordKey": "password",
            "persistence": {"enabled": False},
            "maxmemory": "2gb",
            "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"memory": "3Gi"}},
        },
    },
}


@functools.cache
def _render_json(values_json: str) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(json.loads(values_json), name=RELEASE, namespace=NAMESPACE, is_install=True)


def render(values: dict[str, Any]) -> dict[str, str]:
    """Template path -> rendered text, for an install of release "fleetcast" into namespace "realtime"."""
    return _render_json(json.dumps(values, sort_keys=True))


def objects(values: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every Kubernetes object the chart renders (hooks and tests included), with the template it came from."""
    found = []
    for path, text in sorted(render(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        found += [(path, doc) for doc in yaml.safe_load_all(text) if doc]
    return found


def of_kind(values: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in objects(values) if doc["kind"] == kind]


def gateway_manifests(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The Gateway objects the hook Jobs apply and delete (as JSON in their GATEWAY_MANIFEST variable), deduplicated."""
    found: dict[str, dict[str, Any]] = {}
    for job in of_kind(values, "Job"):
        for container in job["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                if env["name"] == "GATEWAY_MANIFEST":
                    found[env["value"]] = json.loads(env["value"])
    return list(found.values())


def crd_schemas() -> dict[str, dict[str, Any]]:
    """Kind -> openAPIV3Schema of the served version, from manifests/crds/."""
    schemas = {}
    for path in sorted(CRD_SOURCES.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        (version,) = [v for v in crd["spec"]["versions"] if v.get("served")]
        schemas[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return schemas
