"""Acceptance 5 (and issue 13, acceptance 6): the operator's RBAC grants exactly the API calls the operator makes.

The calls are fleetcast_operator.rbac.REQUIRED_PERMISSIONS, which tests/operator/test_rbac.py derives from the
requests a full scenario sends to the API emulator; here the chart's rules must equal that list, verb for verb,
whether the operator serves its release namespace (the default: a Role), listed ones (a Role in each) or every
namespace (a ClusterRole, only when asked). Secrets are granted by name only, the ones the Gateways name.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.chart import objects

rbac = pytest.importorskip("fleetcast_operator.rbac", reason="the operator's REQUIRED_PERMISSIONS is not there yet")

Grant = tuple[str, str, str]


def required() -> set[Grant]:
    return {(p.group, p.resource, verb) for p in rbac.REQUIRED_PERMISSIONS for verb in p.verbs}


def granted(role: dict[str, Any], secrets: list[str] | None = None) -> set[Grant]:
    """The role's grants; its only rule on Secrets must name exactly ``secrets`` (default: the chart's)."""
    grants = set()
    for rule in role["rules"]:
        assert "*" not in rule["verbs"], "wildcards are not least privilege"
        assert "*" not in rule["resources"], "wildcards are not least privilege"
        if rule["resources"] == ["secrets"]:
            assert rule["resourceNames"] == (secrets or ["fleetcast-redis-auth"]), "Secrets by name only"
        else:
            assert "resourceNames" not in rule
        grants |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return grants


def operator_roles(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        doc
        for _, doc in objects(values)
        if doc["kind"] in {"Role", "ClusterRole"} and doc["metadata"]["name"].endswith("-operator")
    ]


def test_default_role_is_namespaced_and_exactly_the_operators_calls() -> None:
    """By default: one Role in the release namespace granting exactly REQUIRED_PERMISSIONS (Secrets: only the
    chart's Redis auth Secret), nothing cluster-wide, and the operator serves that namespace only."""
    (role,) = operator_roles({})
    assert (role["kind"], role["metadata"]["namespace"]) == ("Role", "realtime")
    assert granted(role) == required()
    assert not [doc for _, doc in objects({}) if doc["kind"] in {"ClusterRole", "ClusterRoleBinding"}]
    bindings = [doc for _, doc in objects({}) if doc["kind"] == "RoleBinding"]
    (binding,) = [doc for doc in bindings if doc["metadata"]["name"] == "fleetcast-operator"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "fleetcast-operator", "namespace": "realtime"}]
    (deployment,) = [doc for _, doc in objects({}) if doc["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--namespace=")] == ["--namespace=realtime"]


def test_secrets_are_granted_by_name_only() -> None:
    """The operator reads the Secrets the Gateways name and no other; with no Secret named, none at all."""
    values = {"operator": {"rbac": {"secretNames": ["chat-redis"]}}}
    (role,) = operator_roles(values)
    assert granted(role, ["fleetcast-redis-auth", "chat-redis"]) == required()
    external = {"redis": {"enabled": False, "external": {"url": "redis://redis.example:6379/0"}}}
    (role,) = operator_roles(external)
    assert granted(role) == required() - {("", "secrets", "get")}


def test_cluster_wide_role_is_exactly_the_operators_calls() -> None:
    """Serving every namespace, when asked: one ClusterRole granting exactly REQUIRED_PERMISSIONS."""
    values = {"operator": {"watchAllNamespaces": True}}
    (role,) = operator_roles(values)
    assert role["kind"] == "ClusterRole"
    assert granted(role) == required()
    (binding,) = [doc for _, doc in objects(values) if doc["kind"] == "ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "fleetcast-operator", "namespace": "realtime"}]


def test_namespaced_roles_are_exactly_the_operators_calls() -> None:
    """Serving listed namespaces: a Role in each granting exactly REQUIRED_PERMISSIONS, and no ClusterRole."""
    values = {"operator": {"watchNamespaces": ["realtime", "chat"]}}
    roles = operator_roles(values)
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["chat", "realtime"]
    assert all(r["kind"] == "Role" and granted(r) == required() for r in roles)
    assert not [doc for _, doc in objects(values) if doc["kind"] in {"ClusterRole", "ClusterRoleBinding"}]


def test_operator_serves_the_namespaces_its_roles_cover() -> None:
    """The operator's --namespace arguments are the namespaces that got a Role."""
    values = {"operator": {"watchNamespaces": ["realtime", "chat"]}}
    (deployment,) = [doc for _, doc in objects(values) if doc["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--namespace=")] == ["--namespace=realtime", "--namespace=chat"]


def test_hook_role_only_touches_the_default_gateway() -> None:
    """The Gateway hook Jobs' Role reaches only gateways, and only the chart's own one for patch and delete."""
    (role,) = [d for _, d in objects({}) if d["kind"] == "Role" and d["metadata"]["name"].endswith("-gateway-hook")]
    assert {r for rule in role["rules"] for r in rule["resources"]} == {"gateways"}
    scoped = [rule for rule in role["rules"] if "delete" in rule["verbs"] or "patch" in rule["verbs"]]
    assert all(rule["resourceNames"] == ["fleetcast"] for rule in scoped)
