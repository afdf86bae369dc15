"""The live reader of the Redis broker: one per pod, one dedicated connection, two interchangeable strategies.

``NotifyReader`` (the default, see ``docs/decisions.md``, "Live delivery path") subscribes to each watched
channel's notification channel; the publish script PUBLISHes the whole event next to the XADD, in the same
atomic step, so pub/sub order is stream order. The stream stays the system of record: after every (re)connect
the reader re-subscribes, then catches each channel up from its last delivered id with XRANGE while it buffers
the notifications that arrive meanwhile, so a lost connection costs no event and delivers none twice.

``XreadReader`` issues one ``XREAD BLOCK`` over the streams of every watched channel. A watch while it blocks
wakes it with ``CLIENT UNBLOCK`` from a pooled connection; correctness does not depend on the wake-up, since
each channel's cursor is fixed when ``watch`` returns.

Both hand each channel's events to the delivery callback in id order, once. Each channel's cursor holds a
:class:`~fleetcast.core.feed.Feed`, the same sans-I/O state machine a client subscription resumes with: while a
channel catches up its live events are buffered, then the ones the read did not cover are released, and live
events at or below the last one read are dropped.

Lost history. After every reconnect both catch each channel up with the broker's read script, which applies the
gap rule of :mod:`fleetcast.broker.base` to the cursor atomically: when events after it are gone (trimmed before
delivery, or lost by a Redis restart without persistence) the reader calls ``lost`` first, moves the cursor to
the start of what the stream holds now, and delivers from there. So a caught-up live subscriber hears of the
loss before the events that follow it, and never misses them silently.

Presence announcements (:mod:`fleetcast.broker.redis_presence`) share the notification channel: the notify reader
hands each to ``announce`` after the events that preceded it, so joins and leaves keep the channel's order. They
are not in the stream: one that arrives while the channel catches up after a reconnect is handed over at once,
and the XREAD strategy does not hear them at all (presence needs the notify path, the default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio.connection import Connection

from fleetcast.broker import redis_scripts
from fleetcast.broker.base import Announce, Delivery, Event, Lost
from fleetcast.broker.redis_common import (
    TRANSIENT,
    Backoff,
    Client,
    check_write_access,
    execute,
    text,
    unavailable,
)
from fleetcast.broker.redis_presence import MARK
from fleetcast.contract.keys import Keys
from fleetcast.core import ids
from fleetcast.core.feed import LIVE, REPLAYING, Feed
from fleetcast.core.ids import EventId
from fleetcast.errors import BrokerUnavailable

log = logging.getLogger(__name__)

IDLE_PING_SECONDS = 1.0
"""How often an idle reader proves its connection alive (and how soon ``ready`` recovers after an outage)."""
SYNC_BUFFER = 10_000
"""Notifications buffered per channel while it catches up; past this the reader rereads them from the stream."""


class Cursor:
    """One watched channel: its stream key and its :class:`~fleetcast.core.feed.Feed`, which knows where
    delivery stands (``feed.last``: the last event delivered, or the stream's last id at watch time; None until
    known) and buffers what arrives while the channel catches up (``REPLAYING``)."""

    __slots__ = ("channel", "feed", "key")

    def __init__(self, channel: str, key: str, last: EventId | None) -> None:
        self.channel = channel
        self.key = key
        self.feed: Feed[Event] = Feed(
            buffer_limit=SYNC_BUFFER,
            last=None if last is None else ids.format_id(last),
            state=REPLAYING if last is None else LIVE,
        )


def parse_entries(entries: Sequence[Any]) -> list[Event]:
    """Stream entries ``[id, [field, value, ...]]`` as events (or ``(id, {field: value})``, the shape redis-py's
    response callback gives XRANGE when it is sent as a plain command)."""
    events = []
    for entry_id, flat in entries:
        fields = flat if isinstance(flat, dict) else dict(zip(flat[::2], flat[1::2], strict=True))
        traceparent = fields.get(b"traceparent")
        events.append(
            Event(
                id=text(entry_id),
                type=text(fields.get(b"type", b"message")),
                data=fields.get(b"data", b"null"),
                traceparent=text(traceparent) if traceparent else None,
            )
        )
    return events


def parse_notification(payload: bytes) -> Event:
    """The publish script's notification: ``id \\n traceparent \\n len(type) \\n type data``."""
    event_id, traceparent, type_length, rest = payload.split(b"\n", 3)
    n = int(type_length)
    return Event(id=event_id.decode(), type=rest[:n].decode(), data=rest[n:], traceparent=traceparent.decode() or None)


async def last_id(client: Client, key: str) -> EventId:
    """The last generated id of the stream ``key`` (``0-0`` if it has none): a new watch starts after it."""
    with unavailable("watch"):
        meta = await redis_scripts.META.run(client, [key], [])
    last = text(meta[3])
    return ids.parse(last) if last else ids.ZERO


