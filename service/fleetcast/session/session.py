"""The session core: one client connection's subscriptions, whatever its transport.

Resume without gaps or duplicates (docs/protocol.md) lives here, once:

1. register the subscription with the hub first, so live batches start arriving, and buffer them;
2. read the stream after ``since`` page by page and write each page to the client; if the read reports a gap,
   say so first, then continue from the oldest retained event;
3. flush the buffered live events whose id is greater than the last replayed one, and go live.

The live buffer is bounded; when it overflows during a long replay it is emptied and the replay reads one more
pass from the stream, which still holds what the buffer dropped (or reports the gap if it does not).

The session writes pre-encoded bytes to its :class:`~fleetcast.session.wire.Wire` and judges a slow consumer by
the bytes the wire holds. It never creates a task: the transport's own request task drives it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from fleetcast.auth.principal import ANONYMOUS, Principal
from fleetcast.broker.base import Broker, Event
from fleetcast.contract.policy import ChannelPolicy
from fleetcast.contract.presence import Entry
from fleetcast.core import disconnects, ids
from fleetcast.core.backoff import server_delay_ms
from fleetcast.core.disconnects import Disconnect
from fleetcast.core.messages import Ref
from fleetcast.errors import BadRequest, ChannelFull, FleetcastError, Forbidden, InvalidEventId, RateLimited
from fleetcast.hub.batch import Batch
from fleetcast.hub.hub import Hub
from fleetcast.hub.notice import Notice
from fleetcast.observability import tracing
from fleetcast.session.access import Access
from fleetcast.session.backlog import Backlog
from fleetcast.session.counters import SessionCounters
from fleetcast.session.presence import Presence, presence_readable
from fleetcast.session.publisher import Publisher
from fleetcast.session.ratelimit import TokenBucket
from fleetcast.session.wire import Codec, Wire

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-session bounds."""

    outbox_max_bytes: int = 4 * 1024 * 1024
    """A session holding more unsent bytes than this is a slow consumer."""
    replay_page: int = 500
    """Events per history read during a resume."""
    replay_pending_max: int = 10_000
    """Live events buffered per subscription while its replay runs."""
    replay_drain_seconds: float = 10.0
    """How long a replay waits for the client to take a page before calling it a slow consumer."""
    max_channels: int = 100
    """Subscriptions one connection may hold."""
    publish_per_second: float = 50.0
    """Publishes one connection may make per second (token bucket)."""
    publish_burst: float = 100.0
    """Publishes one connection may make at once before the rate applies."""
    subscribe_per_second: float = 20.0
    """Subscribe and unsubscribe requests one connection may make per second."""
    subscribe_burst: float = 200.0
    """... at once: a client resuming every channel after a reconnect (up to ``max_channels``) fits."""
    presence_reads_per_second: float = 5.0
    """``presence`` and ``presence_stats`` requests one connection may make per second (a page can be 1,000
    entries: a client looping on it would keep Redis scanning)."""
    presence_reads_burst: float = 20.0
    abuse_strikes: int = 20
    """Requests refused for rate in a row, after which the connection is cut off (4129)."""


