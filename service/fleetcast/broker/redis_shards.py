"""The live reader on a Redis Cluster: one sharded-pub/sub connection per master, moved along with the slots.

On a cluster the publish script notifies with ``SPUBLISH`` on the channel's own slot, and a shard channel is only
heard on the shard that owns it. So each pod keeps one :class:`ShardReader` per master: a
:class:`fleetcast.broker.redis_live.NotifyReader` on a dedicated connection to that node, with ``SSUBSCRIBE``,
holding the cursors of the watched channels whose slot the node serves. Everything the notify reader guarantees
holds per shard: after each (re)connect it re-subscribes and catches every channel up from its cursor through the
stream, so events are delivered once, in order, whatever happened to the connection.

:class:`ShardedReader` owns the shard readers and follows the topology, as redis-py's cluster client reports it
(slot routing is never computed here). When a shard reader loses its node, or the server revokes a subscription
(``sunsubscribe``: its slot moved away), the topology is re-read about once a second until it settles: a reader
is started for each new master (a promoted replica), and each cursor moves to the reader of the node that now
serves its slot, which subscribes and catches it up from the cursor. Readers of nodes that are no longer masters
are stopped.

Readiness is per shard: :meth:`ShardedReader.ready_for` tells whether a channel's master is reachable now, and
the pod as a whole stays ready while any shard is (see ``docs/decisions.md``, "Redis Cluster").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from fleetcast.broker.base import Delivery, Lost
from fleetcast.broker.redis_common import TRANSIENT, Backoff, stop_task
from fleetcast.broker.redis_connect import Cluster
from fleetcast.broker.redis_live import Cursor, NotifyReader
from fleetcast.contract.keys import Keys
from fleetcast.errors import BrokerUnavailable

log = logging.getLogger(__name__)

SETTLE_SECONDS = 1.0
"""How often the topology is re-read while some shard is down or some channel sits on the wrong shard."""
CHECK_SECONDS = 5.0
"""How often the topology is compared with the readers when nothing is wrong (a resharding says nothing)."""


class ShardReader(NotifyReader):
    """A notify reader on one master, with sharded pub/sub. ``node`` is ``host:port``."""

    SUBSCRIBE = "SSUBSCRIBE"
    UNSUBSCRIBE = "SUNSUBSCRIBE"
    MESSAGE = b"smessage"
    CONFIRM = b"ssubscribe"
    REVOKE = b"sunsubscribe"
    SUBSCRIBE_BATCH = 1  # one SSUBSCRIBE may only name channels of one slot; the commands go out pipelined

    def __init__(self, node: str, *args: Any, on_revoked: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.node = node
        self.ready = False
        self._on_revoked = on_revoked

    async def probe(self) -> None:
        """Nothing beyond the connection: the broker checks write access once, on the gateway's probe key."""

    def revoked(self, cursor: Cursor) -> None:
        self._on_revoked()

    def release(self, channel: str) -> Cursor | None:
        """Give up a channel (its slot is served elsewhere now) without telling the server: the node has either
        dropped the subscription itself or is gone."""
        cursor = self.cursors.pop(channel, None)
        if cursor is not None:
            self._by_key.pop(self.keys.notify(channel).encode(), None)
            self._pending.pop(cursor, None)
        return cursor

    async def adopt(self, cursor: Cursor) -> None:
        """Take over a channel whose slot this node serves now, keeping its cursor. A live session is restarted,
        so it subscribes every channel again and catches each up from its cursor (rare: only after a slot moved
        to a node that was already a master)."""
        self.cursors[cursor.channel] = cursor
        self._by_key[self.keys.notify(cursor.channel).encode()] = cursor
        if self._conn is not None:
            await self._conn.disconnect(nowait=True)


