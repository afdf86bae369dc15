"""The Redis Streams broker: the fleet's shared store, one stream per channel, live delivery to every pod.

It keeps the semantics of :mod:`fleetcast.broker.base`. Each channel's events live in the stream
:meth:`fleetcast.contract.keys.Keys.stream` (namespaced per Gateway) with the fields ``data``, ``type`` and
``traceparent``. Publishing is one Lua script (:mod:`fleetcast.broker.redis_scripts`): idempotency check, ``XADD``,
retention, notification, all or nothing. Reading applies the gap rule in one script against one snapshot of the stream.
Live delivery is one reader per pod on a dedicated connection (:mod:`fleetcast.broker.redis_live`), or on a
Redis Cluster one per master with sharded pub/sub (:mod:`fleetcast.broker.redis_shards`).

Replication: with ``wait_replicas`` N > 0 every publish is followed, on the same connection, by ``WAIT N``, and
only an event that N replicas confirmed is acknowledged; otherwise the caller gets BrokerUnavailable (the event may
have been appended: a retry with the same idempotency key returns its id). Without it an event a master
acknowledged and lost before its replica copied it is gone after a failover (``docs/decisions.md``).

Faults: every command has a connect and socket timeout and no hidden retries, so calls while Redis is down
raise :class:`fleetcast.errors.BrokerUnavailable` within about ``timeout`` seconds. :meth:`start` returns
whether or not Redis answers; the live reader keeps reconnecting with capped, jittered backoff and ``ready``
follows it. Requires Redis >= 7.0 (``XINFO STREAM``'s ``max-deleted-entry-id``, ``XSETID ... MAXDELETEDID``).

It deliberately does not coalesce reads of many clients: wrap it in
:class:`fleetcast.broker.coalescing.CoalescingBroker` for that, as any broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, Literal, TypeVar

import redis.exceptions

from fleetcast.broker import redis_scripts
from fleetcast.broker.base import IDEMPOTENCY_SECONDS, Delivery, History, Lost, Retention, StreamInfo
from fleetcast.broker.redis_common import check_write_access, stop_task, text, unavailable
from fleetcast.broker.redis_connect import Cluster, Mode, connect
from fleetcast.broker.redis_live import LiveReader, NotifyReader, XreadReader, parse_entries
from fleetcast.broker.redis_shards import ShardedReader
from fleetcast.contract.keys import DEFAULT as DEFAULT_KEYS
from fleetcast.contract.keys import Keys
from fleetcast.core import ids
from fleetcast.errors import BrokerUnavailable

log = logging.getLogger(__name__)

LivePath = Literal["notify", "xread"]
T = TypeVar("T")


class RedisStreamsBroker:
    """A :class:`fleetcast.broker.base.Broker` on Redis Streams.

    ``read_count`` bounds one live batch per channel (XREAD COUNT, or notifications per flush).
    ``live`` picks the delivery path; every pod of a fleet can run either (the publish script always
    notifies), but ``notify`` is the measured choice. ``timeout`` bounds every connect, command and wait for
    a pooled connection. ``max_connections`` bounds the pool (the live reader has its own connection).
    ``keys`` names the Gateway's keys; pods of different Gateways on one Redis see none of each other's events.
    ``mode`` is ``standalone`` or ``cluster`` (``url`` then lists seed nodes; the live path is always notify).
    ``wait_replicas`` > 0 acknowledges a publish only once that many replicas hold it (``WAIT``).
    """

    def __init__(
        self,
        url: str,
        *,
        read_count: int = 100,
        live: LivePath = "notify",
        timeout: float = 2.0,
        max_connections: int = 32,
        keys: Keys = DEFAULT_KEYS,
        mode: Mode = "standalone",
        wait_replicas: int = 0,
    ) -> None:
        if mode == "cluster" and live != "notify":
            raise ValueError("on a Redis Cluster the live path is notify (sharded pub/sub); XREAD cannot span slots")
        if wait_replicas < 0:
            raise ValueError("wait_replicas must be 0 or more")
        self._url = url
        self._keys = keys
        self._read_count = read_count
        self._live: LivePath = live
        self._timeout = timeout
        self._wait_replicas = wait_replicas
        self._target = connect(url, mode=mode, timeout=timeout, max_connections=max_connections)
        self._client = self._target.client
        self._notify_command = "SPUBLISH" if self._target.cluster else "PUBLISH"
        self._reader: LiveReader | ShardedReader | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def channels_held(self) -> None:
        return None  # streams live in Redis; each leaves by its own idle TTL

    def _set_ready(self, ready: bool) -> None:
        if ready != self._ready:
            log.info("redis broker %s", "ready" if ready else "unavailable")
        self._ready = ready

    def ready_for(self, channel: str) -> bool:
        if isinstance(self._reader, ShardedReader):
            return self._reader.ready_for(channel)
        return self._ready

    @property
    def shards(self) -> dict[str, bool] | None:
        """Cluster: each master's reachability by ``host:port``; None on one server."""
        return self._reader.shard_states() if isinstance(self._reader, ShardedReader) else None

    async def start(self, deliver: Delivery, lost: Lost | None = None) -> None:
        options: dict[str, Any] = {
            "read_count": self._read_count,
            "timeout": self._timeout,
            "set_ready": self._set_ready,
        }
        if isinstance(self._target, Cluster):
            self._reader = ShardedReader(self._target, self._keys, deliver, lost, **options)
        else:
            reader_class = NotifyReader if self._live == "notify" else XreadReader
            connection = self._target.connection_for
            self._reader = reader_class(lambda: connection(""), self._client, self._keys, deliver, lost, **options)
        # One bounded probe so that ``ready`` is right when start returns; the reader takes it from there. It
        # writes (a no-op), so a user that may only read, or a read-only replica, is not ready either.
        try:
            await self._target.refresh()
            await check_write_access(self._client, self._keys.probe)
            self._set_ready(True)
        except BrokerUnavailable as exc:
            log.warning("redis broker not ready at start: %s", exc)
        self._reader_task = asyncio.create_task(self._reader.run(), name="fleetcast-redis-live-reader")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.stopping = True
        if self._reader_task is not None:
            await stop_task(self._reader_task, timeout=self._timeout + 2)
            self._reader_task = None
        self._reader = None
        self._set_ready(False)
        await self._target.close()

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        """Run one call; Redis being unreachable becomes BrokerUnavailable and flips ``ready``."""
        try:
            async with self._target.slot():
                with unavailable(what):
                    return await call
        except BrokerUnavailable:
            if not self._target.cluster:  # a cluster's readiness is per shard: its readers keep it
                self._set_ready(False)
            raise

    async def publish(
        self,
        channel: str,
        data: bytes,
        type: str,
        *,
        retention: Retention,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
    ) -> str:
        stream_keys = [self._keys.stream(channel)]
        if idempotency_key is not None:
            stream_keys.append(self._keys.idempotency(channel, idempotency_key))
        args: list[str | bytes | int] = [
            data,
            type,
            traceparent or "",
            "" if retention.max_events is None else retention.max_events,
            "" if retention.max_age_seconds is None else int(retention.max_age_seconds * 1000),
            int(IDEMPOTENCY_SECONDS * 1000),
            self._keys.notify(channel),
            "" if retention.idle_seconds is None else max(1, int(retention.idle_seconds * 1000)),
            self._notify_command,
        ]
        try:
            if self._wait_replicas:
                event_id, acked = await self._call("publish", self._publish_and_wait(stream_keys, args))
            else:
                event_id = await self._call("publish", redis_scripts.PUBLISH.run(self._client, stream_keys, args))
        except redis.exceptions.OutOfMemoryError as exc:
            # maxmemory with noeviction (the chart's choice: evicting streams would lose history silently). Writes
            # are refused until retention frees memory; reads go on, so the pod stays ready.
            raise BrokerUnavailable(f"publish: Redis is full ({exc}); nothing was written") from exc
        if self._wait_replicas and acked < self._wait_replicas:
            raise BrokerUnavailable(
                f"publish: event {text(event_id)} was appended but {acked} of {self._wait_replicas} replicas "
                "confirmed it in time, so it is not acknowledged; retry with the same Idempotency-Key"
            )
        return text(event_id)

    async def _publish_and_wait(self, keys: list[str], args: list[str | bytes | int]) -> tuple[bytes, int]:
        """The publish script, then ``WAIT`` on the same connection (WAIT counts the replicas that have this
        connection's writes). On a cluster both go to the node serving the stream; a redirect (the slot moved)
        re-reads the topology and tries again, so the WAIT never measures another node's connection."""
        wait_ms = max(1, int(self._timeout * 500))  # well inside the socket timeout
        script = redis_scripts.PUBLISH
        head = ("EVALSHA", script.sha)
        for _ in range(3):
            pipe: Any = self._client.pipeline(transaction=False)
            pipe.execute_command(*head, len(keys), *keys, *args)
            if isinstance(self._target, Cluster):
                pipe.execute_command("WAIT", self._wait_replicas, wait_ms, target_nodes=self._target.node(keys[0]))
                results = await pipe.execute(raise_on_error=False, allow_redirections=False)
            else:
                pipe.execute_command("WAIT", self._wait_replicas, wait_ms)
                results = await pipe.execute(raise_on_error=False)
            first, acked = results
            if isinstance(first, redis.exceptions.AskError):  # MOVED too: the slot is elsewhere now
                await self._target.refresh()
                continue
            if isinstance(first, redis.exceptions.NoScriptError):  # a restarted or new master: send the text
                head = ("EVAL", script.text)
                continue
            if isinstance(first, BaseException):
                raise first
            if isinstance(acked, BaseException):
                raise acked
            return first, int(acked)
        raise BrokerUnavailable("publish: the channel's slot kept moving; nothing was acknowledged")

    async def read(self, channel: str, since: str, limit: int) -> History:
        since_id = ids.format_id(ids.parse(since))
        reply = await self._call(
            "read", redis_scripts.READ.run(self._client, [self._keys.stream(channel)], [since_id, max(limit, 0)])
        )
        gap, earliest, latest, entries = reply
        return History(
            events=parse_entries(entries),
            gap=bool(gap),
            earliest=text(earliest) or None,
            latest=text(latest) or None,
        )

    async def info(self, channel: str) -> StreamInfo:
        meta = await self._call("info", redis_scripts.META.run(self._client, [self._keys.stream(channel)], []))
        _, length, first, _, _, last = meta
        if not length:
            return StreamInfo(length=0, earliest=None, latest=None)
        return StreamInfo(length=int(length), earliest=text(first), latest=text(last))

    async def watch(self, channel: str) -> None:
        """Deliver the channel's events appended after this returns. Raises BrokerUnavailable (and watches
        nothing) while Redis is down."""
        if self._reader is None:
            raise RuntimeError("watch before start")
        await self._call("watch", self._reader.watch(channel))

    async def unwatch(self, channel: str) -> None:
        if self._reader is not None:
            await self._reader.unwatch(channel)