class Subscription:
    """One channel of one session. The hub calls :meth:`deliver`."""

    __slots__ = (
        "active", "backlog", "channel", "entry", "floor", "last_id", "live", "overflowed", "parks", "pending",
        "pending_count", "policy", "session",
    )  # fmt: skip

    def __init__(self, session: Session, channel: str, policy: ChannelPolicy) -> None:
        self.session = session
        self.channel = channel
        self.policy = policy
        self.parks = policy.slow_consumer != "disconnect"
        """Whether a lagging client's events are parked (dropOldest, conflate) rather than written on."""
        self.live = False
        self.active = True
        self.pending: list[Batch] = []
        self.pending_count = 0
        self.overflowed = False
        self.last_id: str | None = None
        """The last event id written for the client on the live path."""
        self.backlog: Backlog | None = None
        """Events parked while the client is slow (``dropOldest`` and ``conflate`` only)."""
        self.entry: Entry | None = None
        """This subscription's presence entry (channels whose policy has presence)."""
        self.floor: ids.EventId | None = None
        """After a replay: the last replayed id. A live batch may still carry events the replay already read
        (appended before the read, delivered after it); they are dropped until an event above the floor."""

    def deliver(self, batch: Batch) -> None:
        if not self.active:
            return
        if self.live:
            if self.floor is not None:
                batch = self._above_floor(batch)
                if not batch.events:
                    return
            self.session.deliver_live(self, batch)
            return
        self.pending.append(batch)
        self.pending_count += len(batch)
        if self.pending_count > self.session.limits.replay_pending_max:
            # The stream still has these events; the replay reads them again (see the module docstring).
            self.pending.clear()
            self.pending_count = 0
            self.overflowed = True

    def presence(self, notice: Notice) -> None:
        """A join or leave: written once live (replays carry no presence), where the policy asks for them."""
        if self.active and self.live and self.policy.presence_join_leave:
            self.session.send(self.session.codec.presence(notice))

    def lost(self, requested: str, earliest: str | None) -> None:
        if not self.active:
            return
        if self.backlog is not None:
            # Parked events from before the hole must reach the client before the gap does.
            self.backlog.note_lost(requested, earliest)
        elif self.live:
            self.session.send(self.session.codec.gap(self.channel, requested, earliest))
        else:
            # Mid-replay: the replay's next read applies the gap rule and reports it in order.
            self.pending.clear()
            self.pending_count = 0
            self.overflowed = True

    def _above_floor(self, batch: Batch) -> Batch:
        floor = self.floor
        assert floor is not None
        if ids.parse(batch.events[0].id) > floor:
            self.floor = None
            return batch
        fresh = [e for e in batch.events if ids.parse(e.id) > floor]
        if fresh:
            self.floor = None
            return Batch(batch.channel, fresh)
        return Batch(batch.channel, ())


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
    ) -> None:
        self.hub = hub
        self.broker = broker
        self.access = access
        self.publisher = publisher
        self.wire = wire
        self.codec = codec
        self.limits = limits
        self.counters = counters if counters is not None else SessionCounters()
        self._encode = codec.events
        self.subscriptions: dict[str, Subscription] = {}
        self.principal = principal
        self.presence = presence
        self.client_id = client_id
        """The client id the connection sent (``?client=``): its presence identity, with its ``sub``."""
        self.presence_conn: str | None = None
        self.presence_client: str | None = None
        """Set by :class:`Presence` on this connection's first presence entry."""
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
        subscription = Subscription(self, channel, policy)
        self.subscriptions[channel] = subscription
        try:
            await self.hub.join(channel, subscription)
            if since is None:
                info = await self.broker.info(channel)
                self.wire.write(self.codec.subscribed(channel, ref, True, info.latest))
                last = None
            else:
                last = await self._replay(subscription, since, ref)
            self._go_live(subscription, last)
            if policy.presence_enabled and self.presence is not None and subscription.active:
                subscription.entry = self.presence.join(self, channel, announced=policy.presence_join_leave)
        except BaseException:
            self._drop(subscription)
            raise

    async def _replay(self, subscription: Subscription, since: str, ref: Ref) -> str | None:
        channel = subscription.channel
        last = since
        first = True
        while True:
            subscription.overflowed = False
            while True:
                history = await self.broker.read(channel, last, self.limits.replay_page)
                if self.wire.closed or not subscription.active:
                    return last
                if first:
                    self.wire.write(self.codec.subscribed(channel, ref, not history.gap, history.latest))
                    first = False
                if history.gap:
                    self.wire.write(self.codec.gap(channel, last, history.earliest))
                if history.events:
                    self.wire.write(self.codec.events(self.hub.replay_batch(channel, history.events)))
                    last = history.events[-1].id
                if len(history.events) < self.limits.replay_page:
                    break
                if not await self.wire.drain(self.limits.replay_drain_seconds):
                    self.close(disconnects.SLOW_CONSUMER)
                    return last
            if not subscription.overflowed:
                return last

    def _go_live(self, subscription: Subscription, last: str | None) -> None:
        """Flush the live events buffered during the replay that it did not cover, then deliver directly."""
        pending, subscription.pending = subscription.pending, []
        subscription.pending_count = 0
        subscription.live = True
        subscription.last_id = last
        if last is None:
            for batch in pending:
                self.deliver_live(subscription, batch)
            return
        last_id = ids.parse(last)
        fresh: list[Event] = [e for batch in pending for e in batch.events if ids.parse(e.id) > last_id]
        if fresh:
            self.deliver_live(subscription, Batch(subscription.channel, fresh))
        else:
            subscription.floor = last_id

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
        subscription.active = False
        subscription.pending.clear()
        subscription.backlog = None
        self._backlogged.discard(subscription)
        if self.subscriptions.get(subscription.channel) is subscription:
            del self.subscriptions[subscription.channel]
        self.hub.leave(subscription.channel, subscription)

    def send(self, data: bytes) -> None:
        """Write one pre-encoded message (a reply, an error)."""
        if not self.wire.closed:
            self.wire.write(data)

    def deliver_live(self, subscription: Subscription, batch: Batch) -> None:
        """Write a live batch, or park it if the client is slow and the channel's policy keeps slow clients.

        The per-delivery path: one encoding lookup (cached on the batch), one write that also says how much
        the client has not taken yet. Closed wires ignore the write and answer 0."""
        wire = self.wire
        if subscription.backlog is not None or (subscription.parks and not wire.writable):
            self._park(subscription, batch)
            return
        unsent = wire.write(self._encode(batch))
        subscription.last_id = batch.events[-1].id
        if unsent > self.limits.outbox_max_bytes:
            log.info("slow consumer on %s: %d bytes unsent", batch.channel, unsent)
            self.counters.slow_disconnects += 1
            tracing.add_event(
                "fleetcast.slow_consumer.disconnect",
                {"messaging.destination.name": batch.channel, "fleetcast.buffered_bytes": unsent},
                span_name=f"slow_consumer {batch.channel}",
            )
            self.close(disconnects.SLOW_CONSUMER)

    def _park(self, subscription: Subscription, batch: Batch) -> None:
        if subscription.backlog is None:
            subscription.backlog = Backlog(
                subscription.policy, max_bytes=self.limits.outbox_max_bytes, floor=subscription.last_id or "0-0"
            )
            self._backlogged.add(subscription)
        subscription.backlog.add(batch.events)

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
            if events or after:
                subscription.last_id = (after or events)[-1].id
            if backlog.dropped:
                self.counters.dropped[subscription.policy.slow_consumer] += backlog.dropped
                tracing.add_event(
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
