"""The Redis Streams broker: the fleet's shared store, one stream per channel, live delivery to every pod.

It keeps the semantics of :mod:`fleetcast.broker.base`. Each channel's events live in the stream
:meth:`fleetcast.contract.keys.Keys.stream` (namespaced per Gateway) with the fields ``data``, ``type`` and
``traceparent``. Publishing is one Lua script (:mod:`fleetcast.broker.redis_scripts`): idempotency check, ``XADD``,
retention, notification, all or nothing. Reading applies the gap rule in one script against one snapshot of the stream.
Live delivery is one reader per pod on a dedicated connection (:mod:`fleetcast.broker.redis_live`).

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
from typing import Literal, TypeVar

import redis.exceptions

from fleetcast.broker import redis_scripts
from fleetcast.broker.base import IDEMPOTENCY_SECONDS, Announce, Delivery, History, Lost, Retention, StreamInfo
from fleetcast.broker.redis_common import check_write_access, make_client, make_pool, stop_task, text, unavailable
from fleetcast.broker.redis_live import LiveReader, NotifyReader, XreadReader, parse_entries
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
    ) -> None:
        self._url = url
        self._keys = keys
        self._read_count = read_count
        self._live: LivePath = live
        self._timeout = timeout
        self._pool = make_pool(url, timeout=timeout, max_connections=max_connections)
        self._client = make_client(self._pool)
        self._reader: LiveReader | None = None
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

    async def start(self, deliver: Delivery, lost: Lost | None = None, *, announce: Announce | None = None) -> None:
        reader_class = NotifyReader if self._live == "notify" else XreadReader
        self._reader = reader_class(
            self._pool,
            self._client,
            self._keys,
            deliver,
            lost,
            read_count=self._read_count,
            timeout=self._timeout,
            set_ready=self._set_ready,
        )
        self._reader.announce = announce
        # One bounded probe so that ``ready`` is right when start returns; the reader takes it from there. It
        # writes (a no-op), so a user that may only read, or a read-only replica, is not ready either.
        try:
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
        await self._client.aclose()
        await self._pool.disconnect()

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        """Run one call; Redis being unreachable becomes BrokerUnavailable and flips ``ready``."""
        try:
            with unavailable(what):
                return await call
        except BrokerUnavailable:
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
        ]
        try:
            event_id = await self._call("publish", redis_scripts.PUBLISH.run(self._client, stream_keys, args))
        except redis.exceptions.OutOfMemoryError as exc:
            # maxmemory with noeviction (the chart's choice: evicting streams would lose history silently). Writes
            # are refused until retention frees memory; reads go on, so the pod stays ready.
            raise BrokerUnavailable(f"publish: Redis is full ({exc}); nothing was written") from exc
        return text(event_id)

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
