"""The channel policy: how one channel family behaves, as declared by a ``Channel`` resource.

The operator turns a ``Channel``'s ``spec`` into a :class:`ChannelPolicy` and writes its JSON to the hash
:attr:`fleetcast.contract.keys.Keys.policies` under the family name; pods read it and apply it to the family's
channels (``chat`` governs ``chat`` and every ``chat:<suffix>``). The JSON uses the CRD's camelCase field names,
so the spec and the stored policy read alike. Every field has a default: ``spec: {}`` is a valid Channel.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from fleetcast.contract.keys import Keys

Transport = Literal["ws", "sse"]
SlowConsumerPolicy = Literal["disconnect", "dropOldest", "conflate"]

TRANSPORTS: tuple[Transport, ...] = ("ws", "sse")
SLOW_CONSUMER_POLICIES: tuple[SlowConsumerPolicy, ...] = ("disconnect", "dropOldest", "conflate")
MAX_MESSAGE_BYTES = 1024 * 1024
"""The fleet-wide ceiling for one event's payload; a policy may lower it, never raise it."""

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``15m``, ``1h30m`` or ``7d``; ``ValueError`` otherwise."""
    match = _DURATION.match(text.strip()) if text else None
    if not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration such as 90s, 15m, 1h30m or 7d")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def format_duration(seconds: float) -> str:
    """The shortest duration text :func:`parse_duration` reads back as ``seconds`` (whole seconds):
    ``86400`` -> ``1d``, ``5400`` -> ``1h30m``, ``0`` -> ``0s``."""
    rest = int(seconds)
    text = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            text += f"{count}{unit}"
    return text or "0s"


@dataclass(frozen=True, slots=True)
class ChannelPolicy:
    """Everything a pod needs to know about a channel family."""

    transports: tuple[Transport, ...] = TRANSPORTS
    """Transports clients may subscribe with."""
    history_max_events: int | None = 1000
    """Keep at least this many events for replay (``MAXLEN ~`` on Redis, exact in memory); None: no cap."""
    history_max_age: float | None = None
    """Keep events at least this many seconds (``MINID ~`` on Redis); None: no age limit."""
    history_idle_ttl: float | None = 24 * 3600.0
    """A channel nobody published to for this many seconds is forgotten with its history (Redis: the stream
    key's TTL, refreshed by every publish), so abandoned channels leave; None: kept forever."""
    publish_from_clients: bool = False
    """Whether WebSocket clients may publish: with a token whose ``publish`` claim names the channel, or with
    none if :attr:`publish_anonymous`. Backends publish over HTTP with an API key or such a token regardless."""
    publish_anonymous: bool = False
    """Whether publishing needs no credentials at all (a laptop's demo, never a public fleet)."""
    subscribe_anonymous: bool = False
    """Whether clients without a token may subscribe (and read history and channel info)."""
    subscribe_user_scoped: bool = False
    """Whether ``<family>:<suffix>`` is personal: readable by the token whose ``sub`` equals the suffix (or one
    whose ``channels`` claim names it), never anonymously. Per-user notifications with one token per user."""
    max_message_bytes: int = MAX_MESSAGE_BYTES
    """Largest event payload accepted (the encoded ``data``)."""
    publish_per_second: float | None = None
    """Token-bucket rate for publishes on one channel of the family; None: unlimited."""
    max_subscribers_per_pod: int | None = None
    """Subscribers of one channel of the family that each pod admits; the next gets a transient refusal (and
    reconnects, perhaps to a pod with room). None: unlimited."""
    slow_consumer: SlowConsumerPolicy = "disconnect"
    """What to do with a subscriber whose outbox is full."""
    slow_consumer_buffer: int = 1000
    """Outbox bound in events for one subscriber of this family."""
    conflate_by: str = "type"
    """With ``conflate``: events with the same value of this key replace each other (``type`` or a top-level
    field of ``data``)."""
    presence_enabled: bool = False
    """Whether subscribers are registered as present, readable with subscribe rights (``/presence``)."""
    presence_join_leave: bool = False
    """Whether subscribers hear joins and leaves of the channel's subscribers (needs :attr:`presence_enabled`)."""
    declared: bool = True
    """False for the built-in default that governs families no Channel declares."""

    def to_spec(self) -> dict[str, Any]:
        """The policy as a ``Channel`` spec (camelCase), which is also its stored JSON form."""
        # maxEvents is always written, null meaning "no count limit", so the stored form round-trips.
        history: dict[str, Any] = {"maxEvents": self.history_max_events}
        if self.history_max_age is not None:
            history["maxAge"] = format_duration(self.history_max_age)
        # idleTtl is always written, null meaning "kept forever", like maxEvents.
        history["idleTtl"] = None if self.history_idle_ttl is None else format_duration(self.history_idle_ttl)
        limits: dict[str, Any] = {"maxMessageBytes": self.max_message_bytes}
        if self.publish_per_second is not None:
            limits["publishPerSecond"] = self.publish_per_second
        if self.max_subscribers_per_pod is not None:
            limits["maxSubscribersPerPod"] = self.max_subscribers_per_pod
        return {
            "transports": list(self.transports),
            "history": history,
            "publish": {"fromClients": self.publish_from_clients, "anonymous": self.publish_anonymous},
            "subscribe": {"anonymous": self.subscribe_anonymous, "userScoped": self.subscribe_user_scoped},
            "limits": limits,
            "slowConsumer": {
                "policy": self.slow_consumer,
                "buffer": self.slow_consumer_buffer,
                "conflateBy": self.conflate_by,
            },
            "presence": {"enabled": self.presence_enabled, "joinLeave": self.presence_join_leave},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_spec(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ChannelPolicy:
        return cls.from_spec(json.loads(text))

    @classmethod
    def from_spec(cls, spec: Any) -> ChannelPolicy:
        """Validate a ``Channel`` spec and build the policy; ``ValueError`` names the first bad field."""
        spec = _section(spec, "spec")
        history = _section(spec.get("history"), "history")
        publish = _section(spec.get("publish"), "publish")
        subscribe = _section(spec.get("subscribe"), "subscribe")
        limits = _section(spec.get("limits"), "limits")
        slow = _section(spec.get("slowConsumer"), "slowConsumer")
        presence = _section(spec.get("presence"), "presence")
        defaults = cls()

        transports = spec.get("transports", list(defaults.transports))
        if not isinstance(transports, list) or not transports or any(t not in TRANSPORTS for t in transports):
            raise ValueError(f"transports must be a non-empty list of {list(TRANSPORTS)}, got {transports!r}")

        max_events = history.get("maxEvents", defaults.history_max_events)
        if max_events is not None and (not _is_int(max_events) or max_events < 0):
            raise ValueError(f"history.maxEvents must be a whole number >= 0, got {max_events!r}")
        max_age_text = history.get("maxAge")
        if max_age_text is not None and not isinstance(max_age_text, str):
            raise ValueError(f"history.maxAge must be a duration string such as 1h, got {max_age_text!r}")
        max_age = parse_duration(max_age_text) if max_age_text is not None else None
        idle_ttl = defaults.history_idle_ttl
        if "idleTtl" in history:
            idle_text = history["idleTtl"]
            if idle_text is not None and not isinstance(idle_text, str):
                raise ValueError(f"history.idleTtl must be a duration string such as 24h, got {idle_text!r}")
            idle_ttl = None if idle_text is None else parse_duration(idle_text)
            if idle_ttl is not None and idle_ttl < 1:
                raise ValueError(f"history.idleTtl must be at least 1s, got {idle_text!r}")

        max_bytes = limits.get("maxMessageBytes", defaults.max_message_bytes)
        if not _is_int(max_bytes) or not 1 <= max_bytes <= MAX_MESSAGE_BYTES:
            raise ValueError(f"limits.maxMessageBytes must be between 1 and {MAX_MESSAGE_BYTES}, got {max_bytes!r}")
        rate = limits.get("publishPerSecond")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0):
            raise ValueError(f"limits.publishPerSecond must be a number > 0, got {rate!r}")
        max_subscribers = limits.get("maxSubscribersPerPod")
        if max_subscribers is not None and (not _is_int(max_subscribers) or max_subscribers < 1):
            raise ValueError(f"limits.maxSubscribersPerPod must be a whole number >= 1, got {max_subscribers!r}")

        policy = slow.get("policy", defaults.slow_consumer)
        if policy not in SLOW_CONSUMER_POLICIES:
            raise ValueError(f"slowConsumer.policy must be one of {list(SLOW_CONSUMER_POLICIES)}, got {policy!r}")
        buffer = slow.get("buffer", defaults.slow_consumer_buffer)
        if not _is_int(buffer) or not 1 <= buffer <= 1_000_000:
            raise ValueError(f"slowConsumer.buffer must be between 1 and 1000000, got {buffer!r}")
        conflate_by = slow.get("conflateBy", defaults.conflate_by)
        if not isinstance(conflate_by, str) or not conflate_by:
            raise ValueError(f"slowConsumer.conflateBy must be a non-empty string, got {conflate_by!r}")

        presence_enabled = _flag(presence, "enabled", defaults.presence_enabled)
        join_leave = _flag(presence, "joinLeave", defaults.presence_join_leave)
        if join_leave and not presence_enabled:
            raise ValueError("presence.joinLeave needs presence.enabled: joins and leaves are those of presence")

        return cls(
            transports=tuple(transports),
            history_max_events=max_events,
            history_max_age=max_age,
            history_idle_ttl=idle_ttl,
            publish_from_clients=_flag(publish, "fromClients", defaults.publish_from_clients),
            publish_anonymous=_flag(publish, "anonymous", defaults.publish_anonymous),
            subscribe_anonymous=_flag(subscribe, "anonymous", defaults.subscribe_anonymous),
            subscribe_user_scoped=_flag(subscribe, "userScoped", defaults.subscribe_user_scoped),
            max_message_bytes=max_bytes,
            publish_per_second=float(rate) if rate is not None else None,
            max_subscribers_per_pod=max_subscribers,
            slow_consumer=policy,
            slow_consumer_buffer=buffer,
            conflate_by=conflate_by,
            presence_enabled=presence_enabled,
            presence_join_leave=join_leave,
        )

    def undeclared(self) -> ChannelPolicy:
        """This policy marked as the default for families that no Channel declares."""
        return replace(self, declared=False)


def _section(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be an object, got {value!r}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _flag(section: dict[str, Any], key: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    return value


DEFAULT_POLICY = ChannelPolicy()
"""The policy of a ``Channel`` with ``spec: {}``."""


RedisCommand = tuple[str, ...]


def store_commands(keys: Keys, family: str, policy_json: str) -> tuple[RedisCommand, ...]:
    """How a family's policy is written for one Gateway, by the operator and by ``fleetcast channel set``
    alike: the record in the policies hash, then the announcement the pods reload it on. Run as one MULTI."""
    return (("HSET", keys.policies, family, policy_json), ("PUBLISH", keys.policies_changed, family))


def delete_commands(keys: Keys, family: str) -> tuple[RedisCommand, ...]:
    """How a family's policy is removed (its channels fall back to the Gateway's default). Run as one MULTI."""
    return (("HDEL", keys.policies, family), ("PUBLISH", keys.policies_changed, family))
