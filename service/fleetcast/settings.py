"""Settings: one root of sections, each default written once (in its section), read once at start-up, passed
explicitly: every part gets its section (``Pod`` hands ``settings.session`` to each session, ``settings.drain`` to
the drain controller...).

Every field is reachable from the command line and the environment: :data:`OPTIONS` names the flag of each
(``--outbox-max-bytes``, also read from ``FLEETCAST_OUTBOX_MAX_BYTES``) and :func:`add_options` /
:func:`settings_from` build the parser and the settings from that one table, taking each default from the
section's dataclass. ``tests/unit/test_settings.py`` checks that no field is left without a flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from fleetcast.auth.authenticator import AuthSettings
from fleetcast.contract.presence import GRACE_SECONDS, LEASE_SECONDS
from fleetcast.drain.controller import DrainSettings
from fleetcast.session.limits import Limits


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
    read_concurrency: int = 16
    """History reads one pod sends the broker at once; identical concurrent reads share one (a resume burst)."""
    read_wait_timeout: float = 5.0
    """Seconds a history read may wait for one of those slots before the broker counts as unavailable."""
    redis_timeout: float = 2.0
    """Seconds to connect to Redis and for each command's answer."""
    redis_max_connections: int = 32
    """Pooled Redis connections for publishes and history reads (the live reader has its own)."""
    redis_read_count: int = 100
    """Events per live read and per catch-up page of the Redis live reader."""
    unwatch_grace_seconds: float = 5.0
    """Seconds an emptied channel stays watched, so a client reconnecting at once does not make the pod drop
    and re-add it."""


@dataclass(frozen=True, slots=True)
class LimitSettings:
    sse_heartbeat_seconds: float = 15.0
    """Interval of ``: ping`` comments on idle SSE streams."""
    ws_ping_seconds: float = 20.0
    """WebSocket protocol pings; a client that does not answer within the same time is disconnected."""
    sse_retry_ms: int = 1000
    """Base of the per-client jittered SSE ``retry:`` value."""
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
    session: Limits = field(default_factory=Limits)
    drain: DrainSettings = field(default_factory=DrainSettings)


def _port(raw: str) -> int:
    """A TCP port number, or 0 for ``off``."""
    value = 0 if raw.strip().lower() == "off" else int(raw)
    if not 0 <= value <= 65535:
        raise ValueError(raw)
    return value


def _seconds_or_never(raw: str) -> float | None:
    """Seconds; 0 (or less) means never."""
    value = float(raw)
    return value if value > 0 else None


def _redis_mode(raw: str) -> str:
    """``standalone`` or ``cluster``."""
    value = raw.strip().lower()
    if value not in ("standalone", "cluster"):
        raise ValueError(raw)
    return value


def _replicas(raw: str) -> int:
    """A number of replicas, 0 or more."""
    value = int(raw)
    if value < 0:
        raise ValueError(raw)
    return value


def _origins(raw: str) -> tuple[str, ...]:
    return tuple(o.strip() for o in raw.split(",") if o.strip())


_port.__name__ = "port"
_seconds_or_never.__name__ = "seconds"
_origins.__name__ = "comma-separated list"
_redis_mode.__name__ = "redis_mode"
_replicas.__name__ = "replicas"


@dataclass(frozen=True, slots=True)
class Option:
    """One command-line flag (and ``FLEETCAST_<FLAG>`` variable) for one field of one section."""

    flag: str
    section: str
    field: str
    help: str
    parse: Callable[[str], Any] | None = None
    """How the flag's text becomes the value; None: the field's type (``str | None``: empty means None)."""


