"""The session core: one client connection's subscriptions, whatever its transport.

Resume without gaps or duplicates (docs/protocol.md) is decided by each subscription's
:class:`~fleetcast.core.feed.Feed` (sans-I/O, in ``core/``) and driven from here:

1. register the subscription with the hub first, so live batches start arriving; the feed buffers them;
2. read the stream after ``since`` page by page and write each page to the client; if the read reports a gap,
   say so first, then continue from the oldest retained event;
3. the feed releases the buffered live events whose id is greater than the last replayed one, and goes live.

The live buffer is bounded; when it overflows during a long replay it is emptied and the replay reads once more
from the stream, which still holds what the buffer dropped (or reports the gap if it does not).

The session writes pre-encoded bytes to its :class:`~fleetcast.session.wire.Wire` and judges a slow consumer by
the bytes the wire holds. It never creates a task: the transport's own request task drives it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.trace import Tracer

from fleetcast.auth.principal import ANONYMOUS, Principal
from fleetcast.broker.base import Broker, Event
from fleetcast.contract.policy import ChannelPolicy
from fleetcast.contract.presence import Entry
from fleetcast.core import disconnects, ids
from fleetcast.core.backoff import server_delay_ms
from fleetcast.core.disconnects import Disconnect
from fleetcast.core.feed import CLOSED, IGNORE, LIVE, PARK, PARKED, REPLAYING, Feed, Gap, park_offset
from fleetcast.core.messages import Ref
from fleetcast.errors import BadRequest, ChannelFull, FleetcastError, Forbidden, InvalidEventId, RateLimited
from fleetcast.hub.batch import Batch
from fleetcast.hub.hub import Hub
from fleetcast.hub.notice import Notice
from fleetcast.observability import tracing
from fleetcast.session.access import Access
from fleetcast.session.backlog import Backlog
from fleetcast.session.counters import SessionCounters
from fleetcast.session.limits import Limits as Limits  # re-exported: tests and tools import it from here
from fleetcast.session.presence import Presence, presence_readable
from fleetcast.session.publisher import Publisher
from fleetcast.session.ratelimit import TokenBucket
from fleetcast.session.wire import Codec, Wire

log = logging.getLogger(__name__)


class Subscription:
    """One channel of one session: the driver of its :class:`~fleetcast.core.feed.Feed`. The hub calls
    :meth:`deliver` and :meth:`lost`; the feed decides, this class writes, parks or tells."""

    __slots__ = ("backlog", "channel", "entry", "feed", "policy", "session")

    def __init__(self, session: Session, channel: str, policy: ChannelPolicy, since: str | None) -> None:
        self.session = session
        self.channel = channel
        self.policy = policy
        self.feed: Feed[Event] = Feed(
            buffer_limit=session.limits.replay_pending_max, last=since, parks=policy.slow_consumer != "disconnect"
        )
        self.backlog: Backlog | None = None
        """Events parked while the client is slow (``dropOldest`` and ``conflate`` only)."""
        self.entry: Entry | None = None
        """This subscription's presence entry (channels whose policy has presence)."""

    def deliver(self, batch: Batch) -> None:
        """The per-subscriber live path: one feed decision, then one write of the batch's shared bytes."""
        feed = self.feed
        start = feed.live(batch.events, not feed.parks or self.session.wire.writable)
        if start:
            if start == IGNORE:
                return
            if start <= PARK:
                start = park_offset(start)
                self.session.park(self, batch.events[start:] if start else batch.events)
                return
            batch = Batch(batch.channel, batch.events[start:])
        session = self.session
        unsent = session.wire.write(session.encode(batch))
        if unsent > session.limits.outbox_max_bytes:
            session.slow_consumer(batch.channel, unsent)

    def presence(self, notice: Notice) -> None:
        """A join or leave: written once live (replays carry no presence), where the policy asks for them."""
        if self.feed.state in (LIVE, PARKED) and self.policy.presence_join_leave:
            self.session.send(self.session.codec.presence(notice))

    def lost(self, requested: str, earliest: str | None) -> None:
        gap = self.feed.lost()
        if gap is Gap.NOW:
            self.session.send(self.session.codec.gap(self.channel, requested, earliest))
        elif gap is Gap.AFTER_BACKLOG and self.backlog is not None:
            # Parked events from before the hole must reach the client before the gap does.
            self.backlog.note_lost(requested, earliest)


