"""What every handler needs, built once at start-up and passed explicitly: settings, clients, clocks.

The handlers in :mod:`fleetcast_operator.wiring` close over one :class:`Runtime`; nothing reads the
environment or creates a client after start-up, and :meth:`Runtime.close` releases what was opened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fleetcast.contract.keys import Keys
from fleetcast.contract.redis_url import Mode
from fleetcast_operator.errors import InvalidSpec, TemporaryFailure
from fleetcast_operator.gateway.spec import RedisSource
from fleetcast_operator.kube import Kube


@dataclass(frozen=True, slots=True)
class Settings:
    """The operator's own settings (command line), as opposed to what resources declare."""

    autoscale_interval: float = 5.0
    """Seconds between two autoscaler steps of one Gateway (heartbeats are written every 2 s)."""
    channel_status_interval: float = 10.0
    """Seconds between two status refreshes of one Channel (and re-writes of its policy, if Redis lost it)."""
    namespaces: tuple[str, ...] = ()
    """Namespaces to serve; all of them when empty."""
    liveness_endpoint: str | None = None
    """e.g. ``http://0.0.0.0:8080/healthz``; no endpoint when None."""


class Fleet(Protocol):
    """The Redis side of one gateway, as the autoscaler, the drain steps and the channels see it.

    :class:`fleetcast_operator.fleet_redis.FleetRedis` implements it; the packages that use it never import
    ``redis``, which keeps them testable against an in-memory fake and keeps the import rule simple.
    """

    async def heartbeats(self, keys: Keys) -> dict[str, str]: ...
    async def send(self, keys: Keys, fields: dict[str, str]) -> str: ...
    async def put_policy(self, keys: Keys, family: str, policy_json: str) -> bool: ...
    async def drop_policy(self, keys: Keys, family: str) -> None: ...
    async def stream_stats(self, keys: Keys, family: str) -> Any: ...


@dataclass
class Runtime:
    settings: Settings
    kube: Kube
    fleet_for_url: Callable[[str, Mode], Fleet]
    """The operator's Redis client for a URL in a mode (standalone or cluster), shared by the Gateways using it."""
    close_fleets: Callable[[], Any]
    wall_clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic

    async def fleet(self, namespace: str, source: RedisSource) -> Fleet:
        """The Redis of a Gateway, resolving a Secret reference at each call (Secrets may be rotated). With an
        ``operatorKey`` the operator connects as its own ACL user, not as the pods' user."""
        if source.url is not None:
            return self.fleet_for_url(source.url, source.mode)
        assert source.secret_name is not None
        key = source.operator_key or source.secret_key
        url = await self.kube.secret_value(namespace, source.secret_name, key)
        if not url:
            raise InvalidSpec(f"Secret {source.secret_name!r} has no key {key!r} with a Redis URL")
        if not url.startswith(("redis://", "rediss://")):
            raise InvalidSpec(f"Secret {source.secret_name!r} key {key!r} is not a redis:// URL")
        return self.fleet_for_url(url, source.mode)

    async def close(self) -> None:
        try:
            await self.close_fleets()
        finally:
            await self.kube.close()


__all__ = ["Fleet", "Runtime", "Settings", "TemporaryFailure"]