OPTIONS: tuple[Option, ...] = (
    Option("host", "server", "host", "address to listen on"),
    Option("port", "server", "port", "port to listen on"),
    Option("pod-name", "server", "pod_name", "this pod's name in heartbeats and drain commands"),
    Option("gateway", "server", "gateway", "the Gateway this pod belongs to"),
    Option("namespace", "server", "namespace", "the Gateway's Kubernetes namespace (names the Redis keys)"),
    Option(
        "gc-young-threshold", "server", "gc_young_threshold", "allocations between young-generation GCs; 0: Python's"
    ),
    Option("admin-port", "admin", "port", "port of /internal/*, /metrics and the API docs (0 or 'off': none)", _port),
    Option(
        "admin-token-file",
        "admin",
        "token_file",
        "file with the admin token (unset: generated into the temp directory)",
    ),
    Option(
        "redis-url",
        "broker",
        "redis_url",
        "Redis to share events through (unset: the embedded broker); cluster: seed list",
    ),
    Option("redis-mode", "broker", "redis_mode", "'standalone' Redis or 'cluster' (Redis Cluster, 7.0+)", _redis_mode),
    Option(
        "redis-wait-replicas",
        "broker",
        "redis_wait_replicas",
        "replicas that must hold a publish before 201",
        _replicas,
    ),
    Option("history-max-events", "broker", "history_max_events", "retention of channels no Channel resource declares"),
    Option(
        "idle-channel-ttl",
        "broker",
        "idle_channel_ttl",
        "embedded broker: idle channel lifetime, s (0: forever)",
        _seconds_or_never,
    ),
    Option("strict-channels", "broker", "strict_channels", "refuse channels whose family no Channel resource declares"),
    Option(
        "presence",
        "broker",
        "presence_undeclared",
        "channels no Channel resource declares have presence, with joins and leaves",
    ),
    Option("presence-lease-seconds", "broker", "presence_lease_seconds", "entries of a dead pod go within, s (>= 10)"),
    Option("presence-grace-seconds", "broker", "presence_grace_seconds", "a leave waits this long for a rejoin, s"),
    Option("read-concurrency", "broker", "read_concurrency", "history reads sent to the broker at once"),
    Option("read-wait-timeout", "broker", "read_wait_timeout", "seconds a history read waits for a slot before 503"),
    Option("redis-timeout", "broker", "redis_timeout", "seconds to connect to Redis and for each answer"),
    Option("redis-max-connections", "broker", "redis_max_connections", "pooled Redis connections (publish, history)"),
    Option("redis-read-count", "broker", "redis_read_count", "events per live read and catch-up page on Redis"),
    Option("unwatch-grace-seconds", "broker", "unwatch_grace_seconds", "seconds an emptied channel stays watched"),
    Option(
        "anonymous",
        "auth",
        "anonymous",
        "channels no Channel resource declares are open to anyone: subscribe and publish without credentials "
        "(on for a laptop; the Helm chart's Gateway turns it off)",
    ),
    Option("publish-key", "auth", "publish_key", "one API key (named 'default') backends publish with"),
    Option(
        "publish-keys-dir", "auth", "publish_keys_dir", "directory of API keys, one file per key (a mounted Secret)"
    ),
    Option("jwt-secret-file", "auth", "jwt_secret_file", "file with the shared secret of HS256/384/512 tokens"),
    Option("jwt-public-key-file", "auth", "jwt_public_key_file", "PEM public key of RS*/PS*/ES*/EdDSA tokens"),
    Option(
        "jwks-url", "auth", "jwks_url", "JWKS document with the keys of tokens (by kid), refreshed in the background"
    ),
    Option("jwt-audience", "auth", "jwt_audience", "tokens must carry this 'aud'"),
    Option("jwt-issuer", "auth", "jwt_issuer", "tokens must carry this 'iss'"),
    Option("jwt-leeway", "auth", "jwt_leeway_seconds", "seconds of clock skew tolerated on exp and nbf"),
    Option("jwks-refresh-seconds", "auth", "jwks_refresh_seconds", "interval of scheduled JWKS refreshes"),
    Option("key-reload-seconds", "auth", "key_reload_seconds", "how often key files are checked for rotation"),
    Option(
        "allowed-origins",
        "auth",
        "allowed_origins",
        "comma-separated web origins that may use the gateway besides its own",
        _origins,
    ),
    Option("token-cookie", "auth", "token_cookie", "cookie that SSE, history and info requests may carry a token in"),
    Option("max-connections", "limits", "max_connections", "connections before new ones are turned away"),
    Option("max-header-bytes", "limits", "max_header_bytes", "request line plus headers before 431"),
    Option("header-timeout", "limits", "header_timeout", "seconds to send request line and headers before 408"),
    Option("ws-ping-seconds", "limits", "ws_ping_seconds", "WebSocket pings; silent as long again: disconnected"),
    Option("sse-heartbeat-seconds", "limits", "sse_heartbeat_seconds", "': ping' comments on idle SSE streams"),
    Option("sse-retry-ms", "limits", "sse_retry_ms", "base of the per-client jittered SSE 'retry:'"),
    Option(
        "mux-max-channels", "limits", "mux_max_channels", "channels per multiplexed SSE stream (1 to --max-channels)"
    ),
    Option("outbox-max-bytes", "session", "outbox_max_bytes", "unsent bytes before a session is a slow consumer"),
    Option("replay-page", "session", "replay_page", "events per history read during a resume"),
    Option("replay-buffer", "session", "replay_pending_max", "live events buffered per subscription while it replays"),
    Option(
        "replay-drain-seconds", "session", "replay_drain_seconds", "seconds a replay waits for a client to take a page"
    ),
    Option("max-channels", "session", "max_channels", "subscriptions one connection may hold"),
    Option("ws-publish-rate", "session", "publish_per_second", "publishes per second per WebSocket client"),
    Option(
        "ws-publish-burst",
        "session",
        "publish_burst",
        "publishes a WebSocket client may make at once (unset: twice the rate)",
    ),
    Option("subscribe-rate", "session", "subscribe_per_second", "subscribe requests per second per connection"),
    Option("subscribe-burst", "session", "subscribe_burst", "subscribe requests a connection may make at once"),
    Option(
        "presence-read-rate", "session", "presence_reads_per_second", "presence reads per second per WebSocket client"
    ),
    Option("presence-read-burst", "session", "presence_reads_burst", "presence reads a client may make at once"),
    Option(
        "abuse-strikes", "session", "abuse_strikes", "requests refused for rate in a row before the connection is cut"
    ),
    Option("drain-rate", "drain", "rate", "sessions closed per second while draining"),
    Option("drain-timeout", "drain", "timeout", "seconds until a drain closes the rest and the process exits"),
    Option("drain-propagation", "drain", "propagation_seconds", "seconds from unready to turning sessions away"),
    Option("drain-reconnect-delay-ms", "drain", "reconnect_delay_ms", "upper bound of drained clients' jittered delay"),
)

