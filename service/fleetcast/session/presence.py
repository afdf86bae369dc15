"""This pod's part of presence: who of its clients is present where, written to the fleet in batches.

The rules (``docs/protocol.md``, "Presence"; the choices behind them in ``docs/decisions.md``):

- A subscription to a channel whose policy has ``presence.enabled`` registers an :class:`Entry` for the
  connection's *identity*: its ``sub`` and the client id it sent (``?client=``). A client id counts only with a
  ``sub``: anonymous connections (and tokens without ``sub``) get an identity made here, so nobody can claim or
  replace another's entry.
- Joins and leaves are queued and written once per tick (:attr:`Presence.tick`), one round trip for all of them.
- A leave is held for the grace window first. If the same identity joins meanwhile, anywhere in the fleet, its
  join replaces the entry, and the held leave then finds another connection's entry and deletes nothing: no
  leave, no join, no flapping when a drain moves clients to another pod.
- The lease is the heartbeat: each heartbeat the pod reads the registry (one command), remembers which pods are
  dead (stale record), and the live pod whose name sorts first deletes the entries of pods whose heartbeat is older than
  :func:`~fleetcast.contract.presence.dead_after`, announcing their leaves. It then removes the dead pod's record
  if it is still the stale one, so a pod that was only slow finds its record new on its next heartbeat and
  writes its entries again, as after a Redis restart that lost them.

Reads skip entries of pods whose record is stale; a stats answer counts them until they are reaped (within one
lease). Bounds: pending joins are one per local entry; pending leaves are capped (:data:`MAX_PENDING_LEAVES`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from fleetcast.auth.principal import Principal
from fleetcast.broker.fleet import Fleet
from fleetcast.broker.presence import PresenceStore
from fleetcast.contract.policy import ChannelPolicy
from fleetcast.contract.presence import CLIENT_ID, GRACE_SECONDS, LEASE_SECONDS, Entry, Stats, dead_after
from fleetcast.errors import BadRequest, FleetcastError, PresenceDisabled
from fleetcast.session.access import Access

if TYPE_CHECKING:
    from fleetcast.session.session import Session

log = logging.getLogger(__name__)

TICK_SECONDS = 0.05
"""How long joins and leaves gather before one write carries them all."""
MAX_PENDING_LEAVES = 100_000
"""Leaves kept for a store that is out of reach; past this the oldest are dropped (logged)."""

Key = tuple[str, str]


def client_id(value: str | None) -> str | None:
    """The ``?client=`` a connection sent, checked (:class:`BadRequest` says what a client id looks like)."""
    if value is None or value == "":
        return None
    if not CLIENT_ID.match(value):
        raise BadRequest("'client' must be 8 to 64 characters of A-Z, a-z, 0-9, '_', '.', '-' (a random id per page)")
    return value


def presence_readable(access: Access, principal: Principal, channel: str) -> ChannelPolicy:
    """The policy of a channel whose presence ``principal`` may read: subscribe rights first (401/403, so a
    refusal says nothing of the policy), then presence must be on (404 ``presence_disabled``)."""
    policy = access.read(principal, channel)
    if not policy.presence_enabled:
        raise PresenceDisabled(
            f"channel {channel!r} has no presence: its Channel's presence.enabled is false "
            "(`fleetcast channel set FAMILY --presence`)"
        )
    return policy


class Presence:
    """This pod's presence entries, their batched writes, and its part of the lease (see the module docstring).
    The pod owns it: :meth:`start` after the broker, :meth:`close` before it; :meth:`renew` after each heartbeat."""

    def __init__(
        self,
        store: PresenceStore,
        fleet: Fleet,
        *,
        pod: str,
        lease: float = LEASE_SECONDS,
        grace: float = GRACE_SECONDS,
        tick: float = TICK_SECONDS,
    ) -> None:
        self.store = store
        self.fleet = fleet
        self.pod = pod
        self.lease = lease
        self.grace = grace
        self.tick = tick
        self._conns = itertools.count(1)
        self._nonce = secrets.token_hex(4)
        self._local: dict[Key, Entry] = {}
        self._counts: Counter[str] = Counter()
        """Local entries per channel, and leaves still held there: while either is above 0, the channel stays in
        the pod's index in the store (what the reaper cleans if the pod dies)."""
        self._joins: dict[Key, Entry] = {}
        self._held: deque[tuple[float, Entry]] = deque()
        self._maybe_empty: set[str] = set()
        self._quiet: set[str] = set()
        """Channels whose policy (at the last join here) has no joinLeave: their changes are not announced."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._reaped: dict[str, float] = {}
        self._swept = False
        """Whether entries an earlier process of this pod left (a container restarted under the same pod name,
        faster than the lease) were removed: once, at the first renewal that reaches the store."""
        self.dead_pods: frozenset[str] = frozenset()
        """Pods whose heartbeat record is stale, as of this pod's last heartbeat: reads skip their entries. (Not
        "every pod without a fresh record": a pod that started since is unknown, and its entries are good.)"""
        self.writes = 0
        """Batches of joins and leaves written, for metrics."""
        self.reaped = 0
        """Entries of dead pods this pod removed, for metrics."""

    async def start(self) -> None:
        self._task = asyncio.create_task(self._flush_forever(), name="presence-flush")

    async def close(self) -> None:
        """Every local entry leaves; held leaves wait out their grace (a drained client may be back elsewhere by
        then), then the last batch is written."""
        for entry in list(self._local.values()):
            self.leave(entry)
        if self._held:
            await asyncio.sleep(min(max(self._held[-1][0] - time.monotonic(), 0.0), self.grace))
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(FleetcastError):
            await self._flush(final=True)
            if not self._local and not self._held:
                await self.store.forget(self.pod)

    # --- the session core's calls -------------------------------------------------------------------------------

    def join(self, session: Session, channel: str, *, announced: bool = True) -> Entry:
        """Register ``session`` in ``channel`` (its policy has presence; ``announced``: and joins and leaves);
        returns the entry to leave with."""
        if session.presence_conn is None:
            session.presence_conn = f"{self.pod}.{self._nonce}.{next(self._conns)}"
            chosen = session.client_id if session.principal.sub is not None else None
            session.presence_client = chosen or secrets.token_urlsafe(12)
        principal = session.principal
        entry = Entry(
            channel=channel,
            client=session.presence_client or "",
            sub=principal.sub,
            info=principal.info,
            pod=self.pod,
            conn=session.presence_conn,
            since=time.time(),
        )
        key = (channel, entry.field)
        if announced:
            self._quiet.discard(channel)
        else:
            self._quiet.add(channel)
        if key not in self._local:
            self._counts[channel] += 1
        self._local[key] = entry
        self._joins[key] = entry
        self._wake.set()
        return entry

    def leave(self, entry: Entry) -> None:
        """The subscription of ``entry`` ended: hold its leave for the grace window."""
        key = (entry.channel, entry.field)
        if self._local.get(key) is not entry:
            return  # a newer connection of the same identity on this pod took the entry over
        del self._local[key]
        self._held.append((time.monotonic() + self.grace, entry))
        if len(self._held) > MAX_PENDING_LEAVES:
            _, dropped = self._held.popleft()
            self._release(dropped.channel)
            log.warning("presence: more than %d leaves pending; dropped the oldest", MAX_PENDING_LEAVES)
        self._wake.set()

    def reidentify(self, session: Session) -> None:
        """The connection's user changed (a first token after anonymous subscribes, or new ``info``): its entries
        leave as what they were and join again as the user, with the client id the connection sent."""
        session.presence_conn = session.presence_client = None
        for subscription in session.subscriptions.values():
            if subscription.entry is not None:
                self.leave(subscription.entry)
                announced = subscription.policy.presence_join_leave
                subscription.entry = self.join(session, subscription.channel, announced=announced)

    # --- reads ---------------------------------------------------------------------------------------------------

    async def page(self, channel: str, cursor: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """About ``limit`` present clients from ``cursor`` (0: first page) and the next cursor (0: last page)."""
        entries, next_cursor = await self.store.page(channel, cursor, limit)
        dead = self.dead_pods
        return [e.public() for e in entries if e.pod not in dead], next_cursor

    async def stats(self, channel: str) -> Stats:
        return await self.store.stats(channel)

    def by_family(self) -> dict[str, int]:
        """Local entries by channel family (for the heartbeat: the operator's PRESENT column)."""
        counts: Counter[str] = Counter()
        for channel, _ in self._local:
            counts[channel.partition(":")[0]] += 1
        return dict(counts)

    # --- the lease -----------------------------------------------------------------------------------------------

    async def renew(self, record_was_new: bool) -> None:
        """After this pod's heartbeat: rewrite every local entry if the registry had lost the pod's record (Redis
        restarted, or a reaper took the pod for dead); learn which pods are alive; reap the dead ones if this
        pod is the reaper. Raises :class:`FleetcastError` when the store is out of reach."""
        if record_was_new and self._local:
            log.warning("presence: this pod's heartbeat record was gone; writing %d entries again", len(self._local))
            self._joins.update(self._local)
            self._wake.set()
        if not self._swept:
            left = await self.store.reap(self.pod, keep=f"{self.pod}.{self._nonce}.")
            self._swept = True
            if left:
                log.warning("presence: removed %d entries an earlier process of pod %s left", left, self.pod)
        beats = await self.fleet.heartbeats()
        now = time.time()
        limit = dead_after(self.lease)
        live = {pod for pod, beat in beats.items() if now - beat.timestamp <= limit} | {self.pod}
        dead = {pod: beat.timestamp for pod, beat in beats.items() if pod not in live}
        self.dead_pods = frozenset(dead)
        for pod in [p for p in self._reaped if p not in dead]:
            del self._reaped[pod]
        if min(live) != self.pod:
            return
        for pod, stamp in dead.items():
            if self._reaped.get(pod) == stamp:
                continue
            removed = await self.store.reap(pod)
            await self.fleet.forget_heartbeat(pod, stamp)
            self._reaped[pod] = stamp
            self.reaped += removed
            if removed:
                log.warning("presence: removed %d entries of dead pod %s (%.0f s silent)", removed, pod, now - stamp)

    # --- writing -------------------------------------------------------------------------------------------------

    async def _flush_forever(self) -> None:
        failures = 0
        while True:
            timeout = self._held[0][0] - time.monotonic() if self._held else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if timeout is None else max(timeout, 0)):
                    await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.tick * (1 << min(failures, 5)))
            try:
                await self._flush()
                failures = 0
            except FleetcastError as exc:
                failures += 1
                log.warning("presence not written (will retry): %s", exc)
                self._wake.set()

    async def _flush(self, *, final: bool = False) -> None:
        now = time.monotonic()
        leaves: list[Entry] = []
        while self._held and (final or self._held[0][0] <= now):
            _, entry = self._held.popleft()
            if (entry.channel, entry.field) in self._local:
                self._release(entry.channel)  # the identity is back on this pod: its join replaced the entry
            else:
                leaves.append(entry)
        joins = list(self._joins.values())
        self._joins.clear()
        if not joins and not leaves and not self._maybe_empty:
            return
        for entry in leaves:
            self._counts[entry.channel] -= 1
        emptied = [c for c in self._maybe_empty | {e.channel for e in leaves} if self._counts[c] <= 0]
        try:
            await self.store.apply(self.pod, joins, leaves, emptied, self._quiet)
        except BaseException:  # the store refused, or close() cancelled the write: both are written again
            for entry in joins:  # next time, unless replaced meanwhile
                self._joins.setdefault((entry.channel, entry.field), entry)
            for entry in reversed(leaves):
                self._counts[entry.channel] += 1
                self._held.appendleft((0.0, entry))
            raise
        self.writes += 1
        self._maybe_empty.clear()
        for channel in emptied:
            if self._counts[channel] <= 0:
                del self._counts[channel]
                self._quiet.discard(channel)

    def _release(self, channel: str) -> None:
        self._counts[channel] -= 1
        self._maybe_empty.add(channel)
