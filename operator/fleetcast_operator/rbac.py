"""Every Kubernetes API call the operator makes, as RBAC rules: the chart's ClusterRole must grant exactly these.

The list covers kopf's own calls (watching Gateways and Channels, patching them for finalizers, progress
annotations and status, posting events) and the operator's (:mod:`fleetcast_operator.kube`). kopf's CRD and
namespace scanning and its peering are switched off (see :mod:`fleetcast_operator.wiring`), so they need
nothing. ``tests/operator/test_rbac.py`` records every request a full scenario sends to the API emulator and
checks it against this list, so it cannot silently fall behind the code.
"""

from __future__ import annotations

from typing import NamedTuple


class Permission(NamedTuple):
    group: str
    """API group; ``""`` is the core group."""
    resource: str
    """Plural resource name, ``resource/subresource`` for a subresource."""
    verbs: frozenset[str]


REQUIRED_PERMISSIONS: tuple[Permission, ...] = (
    Permission("fleetcast.dev", "gateways", frozenset({"get", "list", "watch", "patch"})),
    Permission("fleetcast.dev", "gateways/status", frozenset({"patch"})),
    Permission("fleetcast.dev", "channels", frozenset({"list", "watch", "patch"})),
    Permission("fleetcast.dev", "channels/status", frozenset({"patch"})),
    Permission("apps", "deployments", frozenset({"get", "create", "patch"})),
    Permission("", "services", frozenset({"get", "create", "patch"})),
    Permission("policy", "poddisruptionbudgets", frozenset({"get", "create", "patch"})),
    Permission("", "pods", frozenset({"patch"})),
    Permission("", "secrets", frozenset({"get"})),
    Permission("", "events", frozenset({"create"})),
)


def allows(group: str, resource: str, verb: str) -> bool:
    return any(p.group == group and p.resource == resource and verb in p.verbs for p in REQUIRED_PERMISSIONS)
