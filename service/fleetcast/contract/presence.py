"""Presence records: who is subscribed to a channel, across every pod, as stored in Redis.

A presence channel's entries live in the hash :meth:`fleetcast.contract.keys.Keys.presence`. One entry per
*client identity*: the field is :func:`field` of the connection's ``sub`` and its client id, so a client that
reconnects (to this pod or another) with the same id overwrites its own entry instead of adding one, and no
client can touch an entry of another user (the ``sub`` comes from a verified token, never from the client).

The value is :class:`Entry` as JSON. ``conn`` names the connection that wrote it last (unique per pod process):
a leave deletes the entry only while it still carries the leaving connection's ``conn``, so the leave of a
connection that another one replaced (a drained client that came back elsewhere) deletes nothing.

The lease: an entry belongs to the pod named in it, and lives as long as that pod's heartbeat
(:mod:`fleetcast.contract.heartbeat`) is fresh. There are no per-entry renewals. Readers skip entries of pods
whose heartbeat is older than :func:`dead_after` (or missing), and a live pod deletes them (with leave events), so
they are gone within one lease. Nothing here does I/O; the operator may read these records too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from fleetcast.contract.heartbeat import INTERVAL_SECONDS

LEASE_SECONDS = 15.0
"""Default: entries of a pod that died are gone (and their leaves sent) within this long."""
MIN_LEASE_SECONDS = 5 * INTERVAL_SECONDS
"""A shorter lease would call a pod dead after two heartbeats late (a busy event loop, a slow Redis): the pod
would be reaped, its leaves announced, and its entries written again a heartbeat later."""
GRACE_SECONDS = 5.0
"""Default: how long a leave is held back; a join of the same client identity within it cancels both."""
INFO_MAX_BYTES = 1024
"""Largest ``info`` (a token claim, compact JSON) an entry carries."""
CLIENT_ID = re.compile(r"[A-Za-z0-9_.-]{8,64}\Z")
"""A client id: what SDKs generate (a random id per page or process), long enough not to be guessed by accident."""


def dead_after(lease: float) -> float:
    """Heartbeat age past which a pod's entries are dead. Two heartbeat periods short of the lease, so that the
    reaper, which runs once per heartbeat, has deleted them by the time the lease is over."""
    return max(lease - 2 * INTERVAL_SECONDS, 3 * INTERVAL_SECONDS)


def field(sub: str | None, client: str) -> str:
    """The hash field of a client identity: length-prefixed ``sub`` (empty for anonymous) then the client id, so
    no choice of either can produce another identity's field."""
    owner = sub or ""
    return f"{len(owner)}:{owner}{client}"


@dataclass(frozen=True, slots=True)
class Entry:
    """One present client."""

    channel: str
    client: str
    """The client id (chosen by the client, or made by the pod for anonymous connections)."""
    sub: str | None
    """The user (token ``sub``); None for anonymous clients."""
    info: Any
    """The token's ``info`` claim (JSON, at most :data:`INFO_MAX_BYTES` encoded), or None."""
    pod: str
    """The pod holding the connection: the entry lives with that pod's heartbeat."""
    conn: str
    """The connection that wrote the entry (unique per pod process)."""
    since: float
    """When the client joined (Unix seconds)."""

    @property
    def field(self) -> str:
        return field(self.sub, self.client)

    def to_json(self) -> str:
        record = {"client": self.client, "sub": self.sub, "info": self.info, "pod": self.pod, "conn": self.conn,
                  "since": round(self.since, 3)}  # fmt: skip
        return json.dumps(record, separators=(",", ":"), ensure_ascii=False)

    def public(self) -> dict[str, Any]:
        """What clients see of an entry (not the pod, not the connection)."""
        return {"client": self.client, "sub": self.sub, "info": self.info, "since": round(self.since, 3)}

    @classmethod
    def from_json(cls, channel: str, text: str | bytes) -> Entry:
        """Parse a stored entry; ``ValueError`` for anything else."""
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("a presence entry is a JSON object")
        try:
            sub = raw.get("sub")
            return cls(
                channel=channel,
                client=str(raw["client"]),
                sub=None if sub is None else str(sub),
                info=raw.get("info"),
                pod=str(raw["pod"]),
                conn=str(raw["conn"]),
                since=float(raw["since"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed presence entry: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Stats:
    clients: int
    """Present client identities."""
    users: int
    """Distinct ``sub``s among them (anonymous clients are not users)."""