class LiveReader:
    """What both strategies share: cursors, ordered exactly-once emission, the reconnect loop."""

    def __init__(
        self,
        new_connection: Callable[[], Connection],
        client: Client,
        keys: Keys,
        deliver: Delivery,
        lost: Lost | None,
        *,
        read_count: int,
        timeout: float,
        set_ready: Callable[[bool], None],
    ) -> None:
        self._new_connection = new_connection
        """A new, unconnected connection to the node this reader reads from (not lent by any pool)."""
        self._client = client
        self.keys = keys
        self._deliver = deliver
        self._lost = lost
        self._read_count = read_count
        self._timeout = timeout
        self._set_ready = set_ready
        self.cursors: dict[str, Cursor] = {}
        self.announce: Announce | None = None
        """Where presence announcements go (the notify strategy only)."""
        self.stopping = False
        """Set by the owner before it cancels :meth:`run`; every loop checks it (see ``stop_task``)."""

    def emit(self, cursor: Cursor, events: Sequence[Event]) -> None:
        """Hand live events to the feed: buffered while it catches up, else the ones it has not delivered yet
        are delivered (and the cursor advances). Stale cursors (unwatched: the feed is closed) deliver nothing."""
        if not events:
            return
        start = cursor.feed.live(events)
        if start < 0:
            return
        try:
            self._deliver(cursor.channel, events[start:] if start else events)
        except Exception:
            log.exception("delivery callback failed for %s; the reader goes on", cursor.channel)

    async def catch_up(self, cursor: Cursor) -> None:
        """Deliver what the stream holds after the cursor, page by page, with the gap rule applied to the cursor:
        if events after it are gone, signal ``lost`` before delivering the rest (from the oldest retained event).
        Then the feed goes live, releasing what arrived meanwhile and was not read (no await after the read).

        The feed must be replaying (see ``resync``). Stops early if the channel is unwatched meanwhile. Raises
        what Redis raises (the caller reconnects).
        """
        feed = cursor.feed
        while self.cursors.get(cursor.channel) is cursor and feed.last is not None:
            since = feed.read_from()
            gap, earliest, _, entries = await redis_scripts.READ.run(
                self._client, [cursor.key], [since, self._read_count]
            )
            if self.cursors.get(cursor.channel) is not cursor:
                return
            if gap:
                self.report_lost(cursor, since, text(earliest) or None)
            events = parse_entries(entries)
            if events:
                self._deliver_safely(cursor.channel, events)
            if not feed.history(events, full=len(entries) >= self._read_count):
                break
        if feed.state is REPLAYING and feed.last is not None:
            self.emit(cursor, feed.go_live())

    def _deliver_safely(self, channel: str, events: Sequence[Event]) -> None:
        try:
            self._deliver(channel, events)
        except Exception:
            log.exception("delivery callback failed for %s; the reader goes on", channel)

    def report_lost(self, cursor: Cursor, requested: str, earliest: str | None) -> None:
        """Events after ``requested`` are gone: tell the callback, then restart the cursor at the stream's start
        (a stream recreated after a restart may number its events below the old cursor)."""
        cursor.feed.rewind()
        log.warning("history of %s after %s is lost (earliest now %s)", cursor.channel, requested, earliest)
        if self._lost is None:
            return
        try:
            self._lost(cursor.channel, requested, earliest)
        except Exception:
            log.exception("lost-history callback failed for %s; the reader goes on", cursor.channel)

    async def run(self) -> None:
        """Read until cancelled; after any connection failure wait (capped, jittered) and reconnect."""
        backoff = Backoff()
        while not self.stopping:
            conn: Connection | None = None
            try:
                conn = self._new_connection()
                await conn.connect()  # type: ignore[no-untyped-call]
                await self.probe()
                await self.session(conn, backoff)
            except TRANSIENT as exc:
                log.warning("live reader lost Redis (%s: %s); reconnecting", type(exc).__name__, exc)
            except BrokerUnavailable as exc:
                log.error("live reader: %s; retrying", exc)
            except Exception:
                log.exception("live reader failed; reconnecting")
            finally:
                self._set_ready(False)
                await self.teardown()
                if conn is not None:
                    await conn.disconnect(nowait=True)
            await asyncio.sleep(backoff.next())

    async def probe(self) -> None:
        """Before each session: ready means able to publish too, so a user Redis refuses writes stays unready."""
        await check_write_access(self._client, self.keys.probe)

    async def session(self, conn: Connection, backoff: Backoff) -> None:
        raise NotImplementedError

    async def teardown(self) -> None:
        """Called when a session ends, before the next connection."""

    async def watch(self, channel: str) -> None:
        raise NotImplementedError

    async def unwatch(self, channel: str) -> None:
        cursor = self.cursors.pop(channel, None)
        if cursor is not None:
            cursor.feed.close()


