"""Settings: grouped, documented, read once at start-up (flags, then ``FLEETCAST_<NAME>``), passed explicitly."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Literal

from fleetcast.auth.authenticator import AuthSettings
from fleetcast.contract.presence import GRACE_SECONDS, LEASE_SECONDS
from fleetcast.drain.controller import DrainSettings


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    """Address to listen on; 0.0.0.0 in a container."""
    port: int = 8000
    pod_name: str = field(default_factory=socket.gethostname)
    """This pod's name in heartbeats and drain commands (Kubernetes: the pod's metadata.name)."""
    gateway: str = "default"
    """The Gateway resource this pod belongs to."""
    namespace: str = "default"
    """The Kubernetes namespace of that Gateway; with ``gateway`` it names the pod's Redis keys."""
    gc_young_threshold: int = 0
    """Allocations between two young-generation garbage collections; 0 keeps Python's default (700). Raising it
    (50,000) cut connection set-up CPU by about a quarter but lengthened each collection's pause, and the
    publish-to-deliver p99 with it (``docs/benchmarks.md``, "Garbage collection"): a knob for connection-storm
    workloads, not a default."""


@dataclass(frozen=True, slots=True)
class AdminSettings:
    port: int = 9090
    """Port of the admin listener (``/internal/*``, ``/metrics``, the OpenAPI docs), on the same address as the
    public port; 0 turns it off. The gateway's Service does not expose it."""
    token_file: str | None = None
    """File holding the admin token (a mounted Secret); None: the pod generates one at start-up and writes it
    to ``/tmp/fleetcast-admin-<port>.token`` (mode 0600) for ``fleetcast drain``."""


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    redis_url: str | None = None
    """Redis to share events through; None runs the embedded in-memory broker (one process is the fleet). In
    cluster mode it lists seed nodes: ``redis://[user:password@]host1:port1,host2:port2``."""
    redis_mode: Literal["standalone", "cluster"] = "standalone"
    """``standalone`` (one Redis server) or ``cluster`` (a Redis Cluster: sharded pub/sub, one reader per master)."""
    redis_wait_replicas: int = 0
    """Acknowledge a publish only after this many replicas hold it (``WAIT`` after the publish script); 0: as soon
    as the master has it. Costs a replication round trip per publish (``docs/benchmarks.md``)."""
    history_max_events: int = 1000
    """Retention of channels whose family no Channel resource declares."""
    idle_channel_ttl: float | None = 3600.0
    """Embedded broker: seconds after which a channel nobody watches or publishes to is forgotten with its
    history (None: never). On Redis each Channel's ``history.idleTtl`` does this instead."""
    strict_channels: bool = False
    """Refuse channels whose family no Channel resource declares (404 / close 4004)."""
    presence_undeclared: bool = False
    """Families no Channel declares have presence, joins and leaves included (a laptop's demo)."""
    presence_lease_seconds: float = LEASE_SECONDS
    """Presence entries of a pod that died are gone, and their leaves announced, within this long (at least
    10 s: the lease is the pod's heartbeat, written every 2 s)."""
    presence_grace_seconds: float = GRACE_SECONDS
    """A leave waits this long; the same client joining again meanwhile (a drained client that reconnected
    elsewhere) cancels both. Longer than the drain's reconnect delay."""


@dataclass(frozen=True, slots=True)
class LimitSettings:
    outbox_max_bytes: int = 4 * 1024 * 1024
    """Unsent bytes one session may hold before it counts as a slow consumer."""
    sse_heartbeat_seconds: float = 15.0
    """Interval of ``: ping`` comments on idle SSE streams."""
    ws_ping_seconds: float = 20.0
    """WebSocket protocol pings; a client that does not answer within the same time is disconnected."""
    sse_retry_ms: int = 1000
    """Base of the per-client jittered SSE ``retry:`` value."""
    ws_publish_per_second: float = 50.0
    """Publishes one WebSocket client may make per second (token bucket)."""
    ws_publish_burst: float = 100.0
    """Publishes one WebSocket client may make at once before the rate applies."""
    mux_max_channels: int = 64
    """Channels one multiplexed SSE stream (``GET /v1/events``) may carry; at most 100, a connection's cap."""
    max_connections: int = 20_000
    """Connections one pod takes; more are turned away (WebSocket 1013, SSE a reconnect event). Connections
    still sending their request headers count too."""
    max_header_bytes: int = 16 * 1024
    """Request line plus headers of one request; more is answered 431 and the connection closed."""
    header_timeout: float = 10.0
    """Seconds a client has to send a request line and headers; then 408 and the connection is closed."""


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    drain: DrainSettings = field(default_factory=DrainSettings)


def env(name: str, default: str | None = None) -> str | None:
    """``FLEETCAST_<NAME>`` from the environment (``pod-name`` -> ``FLEETCAST_POD_NAME``)."""
    return os.environ.get("FLEETCAST_" + name.upper().replace("-", "_"), default)
