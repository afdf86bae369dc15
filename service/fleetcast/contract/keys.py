"""Redis key names.

Every key of one channel carries the channel name as its hash tag (``{...}``), so a Redis Cluster keeps a
channel's stream and its idempotency records on one slot, and the publish script can touch them atomically.
Fleet-wide keys (policies, pod registry, control stream) are namespaced by gateway where they belong to one.
"""

PREFIX = "fc"


def stream(channel: str) -> str:
    """The channel's event stream: the system of record for replay and gap detection."""
    return f"{PREFIX}:{{{channel}}}:s"


def idempotency(channel: str, key: str) -> str:
    """Remembers the id a publish with this ``Idempotency-Key`` got, for the retention window."""
    return f"{PREFIX}:{{{channel}}}:idem:{key}"


def notify(channel: str) -> str:
    """Pub/sub channel that tells pods a stream has new entries (when the notify delivery path is used)."""
    return f"{PREFIX}:{{{channel}}}:n"


POLICIES = f"{PREFIX}:policies"
"""Hash: channel family -> policy JSON (see :mod:`fleetcast.contract.policy`). Written by the operator."""

POLICIES_CHANGED = f"{PREFIX}:policies:changed"
"""Pub/sub channel on which the operator announces a policy change (message: the family name)."""


def pods(gateway: str) -> str:
    """Hash: pod name -> heartbeat JSON (see :mod:`fleetcast.contract.heartbeat`)."""
    return f"{PREFIX}:gw:{gateway}:pods"


def control(gateway: str) -> str:
    """Stream of commands from the operator to the gateway's pods (see :mod:`fleetcast.contract.commands`)."""
    return f"{PREFIX}:gw:{gateway}:control"