_TRUE = {"1", "true", "yes", "on"}
_DERIVED = {("session", "publish_burst")}
"""Fields whose unset flag means "derived from another" (the burst: twice the rate, at least 1)."""


def env_name(flag: str) -> str:
    return "FLEETCAST_" + flag.upper().replace("-", "_")


def env(name: str, default: str | None = None) -> str | None:
    """``FLEETCAST_<NAME>`` from the environment (``pod-name`` -> ``FLEETCAST_POD_NAME``)."""
    return os.environ.get(env_name(name), default)


def _section_types() -> dict[str, type[Any]]:
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings)}


def _field(section: type[Any], name: str) -> tuple[Any, Any]:
    """A section field's default and type."""
    found = {f.name: f for f in dataclasses.fields(section)}[name]
    default = found.default_factory() if found.default is dataclasses.MISSING else found.default  # type: ignore[operator]
    return default, typing.get_type_hints(section)[name]


def _parser_of(kind: Any, flag: str) -> Callable[[str], Any]:
    args = typing.get_args(kind)
    if kind in (int, float, str):
        return kind  # type: ignore[no-any-return]
    if set(args) == {str, type(None)}:

        def text_or_none(raw: str) -> str | None:
            return raw or None

        text_or_none.__name__ = "str"
        return text_or_none
    raise TypeError(f"--{flag}: no parser for {kind!r}; give the Option one")


def add_options(parser: argparse.ArgumentParser, options: tuple[Option, ...] = OPTIONS) -> None:
    """Add every option, each defaulting to ``FLEETCAST_<FLAG>`` from the environment, else its field's default.
    A malformed environment value is refused with its name, not a traceback."""
    sections = _section_types()
    for option in options:
        default, kind = _field(sections[option.section], option.field)
        if (option.section, option.field) in _DERIVED:
            default = None
        raw = env(option.flag)
        if kind is bool:
            value = default if not raw else raw.strip().lower() in _TRUE
            parser.add_argument(
                f"--{option.flag}",
                action=argparse.BooleanOptionalAction,
                default=value,
                dest=f"{option.section}.{option.field}",
                help=f"{option.help} (%(default)s)",
            )
            continue
        parse = option.parse or _parser_of(kind, option.flag)
        value = default
        if raw is not None and raw != "":
            try:
                value = parse(raw)
            except ValueError:
                parser.error(f"{env_name(option.flag)}={raw!r} is not a valid {parse.__name__}")
        parser.add_argument(
            f"--{option.flag}",
            type=parse,
            default=value,
            dest=f"{option.section}.{option.field}",
            help=f"{option.help} (%(default)s)",
        )


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings the parsed options describe: each section made from its fields' values."""
    values: dict[str, dict[str, Any]] = {}
    for dest, value in vars(args).items():
        section, dot, name = dest.partition(".")
        if dot:
            values.setdefault(section, {})[name] = value
    session = values.get("session", {})
    if session.get("publish_burst") is None:
        session["publish_burst"] = max(1.0, 2 * session.get("publish_per_second", Limits().publish_per_second))
    sections = _section_types()
    return Settings(**{name: sections[name](**fields) for name, fields in values.items()})