class XreadReader(LiveReader):
    """Strategy (a): one blocking XREAD over every watched stream."""

    BLOCK_MS = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client_id: int | None = None
        self._blocked = False
        self._woken = False
        self._changed = asyncio.Event()

    async def session(self, conn: Connection, backoff: Backoff) -> None:
        await conn.send_command("CLIENT", "ID")
        self._client_id = int(await conn.read_response())
        # Catch up each channel from its cursor before blocking: XREAD alone would skip lost history silently.
        for cursor in [c for c in self.cursors.values() if c.feed.last is not None]:
            if self.cursors.get(cursor.channel) is cursor:  # not unwatched while an earlier one caught up
                cursor.feed.resync()
                await self.catch_up(cursor)
        self._set_ready(True)
        backoff.reset()
        while not self.stopping:
            cursors = [c for c in self.cursors.values() if c.feed.last is not None]
            if not cursors:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(IDLE_PING_SECONDS):
                        await self._changed.wait()
                await conn.send_command("PING")
                await conn.read_response()
                self._set_ready(True)
                continue
            by_key = {c.key.encode(): c for c in cursors}
            args: list[str | int] = ["XREAD", "COUNT", self._read_count, "BLOCK", self.BLOCK_MS, "STREAMS"]
            args += [c.key for c in cursors]
            args += [c.feed.last for c in cursors if c.feed.last is not None]
            self._blocked, self._woken = True, False
            try:
                await conn.send_command(*args)
                async with asyncio.timeout(self.BLOCK_MS / 1000 + self._timeout):
                    reply = await conn.read_response(timeout=math.inf)
            finally:
                self._blocked = False
            self._set_ready(True)
            for key, entries in reply or ():
                self.emit(by_key[key], parse_entries(entries))

    async def teardown(self) -> None:
        self._client_id = None

    async def watch(self, channel: str) -> None:
        if channel in self.cursors:
            return
        key = self.keys.stream(channel)
        self.cursors[channel] = Cursor(channel, key, await last_id(self._client, key))
        self._changed.set()
        if self._blocked and not self._woken and self._client_id is not None:
            self._woken = True
            with contextlib.suppress(*TRANSIENT):
                await execute(self._client, "CLIENT", "UNBLOCK", self._client_id)


