"""The PresenceStore protocol: where a fleet keeps who is present in which channel, and the embedded store.

Semantics every store keeps (the session layer's :mod:`fleetcast.session.presence` batches calls into it):

- :meth:`PresenceStore.apply` writes a batch of joins and leaves in one round trip. A join stores the entry under
  its field (:func:`fleetcast.contract.presence.field`), replacing an entry of the same identity; it is announced
  (``join``) only when no entry of that identity was there. A leave deletes the entry only while it still carries
  the leaving connection (``conn``), and is announced (``leave``) only when it deleted something. So a client
  that reconnects within the grace window, anywhere in the fleet, produces neither.
- Announcements travel with the channel's events (on Redis: the channel's notification channel, which the
  publish script also uses), so a pod's subscribers hear them in the channel's order. They are not history.
- :meth:`PresenceStore.reap` deletes every entry of a dead pod, announcing each as a leave.
- Reads (:meth:`page`, :meth:`stats`) never block the store for long: pages come from a cursor scan.

:class:`MemoryPresence` is the embedded store: one process is the whole fleet.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from fleetcast.broker.base import Announce
from fleetcast.contract.presence import Entry, Stats


class PresenceStore(Protocol):
    async def close(self) -> None: ...

    async def apply(
        self,
        pod: str,
        joins: Sequence[Entry],
        leaves: Sequence[Entry],
        emptied: Sequence[str],
        quiet: Collection[str] = (),
    ) -> None:
        """Write joins and leaves of pod ``pod`` (one round trip); ``emptied``: channels where the pod now holds
        no entry; ``quiet``: channels whose joins and leaves nobody hears (their policy has no joinLeave), which
        are then not announced at all. Raises :class:`fleetcast.errors.BrokerUnavailable` when the store is out
        of reach (nothing or everything of a channel's part was applied)."""
        ...

    async def page(self, channel: str, cursor: int, count: int) -> tuple[list[Entry], int]:
        """About ``count`` entries from ``cursor`` (0: the start) and the next cursor (0: done)."""
        ...

    async def stats(self, channel: str) -> Stats: ...

    async def reap(self, pod: str, keep: str = "") -> int:
        """Delete (and announce as leaves) every entry of ``pod`` but those whose connection id starts with
        ``keep`` (a restarted process of the pod keeps its own); returns how many."""
        ...

    async def forget(self, pod: str) -> None:
        """Drop ``pod``'s index of channels (it exits holding no entry)."""
        ...


class MemoryPresence:
    """Presence in this process, announced synchronously (in order with the memory broker's deliveries)."""

    def __init__(self, announce: Announce) -> None:
        self._announce = announce
        self._channels: dict[str, dict[str, Entry]] = {}

    async def close(self) -> None:
        self._channels.clear()

    async def apply(
        self,
        pod: str,
        joins: Sequence[Entry],
        leaves: Sequence[Entry],
        emptied: Sequence[str],
        quiet: Collection[str] = (),
    ) -> None:
        for entry in joins:
            present = self._channels.setdefault(entry.channel, {})
            new = entry.field not in present
            present[entry.field] = entry
            if new and entry.channel not in quiet:
                self._announce(entry.channel, "join", entry.to_json().encode())
        for entry in leaves:
            present = self._channels.get(entry.channel, {})
            stored = present.get(entry.field)
            if stored is not None and stored.conn == entry.conn:
                del present[entry.field]
                if not present:
                    del self._channels[entry.channel]
                if entry.channel not in quiet:
                    self._announce(entry.channel, "leave", stored.to_json().encode())

    async def page(self, channel: str, cursor: int, count: int) -> tuple[list[Entry], int]:
        entries = list(self._channels.get(channel, {}).values())
        end = cursor + count
        return entries[cursor:end], (end if end < len(entries) else 0)

    async def stats(self, channel: str) -> Stats:
        entries = self._channels.get(channel, {}).values()
        return Stats(clients=len(entries), users=len({e.sub for e in entries if e.sub is not None}))

    async def reap(self, pod: str, keep: str = "") -> int:
        doomed = [
            e
            for present in self._channels.values()
            for e in present.values()
            if e.pod == pod and not (keep and e.conn.startswith(keep))
        ]
        await self.apply(pod, (), doomed, ())
        return len(doomed)

    async def forget(self, pod: str) -> None:
        """Nothing to do: the embedded store keeps no index per pod."""
