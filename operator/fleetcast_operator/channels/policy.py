"""A Channel resource turned into the policy the pods apply, or a reason it cannot be.

The schema and defaults are :class:`fleetcast.contract.policy.ChannelPolicy`'s, the same the pods parse, so
the operator can never store a policy the pods would reject. The family is the resource's name, which must
also be a valid channel family (no dots, unlike Kubernetes names).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fleetcast.contract.policy import ChannelPolicy
from fleetcast_operator.errors import InvalidSpec

FAMILY = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def channel_policy(name: str, spec: Mapping[str, Any] | None) -> ChannelPolicy:
    """The policy of the family ``name``; :class:`InvalidSpec` says what to fix."""
    if not FAMILY.match(name):
        raise InvalidSpec(f"the name {name!r} is not a channel family: lowercase letters, digits and '-' only")
    try:
        return ChannelPolicy.from_spec(dict(spec or {}))
    except ValueError as exc:
        raise InvalidSpec(f"spec.{exc}") from exc
