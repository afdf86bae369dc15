"""One gateway pod's runtime: broker, hub, policies, fleet membership and drain, started and stopped together.

Besides composing the parts, the pod owns one housekeeping task: it writes this pod's heartbeat to the pod
registry every :data:`~fleetcast.contract.heartbeat.INTERVAL_SECONDS` (sooner after a drain starts), renews
presence's lease after each heartbeat (:class:`~fleetcast.session.presence.Presence`), and reloads channel
policies when the fleet says they changed. Commands addressed to this pod (drain, shed) arrive from the
fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from opentelemetry.trace import Tracer

from fleetcast.auth.authenticator import Authenticator
from fleetcast.auth.origins import OriginPolicy
from fleetcast.auth.principal import ANONYMOUS, Principal
from fleetcast.broker.base import Broker
from fleetcast.broker.coalescing import CoalescingBroker
from fleetcast.broker.fleet import Fleet, MemoryFleet
from fleetcast.broker.memory import MemoryBroker
from fleetcast.broker.presence import MemoryPresence, PresenceStore
from fleetcast.contract.commands import Command, DrainCommand
from fleetcast.contract.heartbeat import INTERVAL_SECONDS, Heartbeat
from fleetcast.contract.keys import Keys
from fleetcast.contract.policy import ChannelPolicy
from fleetcast.core import disconnects
from fleetcast.core.backoff import server_delay_ms
from fleetcast.core.disconnects import Disconnect
from fleetcast.drain.controller import DrainController
from fleetcast.drain.shed import ShedController
from fleetcast.errors import FleetcastError
from fleetcast.hub.hub import Hub
from fleetcast.observability.metrics import GatewaySnapshot, MultiplexedStreams
from fleetcast.session.access import Access
from fleetcast.session.counters import SessionCounters
from fleetcast.session.policies import PolicyBook
from fleetcast.session.presence import Presence
from fleetcast.session.publisher import Publisher
from fleetcast.session.session import Limits, Session
from fleetcast.session.wire import Codec, Wire
from fleetcast.settings import Settings

log = logging.getLogger(__name__)

_REMOVE_HEARTBEAT_SECONDS = 2.0


def make_presence(settings: Settings, hub: Hub) -> PresenceStore:
    """Presence beside the broker: in this process, or on the same Redis."""
    if settings.broker.redis_url is None:
        return MemoryPresence(hub.presence)
    from fleetcast.broker.redis_presence import RedisPresence

    keys = Keys(settings.server.namespace, settings.server.gateway)
    return RedisPresence(settings.broker.redis_url, keys=keys, mode=settings.broker.redis_mode)


def make_broker(settings: Settings) -> tuple[Broker, Fleet]:
    """The embedded pair, or the Redis pair when a Redis URL is set."""
    pod, gateway = settings.server.pod_name, settings.server.gateway
    if settings.broker.redis_url is None:
        return MemoryBroker(idle_channel_ttl=settings.broker.idle_channel_ttl), MemoryFleet(gateway=gateway, pod=pod)
    from fleetcast.broker.redis_fleet import RedisFleet
    from fleetcast.broker.redis_streams import RedisStreamsBroker

    url, namespace, section = settings.broker.redis_url, settings.server.namespace, settings.broker
    keys = Keys(namespace, gateway)
    broker = RedisStreamsBroker(
        url,
        keys=keys,
        mode=section.redis_mode,
        wait_replicas=section.redis_wait_replicas,
        timeout=section.redis_timeout,
        max_connections=section.redis_max_connections,
        read_count=section.redis_read_count,
    )
    fleet = RedisFleet(
        url, gateway=gateway, pod=pod, namespace=namespace, mode=section.redis_mode, timeout=section.redis_timeout
    )
    return broker, fleet


class Pod:
    def __init__(
        self,
        settings: Settings,
        broker: Broker | None = None,
        fleet: Fleet | None = None,
        *,
        tracer: Tracer | None = None,
    ) -> None:
        self.settings = settings
        self.tracer = tracer
        """From ``tracing.setup_from_environment`` at start-up, handed to every part that traces (None: off)."""
        if broker is None or fleet is None:
            default_broker, default_fleet = make_broker(settings)
            broker, fleet = broker or default_broker, fleet or default_fleet
        # Resume bursts: identical concurrent history reads share one read, and reads are bounded in number.
        self.broker: Broker = CoalescingBroker(
            broker,
            max_concurrent_reads=settings.broker.read_concurrency,
            wait_timeout=settings.broker.read_wait_timeout,
        )
        self.fleet = fleet
        self.hub = Hub(self.broker, unwatch_grace_seconds=settings.broker.unwatch_grace_seconds, tracer=tracer)
        self.presence = Presence(
            make_presence(settings, self.hub),
            fleet,
            pod=settings.server.pod_name,
            lease=settings.broker.presence_lease_seconds,
            grace=settings.broker.presence_grace_seconds,
        )
        # Families no Channel declares: open on a laptop (--anonymous), closed like private ones otherwise. Once
        # a pod has a publish credential configured, publishing needs one: a key must not sit beside a side door.
        auth = settings.auth
        anonymous = auth.anonymous
        credentials = any((auth.publish_key, auth.publish_keys_dir, auth.jwt_secret_file, auth.jwt_public_key_file,
                           auth.jwks_url))  # fmt: skip
        default = ChannelPolicy(
            history_max_events=settings.broker.history_max_events,
            publish_from_clients=anonymous,
            publish_anonymous=anonymous and not credentials,
            subscribe_anonymous=anonymous,
            presence_enabled=settings.broker.presence_undeclared,
            presence_join_leave=settings.broker.presence_undeclared,
        )
        self.policies = PolicyBook(default, strict=settings.broker.strict_channels)
        self.authenticator = Authenticator(settings.auth)
        self.access = Access(self.policies, expiry_leeway=settings.auth.jwt_leeway_seconds)
        self.origins = OriginPolicy(settings.auth.allowed_origins)
        self.publisher = Publisher(self.broker, tracer=tracer)
        self.limits: Limits = settings.session
        self.connections: dict[str, int] = {"ws": 0, "sse": 0}
        self.connecting = 0
        """Connections still sending their request line and headers (the server's HTTP protocol keeps this)."""
        self.counters = SessionCounters()
        self.sessions: set[Session] = set()
        """Every open session, for drain and for the bytes they hold unsent."""
        self.multiplexed = MultiplexedStreams()
        self._wake = asyncio.Event()
        self.drain = DrainController(self.sessions, settings.drain, tracer=tracer)
        # A drain's start and end reach the registry at once, then every half second while it runs.
        self.drain.on_state = self._wake.set
        # A rebalance moves some clients away while the pod stays ready; a drain cuts it short.
        self.shed = ShedController(self.sessions, settings.drain, halted=lambda: self.drain.draining, tracer=tracer)
        self.shed.on_state = self._wake.set
        self._policies_stale = True
        self._housekeeping: asyncio.Task[None] | None = None

    def admission(self) -> Disconnect | None:
        """Why a new session must be turned away (draining, or the pod is full), or None to take it."""
        if not self.drain.accepting:
            return disconnects.DRAINING
        if sum(self.connections.values()) + self.connecting >= self.settings.limits.max_connections:
            return disconnects.OVERLOADED
        return None

    def admit_connecting(self) -> bool:
        """Whether a new TCP connection may start sending its request: connections still sending headers count
        against ``--max-connections`` with the sessions. One past the limit is let in, so that a client of a pod
        exactly full still hears the polite refusal (WebSocket 1013, SSE a reconnect event)."""
        return sum(self.connections.values()) + self.connecting <= self.settings.limits.max_connections

    def refusal_delay_ms(self, refusal: Disconnect) -> int:
        """When a client turned away should come back: the drain's jittered delay, or a jittered backoff."""
        return self.drain.after_ms() if refusal.advice == "reconnect" else server_delay_ms()

    def open_session(
        self, wire: Wire, codec: Codec, principal: Principal = ANONYMOUS, client_id: str | None = None
    ) -> Session:
        """A new session on this pod, counted and known to the drain until :meth:`close_session`; ``client_id``:
        the client's presence id (``?client=``, checked)."""
        session = Session(
            hub=self.hub,
            broker=self.broker,
            access=self.access,
            publisher=self.publisher,
            wire=wire,
            codec=codec,
            limits=self.limits,
            counters=self.counters,
            principal=principal,
            presence=self.presence,
            client_id=client_id,
            tracer=self.tracer,
        )
        self.connections[wire.kind] += 1
        self.sessions.add(session)
        return session

    def close_session(self, session: Session) -> None:
        self.connections[session.wire.kind] -= 1
        self.sessions.discard(session)
        session.release()

    def buffered_bytes(self) -> int:
        """Bytes written for clients but not yet taken by them, over all sessions."""
        return sum(session.wire.buffered() for session in self.sessions)

    @property
    def ready(self) -> bool:
        """Whether this pod should get new clients: the broker is reachable and the pod is not draining."""
        return self.broker.ready and not self.drain.draining

    def heartbeat(self) -> Heartbeat:
        return Heartbeat(
            pod=self.settings.server.pod_name,
            gateway=self.settings.server.gateway,
            timestamp=time.time(),
            connections=dict(self.connections),
            subscriptions=self.hub.subscriptions_by_family(),
            present=self.presence.by_family(),
            draining=self.drain.draining,
            remaining=self.drain.remaining,
            ready=self.ready,
            shedding=self.shed.shedding,
            shed_remaining=self.shed.remaining,
            shed_round=self.shed.round,
        )

    def metrics(self) -> GatewaySnapshot:
        """What ``GET /metrics`` serves, read from the counters the parts keep anyway."""
        return GatewaySnapshot(
            connections=dict(self.connections),
            subscriptions=self.hub.subscriptions_by_family(),
            buffered_bytes=self.buffered_bytes(),
            published=self.publisher.published,
            delivered=self.hub.delivered_events,
            lag=self.hub.lag,
            dropped=dict(self.counters.dropped),
            slow_disconnects=self.counters.slow_disconnects,
            drain_state=self.drain.state,
            drain_remaining=self.drain.remaining,
            drain_closed=self.drain.closed,
            broker_ready=self.broker.ready,
            broker_errors={"publish": self.publisher.broker_errors},
            broker_channels=self.broker.channels_held,
            broker_shards=self.broker.shards,
            multiplexed=self.multiplexed,
            shed_remaining=self.shed.remaining,
            shed_closed=self.shed.closed,
            presence_entries=self.presence.by_family(),
            presence_writes=self.presence.writes,
            presence_reaped=self.presence.reaped,
        )

    async def start(self) -> None:
        await self.authenticator.start()
        await self.hub.start()
        await self.broker.start(self.hub.deliver, self.hub.lost, announce=self.hub.presence)
        await self.fleet.start(on_command=self._on_command, on_policy_change=self._on_policy_change)
        await self.presence.start()
        self._housekeeping = asyncio.create_task(self._keep_house(), name="pod-housekeeping")
        log.info(
            "pod %s of gateway %s started on the %s broker",
            self.settings.server.pod_name,
            self.settings.server.gateway,
            "redis" if self.settings.broker.redis_url else "embedded memory",
        )

    async def close(self) -> None:
        await self.shed.close()
        await self.drain.close()
        # Leaves of clients still here wait out their grace, so those a drain moved are not announced as gone.
        await self.presence.close()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        # Leave the registry at once, so the operator stops counting this pod (best effort: Redis may be down).
        with contextlib.suppress(FleetcastError, TimeoutError):
            async with asyncio.timeout(_REMOVE_HEARTBEAT_SECONDS):
                await self.fleet.remove_heartbeat(self.settings.server.pod_name)
        await self.fleet.close()
        await self.presence.store.close()
        await self.broker.close()
        await self.hub.close()
        await self.authenticator.close()

    def _on_command(self, command: Command) -> None:
        log.info("command from the operator: %s", command)
        if isinstance(command, DrainCommand):
            self.drain.begin(rate=command.connections_per_second, timeout=command.timeout_seconds, exit=command.exit)
        else:
            self.shed.begin(command.count, rate=command.connections_per_second, round=command.round)

    def _on_policy_change(self, family: str | None) -> None:
        self._policies_stale = True
        self._wake.set()

    async def _keep_house(self) -> None:
        while True:
            if self._policies_stale:
                await self._reload_policies()
            try:
                record_was_new = await self.fleet.write_heartbeat(self.heartbeat())
            except FleetcastError as exc:
                log.debug("heartbeat not written: %s", exc)
            else:
                try:
                    await self.presence.renew(record_was_new)
                except FleetcastError as exc:
                    log.debug("presence lease not renewed: %s", exc)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                busy = self.drain.draining or self.shed.shedding
                async with asyncio.timeout(INTERVAL_SECONDS / 4 if busy else INTERVAL_SECONDS):
                    await self._wake.wait()

    async def _reload_policies(self) -> None:
        try:
            declared = await self.fleet.policies()
        except FleetcastError as exc:
            log.warning("channel policies not loaded (will retry): %s", exc)
            return
        self.policies.replace(declared)
        self._policies_stale = False
        log.info("channel policies loaded: %s", ", ".join(sorted(declared)) or "none declared")