class NotifyReader(LiveReader):
    """Strategy (b): SUBSCRIBE to notifications carrying whole events; the stream for catch-up.

    The class attributes name the pub/sub flavour: classic (``SUBSCRIBE``) here, sharded (``SSUBSCRIBE``) in
    :class:`fleetcast.broker.redis_shards.ShardReader`.
    """

    SUBSCRIBE = "SUBSCRIBE"
    UNSUBSCRIBE = "UNSUBSCRIBE"
    MESSAGE = b"message"
    CONFIRM = b"subscribe"
    REVOKE = b"unsubscribe"
    SUBSCRIBE_BATCH = 500
    """Channels per subscribe command when a session subscribes everything again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._conn: Connection | None = None
        self._confirmations: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._by_key: dict[bytes, Cursor] = {}
        self._pending: dict[Cursor, list[Event]] = {}
        self._flush_scheduled = False
        self._catch_up: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def session(self, conn: Connection, backoff: Backoff) -> None:
        self._conn = conn
        self._connected.set()
        cursors = [c for c in self.cursors.values() if c.feed.last is not None]
        waiting = []
        for cursor in cursors:
            cursor.feed.resync()
            waiting.append(self._expect_confirmation(self.keys.notify(cursor.channel).encode()))
        batch = self.SUBSCRIBE_BATCH
        for start in range(0, len(cursors), batch):
            await conn.send_command(
                self.SUBSCRIBE, *(self.keys.notify(c.channel) for c in cursors[start : start + batch])
            )
        if not cursors:
            await conn.send_command("PING")
        self._catch_up = asyncio.create_task(self._resync(cursors, waiting, backoff))
        idle = 0.0
        while not self.stopping:
            message = await conn.read_response(timeout=IDLE_PING_SECONDS)
            if message is None:
                idle += IDLE_PING_SECONDS
                if idle > IDLE_PING_SECONDS + self._timeout:
                    raise TimeoutError("no answer to PING on the live connection")
                await conn.send_command("PING")
                continue
            idle = 0.0
            self._handle(message)

    async def _resync(self, cursors: list[Cursor], waiting: list[asyncio.Future[None]], backoff: Backoff) -> None:
        """Wait for the subscriptions, then bring every channel up to date from its stream."""
        try:
            if waiting:
                async with asyncio.timeout(self._timeout * 2):
                    await asyncio.gather(*waiting)
            self._set_ready(True)
            for cursor in cursors:
                # Ends live: whatever arrives later finds the cursor up to date.
                await self.catch_up(cursor)
            backoff.reset()
        except Exception as exc:
            # The session notices the closed connection and reconnects; catching up starts over then.
            log.warning("live reader could not catch up (%s: %s); reconnecting", type(exc).__name__, exc)
            if self._conn is not None:
                await self._conn.disconnect(nowait=True)

    def _expect_confirmation(self, key: bytes) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirmations.setdefault(key, deque()).append(future)
        return future

    def _handle(self, message: Any) -> None:
        if not isinstance(message, list):
            return  # PONG outside subscribed mode
        kind = message[0]
        if kind == self.MESSAGE:
            cursor = self._by_key.get(message[1])
            if cursor is None:
                return
            if message[2].startswith(MARK):
                self._announce(cursor, message[2])
                return
            event = parse_notification(message[2])
            if cursor.feed.state is REPLAYING:
                cursor.feed.live((event,))  # buffered (or, past SYNC_BUFFER, reread from the stream)
                return
            batch = self._pending.setdefault(cursor, [])
            batch.append(event)
            if len(batch) >= self._read_count:
                self.emit(cursor, self._pending.pop(cursor))
            elif not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)
        elif kind == self.CONFIRM:
            waiting = self._confirmations.get(message[1])
            if waiting:
                future = waiting.popleft()
                if not waiting:
                    del self._confirmations[message[1]]
                if not future.done():
                    future.set_result(None)
        elif kind == self.REVOKE and message[1] in self._by_key:
            self.revoked(self._by_key[message[1]])

    def revoked(self, cursor: Cursor) -> None:
        """The server ended a subscription the reader still wants (a cluster slot moved away). Classic pub/sub
        never does."""

    def _announce(self, cursor: Cursor, payload: bytes) -> None:
        """A presence join or leave: first the events that came before it, then the announcement."""
        if self.announce is None or self.cursors.get(cursor.channel) is not cursor:
            return
        pending = self._pending.pop(cursor, None)
        if pending:
            self.emit(cursor, pending)
        kind, _, record = payload[len(MARK) :].partition(b"\n")
        try:
            self.announce(cursor.channel, kind.decode(), record)
        except Exception:
            log.exception("presence callback failed for %s; the reader goes on", cursor.channel)

    def _flush(self) -> None:
        """End of one event-loop turn: hand over everything one socket read brought, as one batch per channel."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        for cursor, events in pending.items():
            self.emit(cursor, events)

    async def teardown(self) -> None:
        self._flush()
        self._conn = None
        self._connected.clear()
        if self._catch_up is not None:
            self._catch_up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._catch_up
            self._catch_up = None
        for waiting in self._confirmations.values():
            for future in waiting:
                if not future.done():
                    future.set_exception(ConnectionError("live connection lost"))
        self._confirmations.clear()

    async def watch(self, channel: str) -> None:
        if channel in self.cursors:
            return
        if self._conn is None:
            # Just started or reconnecting: give the reader one timeout to get its connection.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._timeout):
                    await self._connected.wait()
        conn = self._conn
        if conn is None or channel in self.cursors:
            if conn is None:
                raise BrokerUnavailable("watch: Redis is unavailable (the live connection is down)")
            return
        cursor = Cursor(channel, self.keys.stream(channel), None)
        key = self.keys.notify(channel)
        self.cursors[channel] = cursor
        self._by_key[key.encode()] = cursor
        try:
            confirmed = self._expect_confirmation(key.encode())
            with unavailable("watch"):
                await conn.send_command(self.SUBSCRIBE, key)
                async with asyncio.timeout(self._timeout):
                    await confirmed
            # Subscribed: every event appended from now on arrives as a notification. The stream's last id
            # now marks where this watch starts; notifications up to it are covered by the caller's read.
            last = await last_id(self._client, cursor.key)
        except BaseException:
            if self.cursors.get(channel) is cursor:
                await self.unwatch(channel)
            raise
        if cursor.feed.state is REPLAYING:  # else unwatched meanwhile
            self.emit(cursor, cursor.feed.go_live(ids.format_id(last)))

    async def unwatch(self, channel: str) -> None:
        cursor = self.cursors.pop(channel, None)
        if cursor is None:
            return
        cursor.feed.close()
        key = self.keys.notify(channel)
        self._by_key.pop(key.encode(), None)
        self._pending.pop(cursor, None)
        if self._conn is not None:
            with contextlib.suppress(*TRANSIENT):
                await self._conn.send_command(self.UNSUBSCRIBE, key)