class ShardedReader:
    """The live reader of a pod on a cluster: the shard readers and the topology they follow."""

    def __init__(
        self,
        target: Cluster,
        keys: Keys,
        deliver: Delivery,
        lost: Lost | None,
        *,
        read_count: int,
        timeout: float,
        set_ready: Callable[[bool], None],
    ) -> None:
        self._target = target
        self.keys = keys
        self._deliver = deliver
        self._lost = lost
        self._read_count = read_count
        self._timeout = timeout
        self._set_ready = set_ready
        self.shards: dict[str, ShardReader] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._unsettled = True
        self._wake = asyncio.Event()
        self._syncing = asyncio.Lock()
        """One topology sync at a time (the loop's, or a watch's that found no reader for its node)."""
        self.stopping = False

    # -- what the broker asks -------------------------------------------------------------------------------------

    def ready_for(self, channel: str) -> bool:
        try:
            shard = self.shards.get(self._target.node_of(self.keys.stream(channel)))
        except BrokerUnavailable:
            return False
        return shard is not None and shard.ready

    def shard_states(self) -> dict[str, bool]:
        return {name: shard.ready for name, shard in sorted(self.shards.items())}

    async def watch(self, channel: str) -> None:
        if self._find(channel) is not None:
            return
        node = self._target.node_of(self.keys.stream(channel))
        if node not in self.shards:  # just started, or a master the readers do not know yet
            await self._sync()
        shard = self.shards.get(node)
        if shard is None:
            self._unsettle()
            raise BrokerUnavailable(f"watch: the shard of {channel!r} ({node}) is not connected yet")
        await shard.watch(channel)

    async def unwatch(self, channel: str) -> None:
        shard = self._find(channel)
        if shard is not None:
            await shard.unwatch(channel)

    def _find(self, channel: str) -> ShardReader | None:
        for shard in self.shards.values():
            if channel in shard.cursors:
                return shard
        return None

    # -- following the topology -----------------------------------------------------------------------------------

    def _unsettle(self) -> None:
        self._unsettled = True
        self._wake.set()

    def _shard_state(self, shard: ShardReader, ready: bool) -> None:
        shard.ready = ready
        if not ready:
            self._unsettle()
        self._set_ready(any(s.ready for s in self.shards.values()))

    def _start_shard(self, node: str) -> None:
        shard: ShardReader
        shard = ShardReader(
            node,
            lambda: self._target.connection_to(node),
            self._target.client,
            self.keys,
            self._deliver,
            self._lost,
            on_revoked=self._unsettle,
            read_count=self._read_count,
            timeout=self._timeout,
            set_ready=lambda ready: self._shard_state(shard, ready),
        )
        self.shards[node] = shard
        self._tasks[node] = asyncio.create_task(shard.run(), name=f"fleetcast-redis-shard-{node}")

    async def _stop_shard(self, node: str) -> None:
        shard = self.shards.pop(node)
        shard.stopping = True
        await stop_task(self._tasks.pop(node), timeout=self._timeout + 2)

    async def _sync(self) -> bool:
        """Readers for the current masters, each cursor on the reader of its slot's node. True when all is in
        place (no cursor left on a node that does not serve it, no shard down)."""
        async with self._syncing:
            return await self._sync_once()

    async def _sync_once(self) -> bool:
        masters = set(self._target.masters())
        for node in sorted(masters - self.shards.keys()):
            log.info("redis cluster: reading shard %s", node)
            self._start_shard(node)
        settled = True
        for node, shard in list(self.shards.items()):
            for cursor in list(shard.cursors.values()):
                owner = self._target.node_of(cursor.key)
                if owner == node:
                    continue
                if owner not in self.shards:
                    settled = False
                    continue
                log.info("redis cluster: %s moves from %s to %s", cursor.channel, node, owner)
                moved = shard.release(cursor.channel)
                if moved is not None:
                    await self.shards[owner].adopt(moved)
        for node in sorted(self.shards.keys() - masters):
            if not self.shards[node].cursors:
                log.info("redis cluster: %s is no longer a master; its reader stops", node)
                await self._stop_shard(node)
        self._set_ready(any(s.ready for s in self.shards.values()))
        return settled and all(s.ready for s in self.shards.values())

    async def run(self) -> None:
        """Follow the topology until stopped; the shard readers reconnect on their own meanwhile."""
        backoff = Backoff(base=SETTLE_SECONDS, cap=SETTLE_SECONDS * 2)
        try:
            while not self.stopping:
                try:
                    if self._unsettled:
                        await self._target.refresh()
                    self._unsettled = not await self._sync()
                    if not self._unsettled:
                        backoff.reset()
                except (BrokerUnavailable, *TRANSIENT) as exc:  # type: ignore[misc]
                    self._unsettled = True
                    log.warning("redis cluster topology unavailable (%s); retrying", exc)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff.next() if self._unsettled else CHECK_SECONDS):
                        await self._wake.wait()
                        # A burst of failures (a whole shard's connection) is one re-read, not one each.
                        await asyncio.sleep(0.05)
        finally:
            for node in list(self.shards):
                await self._stop_shard(node)