class Session:
    """One client connection: its principal, its subscriptions, and every rule its requests meet.

    Transports are thin: they parse a request and call :meth:`subscribe`, :meth:`unsubscribe`,
    :meth:`publish` or :meth:`authenticate`, which check permissions (:class:`~fleetcast.session.access.Access`),
    rates and limits here, and raise a :class:`~fleetcast.errors.FleetcastError` the transport answers with.
    """

    def __init__(
        self,
        *,
        hub: Hub,
        broker: Broker,
        access: Access,
        publisher: Publisher,
        wire: Wire,
        codec: Codec,
        limits: Limits,
        counters: SessionCounters | None = None,
        principal: Principal = ANONYMOUS,
        presence: Presence | None = None,
        client_id: str | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.hub = hub
        self.broker = broker
        self.access = access
        self.publisher = publisher
        self.wire = wire
        self.codec = codec
        self.limits = limits
        self.counters = counters if counters is not None else SessionCounters()
        self.encode = codec.events
        self.subscriptions: dict[str, Subscription] = {}
        self.principal = principal
        self.presence = presence
        self.client_id = client_id
        """The client id the connection sent (``?client=``): its presence identity, with its ``sub``."""
        self.presence_conn: str | None = None
        self.presence_client: str | None = None
        """Set by :class:`Presence` on this connection's first presence entry."""
        self.tracer = tracer
        """Where slow-consumer events are recorded (None: tracing off)."""
        self._expiry: asyncio.TimerHandle | None = None
        self._buckets: dict[str, TokenBucket] | None = None
        """Per-connection request rates, made on first use (most sessions only ever subscribe once)."""
        self.strikes = 0
        """Requests refused in a row for exceeding a rate; past ``limits.abuse_strikes`` the client is cut off."""
        self._backlogged: set[Subscription] = set()
        wire.set_on_writable(self.flush_backlogs)
        self._watch_expiry()

    def authenticate(self, principal: Principal) -> None:
        """Take a (new) verified token: the first ``auth`` of a connection, or a refresh before expiry.

        A refresh must be for the same user; subscriptions the new token no longer grants are ended (the
        client is told with an ``unsubscribed`` carrying the reason)."""
        if not self.principal.anonymous and principal.sub != self.principal.sub:
            raise Forbidden("a refreshed token must be for the same user ('sub') as the one it replaces")
        reidentify = principal.sub != self.principal.sub or principal.info != self.principal.info
        self.principal = principal
        if reidentify and self.presence is not None and self.presence_conn is not None:
            self.presence.reidentify(self)
        self._watch_expiry()
        for channel, subscription in list(self.subscriptions.items()):
            try:
                self.access.subscribe(principal, channel, self.wire.kind)
            except FleetcastError as refusal:
                self._drop(subscription)
                self.send(self.codec.unsubscribed(channel, refusal.code))

    def _watch_expiry(self) -> None:
        """End the session when its token expires (close 4001 ``token expired``; SSE: the stream ends)."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        expires_at = self.principal.expires_at
        if expires_at is not None:
            delay = max(0.0, expires_at + self.access.expiry_leeway - time.time())
            self._expiry = asyncio.get_running_loop().call_later(delay, self.close, disconnects.TOKEN_EXPIRED)

    def _take(self, kind: str, rate: float, burst: float, what: str) -> None:
        """Take one request of ``kind`` from its bucket; :class:`RateLimited` (and a strike) if it is empty."""
        if self._buckets is None:
            self._buckets = {}
        bucket = self._buckets.get(kind)
        if bucket is None:
            bucket = self._buckets[kind] = TokenBucket(rate, burst)
        wait = bucket.take()
        if wait <= 0:
            self.strikes = 0
            return
        self.strikes += 1
        if self.strikes > self.limits.abuse_strikes:
            self.close(disconnects.RATE_LIMITED)
        raise RateLimited(
            f"this connection may make {rate:g} {what} per second; retry in {wait:.2f} s", retry_after=wait
        )

    def read_presence(self, channel: str) -> ChannelPolicy:
        """May this connection read the channel's presence now: its rate, its rights, the channel's policy."""
        limits = self.limits
        self._take("presence", limits.presence_reads_per_second, limits.presence_reads_burst, "presence reads")
        return presence_readable(self.access, self.principal, channel)

    async def publish(self, channel: str, data: Any, type: str, ref: Ref = None) -> str:
        """A client's publish over this connection: permission, this connection's rate, then the channel's
        rules (rate, type, size) in the :class:`Publisher`; returns the event id."""
        policy = self.access.publish(self.principal, channel, "ws")
        limits = self.limits
        self._take("publish", limits.publish_per_second, limits.publish_burst, "publishes")
        return await self.publisher.publish(channel, data, type, policy=policy)

    async def subscribe(self, channel: str, since: str | None, ref: Ref = None) -> None:
        """Subscribe (if granted) and, with ``since``, replay what the client missed. Raises
        :class:`FleetcastError` for requests the client must fix and
        :class:`~fleetcast.errors.BrokerUnavailable` when history is out of reach (the subscription is then
        removed)."""
        limits = self.limits
        self._take("subscribe", limits.subscribe_per_second, limits.subscribe_burst, "subscribe requests")
        policy = self.access.subscribe(self.principal, channel, self.wire.kind)
        await self.join(channel, policy, since, ref)

    async def join(self, channel: str, policy: ChannelPolicy, since: str | None, ref: Ref = None) -> None:
        """Subscribe to a channel whose access check returned ``policy`` (an SSE stream checks before it
        answers 200, then joins)."""
        if since is not None:
            try:
                ids.parse(since)
            except ValueError as exc:
                raise InvalidEventId(str(exc)) from None
        if channel in self.subscriptions:
            raise BadRequest(f"already subscribed to {channel!r}")
        if len(self.subscriptions) >= self.limits.max_channels:
            raise BadRequest(f"a connection may subscribe to at most {self.limits.max_channels} channels")
        cap = policy.max_subscribers_per_pod
        if cap is not None and self.hub.subscriber_count(channel) >= cap:
            raise ChannelFull(f"{channel!r} has the {cap} subscribers this pod admits; try again in a moment")
        subscription = Subscription(self, channel, policy, since)
        self.subscriptions[channel] = subscription
        try:
            await self.hub.join(channel, subscription)
            if since is None:
                info = await self.broker.info(channel)
                self.wire.write(self.codec.subscribed(channel, ref, True, info.latest))
            else:
                await self._replay(subscription, ref)
            if subscription.feed.state is REPLAYING:
                # No await from here on: the buffered live events the replay did not cover, then live.
                fresh = subscription.feed.go_live()
                if fresh:
                    subscription.deliver(Batch(channel, fresh))
            if policy.presence_enabled and self.presence is not None and subscription.feed.state is not CLOSED:
                subscription.entry = self.presence.join(self, channel, announced=policy.presence_join_leave)
        except BaseException:
            self._drop(subscription)
            raise

    async def _replay(self, subscription: Subscription, ref: Ref) -> None:
        """Write the history after the feed's last id, page by page, a gap first where the stream lost some;
        read on while pages are full or the live buffer overflowed meanwhile (the feed says which)."""
        channel, feed, page = subscription.channel, subscription.feed, self.limits.replay_page
        first = True
        while True:
            since = feed.read_from()
            history = await self.broker.read(channel, since, page)
            if self.wire.closed or feed.state is CLOSED:
                return
            if first:
                self.wire.write(self.codec.subscribed(channel, ref, not history.gap, history.latest))
                first = False
            if history.gap:
                self.wire.write(self.codec.gap(channel, since, history.earliest))
            if history.events:
                self.wire.write(self.codec.events(self.hub.replay_batch(channel, history.events)))
            full = len(history.events) >= page
            if not feed.history(history.events, full=full):
                return
            if full and not await self.wire.drain(self.limits.replay_drain_seconds):
                self.close(disconnects.SLOW_CONSUMER)
                return

    def unsubscribe(self, channel: str) -> bool:
        """Leave a channel; False if not subscribed. Rate-limited with subscribe requests."""
        limits = self.limits
        self._take("subscribe", limits.subscribe_per_second, limits.subscribe_burst, "subscribe requests")
        subscription = self.subscriptions.get(channel)
        if subscription is None:
            return False
        self._drop(subscription)
        return True

    def _drop(self, subscription: Subscription) -> None:
        if subscription.entry is not None and self.presence is not None:
            self.presence.leave(subscription.entry)
            subscription.entry = None
        subscription.feed.close()
        subscription.backlog = None
        self._backlogged.discard(subscription)
        if self.subscriptions.get(subscription.channel) is subscription:
            del self.subscriptions[subscription.channel]
        self.hub.leave(subscription.channel, subscription)

    def send(self, data: bytes) -> None:
        """Write one pre-encoded message (a reply, an error)."""
        if not self.wire.closed:
            self.wire.write(data)

    def slow_consumer(self, channel: str, unsent: int) -> None:
        """A live write left more unsent than the outbox admits: close with 4108 (the client resumes)."""
        log.info("slow consumer on %s: %d bytes unsent", channel, unsent)
        self.counters.slow_disconnects += 1
        tracing.add_event(
            self.tracer,
            "fleetcast.slow_consumer.disconnect",
            {"messaging.destination.name": channel, "fleetcast.buffered_bytes": unsent},
            span_name=f"slow_consumer {channel}",
        )
        self.close(disconnects.SLOW_CONSUMER)

    def park(self, subscription: Subscription, events: Sequence[Event]) -> None:
        """Keep live events for a lagging client (its feed is parked) until :meth:`flush_backlogs`."""
        if subscription.backlog is None:
            subscription.backlog = Backlog(
                subscription.policy, max_bytes=self.limits.outbox_max_bytes, floor=subscription.feed.last or "0-0"
            )
            self._backlogged.add(subscription)
        subscription.backlog.add(events)

    def flush_backlogs(self) -> None:
        """The client takes bytes again: write what was parked (a gap first where events were dropped)."""
        for subscription in list(self._backlogged):
            backlog = subscription.backlog
            if backlog is None or self.wire.closed or not self.wire.writable:
                return
            lost = backlog.lost
            gap_from, events = backlog.take()
            channel = subscription.channel
            if gap_from is not None:
                self.wire.write(self.codec.gap(channel, gap_from, events[0].id if events else None))
            after: list[Event] = []
            if lost is not None:
                boundary = ids.parse(lost[0])
                after = [e for e in events if ids.parse(e.id) > boundary]
                events = events[: len(events) - len(after)]
            if events:
                self.wire.write(self.codec.events(Batch(channel, events)))
            if lost is not None:
                self.wire.write(self.codec.gap(channel, lost[0], lost[1]))
            if after:
                self.wire.write(self.codec.events(Batch(channel, after)))
            if backlog.dropped:
                self.counters.dropped[subscription.policy.slow_consumer] += backlog.dropped
                tracing.add_event(
                    self.tracer,
                    "fleetcast.slow_consumer.drop",
                    {
                        "messaging.destination.name": channel,
                        "fleetcast.policy": subscription.policy.slow_consumer,
                        "fleetcast.dropped": backlog.dropped,
                    },
                    span_name=f"slow_consumer {channel}",
                )
            subscription.backlog = None
            self._backlogged.discard(subscription)
            subscription.feed.unpark((after or events)[-1].id if events or after else None)

    def close(self, disconnect: Disconnect, after_ms: int | None = None) -> None:
        if after_ms is None:
            after_ms = server_delay_ms() if disconnect.reconnect else 0
        self.wire.close(disconnect, after_ms)
        self.release()

    def release(self) -> None:
        """Leave every channel. Idempotent; transports call it when the connection ends."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        for subscription in list(self.subscriptions.values()):
            self._drop(subscription)
