"""One gateway pod's runtime: the broker, the hub, the policies and the counters, started and stopped together."""

from __future__ import annotations

import logging

from fleetcast.broker.base import Broker
from fleetcast.broker.memory import MemoryBroker
from fleetcast.contract.policy import ChannelPolicy
from fleetcast.core import disconnects
from fleetcast.core.disconnects import Disconnect
from fleetcast.drain.controller import DrainController
from fleetcast.hub.hub import Hub
from fleetcast.session.policies import PolicyBook
from fleetcast.session.publisher import Publisher
from fleetcast.session.session import Limits, Session
from fleetcast.settings import Settings

log = logging.getLogger(__name__)


def make_broker(settings: Settings) -> Broker:
    if settings.broker.redis_url is None:
        return MemoryBroker()
    from fleetcast.broker.redis_streams import RedisStreamsBroker

    return RedisStreamsBroker(settings.broker.redis_url)


class Pod:
    def __init__(self, settings: Settings, broker: Broker | None = None) -> None:
        self.settings = settings
        self.broker = broker if broker is not None else make_broker(settings)
        self.hub = Hub(self.broker)
        default = ChannelPolicy(history_max_events=settings.broker.history_max_events, publish_from_clients=True)
        self.policies = PolicyBook(default, strict=settings.broker.strict_channels)
        self.publisher = Publisher(self.broker, self.policies)
        self.limits = Limits(outbox_max_bytes=settings.limits.outbox_max_bytes)
        self.connections: dict[str, int] = {"ws": 0, "sse": 0}
        self.sessions: set[Session] = set()
        """Every open session, for drain and for the bytes they hold unsent."""
        self.drain = DrainController(self.sessions, settings.drain)

    def admission(self) -> Disconnect | None:
        """Why a new session must be turned away (draining, or the pod is full), or None to take it."""
        if not self.drain.accepting:
            return disconnects.DRAINING
        if sum(self.connections.values()) >= self.settings.limits.max_connections:
            return disconnects.OVERLOADED
        return None

    def buffered_bytes(self) -> int:
        """Bytes written for clients but not yet taken by them, over all sessions."""
        return sum(session.wire.buffered() for session in self.sessions)

    @property
    def ready(self) -> bool:
        """Whether this pod should get new clients: the broker is reachable and the pod is not draining."""
        return self.broker.ready and not self.drain.draining

    async def start(self) -> None:
        await self.hub.start()
        await self.broker.start(self.hub.deliver)
        log.info(
            "pod %s of gateway %s started on the %s broker",
            self.settings.server.pod_name,
            self.settings.server.gateway,
            "redis" if self.settings.broker.redis_url else "embedded memory",
        )

    async def close(self) -> None:
        await self.drain.close()
        await self.broker.close()
        await self.hub.close()
