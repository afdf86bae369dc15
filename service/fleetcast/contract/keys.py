"""Redis key names, namespaced per Gateway.

Every key and pub/sub channel of one Gateway starts with ``fc:<namespace>/<gateway>:``, so two Gateways on one
Redis share nothing (streams, idempotency records, notifications, policies, pod registry, control stream) and
a Redis ACL user can be confined to one Gateway with the patterns ``~fc:<ns>/<gw>:*`` and ``&fc:<ns>/<gw>:*``
(:attr:`Keys.pattern`). Every key of one channel carries the channel name as its hash tag (``{...}``), so a
Redis Cluster keeps a channel's stream and its idempotency records on one slot, and the publish script can
touch them atomically.

It deliberately knows nothing about Redis itself: the pods and the operator both build their keys here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PREFIX = "fc"

_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z")
"""A Kubernetes object name (DNS subdomain): no glob characters, braces, ``/`` or ``:`` can reach a key."""


@dataclass(frozen=True, slots=True)
class Keys:
    """The Redis names of Gateway ``gateway`` in Kubernetes namespace ``namespace``."""

    namespace: str
    gateway: str
    prefix: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for what, name in (("namespace", self.namespace), ("gateway", self.gateway)):
            if not _NAME.match(name):
                raise ValueError(f"{what} {name!r} is not a Kubernetes name (lower-case letters, digits, '-', '.')")
        object.__setattr__(self, "prefix", f"{PREFIX}:{self.namespace}/{self.gateway}:")

    @property
    def pattern(self) -> str:
        """Glob matching every key and pub/sub channel of this Gateway (and nothing of any other)."""
        return f"{self.prefix}*"

    def stream(self, channel: str) -> str:
        """The channel's event stream: the system of record for replay and gap detection."""
        return f"{self.prefix}{{{channel}}}:s"

    def idempotency(self, channel: str, key: str) -> str:
        """Remembers the id a publish with this ``Idempotency-Key`` got, for the retention window."""
        return f"{self.prefix}{{{channel}}}:idem:{key}"

    def notify(self, channel: str) -> str:
        """Pub/sub channel that tells pods a stream has new entries (the notify delivery path)."""
        return f"{self.prefix}{{{channel}}}:n"

    def presence(self, channel: str) -> str:
        """Hash: presence entry field -> entry JSON (see :mod:`fleetcast.contract.presence`)."""
        return f"{self.prefix}{{{channel}}}:p"

    def presence_users(self, channel: str) -> str:
        """Hash: ``sub`` -> how many of the channel's presence entries carry it (unique users, in O(1))."""
        return f"{self.prefix}{{{channel}}}:pu"

    def presence_channels(self, pod: str) -> str:
        """Set: the channels where pod ``pod`` holds presence entries (what to clean when the pod dies)."""
        return f"{self.prefix}presence-of:{pod}"

    @property
    def policies(self) -> str:
        """Hash: channel family -> policy JSON (see :mod:`fleetcast.contract.policy`). Written by the operator."""
        return f"{self.prefix}policies"

    @property
    def policies_changed(self) -> str:
        """Pub/sub channel on which the operator announces a policy change (message: the family name)."""
        return f"{self.prefix}policies:changed"

    @property
    def pods(self) -> str:
        """Hash: pod name -> heartbeat JSON (see :mod:`fleetcast.contract.heartbeat`)."""
        return f"{self.prefix}pods"

    @property
    def probe(self) -> str:
        """A key nothing stores: pods check that they may write their Gateway's keys by ``PEXPIRE`` of it."""
        return f"{self.prefix}probe"

    @property
    def control(self) -> str:
        """Stream of commands from the operator to the Gateway's pods (see :mod:`fleetcast.contract.commands`)."""
        return f"{self.prefix}control"


DEFAULT = Keys("default", "default")
"""The keys of a pod started without ``--namespace`` and ``--gateway`` (a laptop, a test)."""
