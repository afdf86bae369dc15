"""WebSocket protocol v1 messages (subprotocol ``fleetcast.v1``): parsing client ops, encoding server ops.

Every message is a JSON object whose ``op`` names it. Client ops carry a ``ref`` that the server echoes in its
answer. Parsing is strict and explains itself: a :class:`ProtocolError` says what was wrong in words a person
understands, and whether the connection can go on (``fatal``: the message could not even be read).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

SUBPROTOCOL = "fleetcast.v1"
Ref = str | int | None


@dataclass(frozen=True, slots=True)
class Subscribe:
    channel: str
    since: str | None
    ref: Ref


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    channel: str
    ref: Ref


@dataclass(frozen=True, slots=True)
class Publish:
    channel: str
    data: Any
    type: str
    ref: Ref


@dataclass(frozen=True, slots=True)
class Ping:
    ref: Ref


@dataclass(frozen=True, slots=True)
class Auth:
    token: str
    ref: Ref

    def __repr__(self) -> str:  # never print a token, not even in a traceback
        return f"Auth(token=<{len(self.token)} chars>, ref={self.ref!r})"


@dataclass(frozen=True, slots=True)
class PresenceRead:
    """``presence {channel, cursor?, limit?, ref}``: one page of who is present."""

    channel: str
    cursor: int
    limit: int
    ref: Ref


@dataclass(frozen=True, slots=True)
class PresenceStats:
    channel: str
    ref: Ref


ClientMessage = Subscribe | Unsubscribe | Publish | Ping | Auth | PresenceRead | PresenceStats


class ProtocolError(ValueError):
    """A client message fleetcast cannot act on."""

    def __init__(self, message: str, *, ref: Ref = None, code: str = "bad_message", fatal: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.ref = ref
        self.code = code
        self.fatal = fatal


DEFAULT_TYPE = "message"
PRESENCE_PAGE = 100
PRESENCE_PAGE_MAX = 1000
_TYPE_MAX = 64


def valid_type(value: Any) -> bool:
    """Event types are short printable names without line breaks (they become an SSE ``event:`` line)."""
    return isinstance(value, str) and 0 < len(value) <= _TYPE_MAX and value.isprintable()


def parse(raw: Any) -> ClientMessage:
    """The client op in ``raw``, a message already read as JSON (the transport reads it, with the same reader
    HTTP bodies go through)."""
    if not isinstance(raw, dict):
        raise ProtocolError("message must be a JSON object with an 'op' field", fatal=True)
    ref = raw.get("ref")
    if ref is not None and (isinstance(ref, bool) or not isinstance(ref, str | int)):
        raise ProtocolError("'ref' must be a string or an integer", fatal=True)
    op = raw.get("op")
    if op == "subscribe":
        since = raw.get("since")
        if since is not None and not isinstance(since, str):
            raise ProtocolError("'since' must be an event id string such as '1764350000000-0'", ref=ref)
        return Subscribe(_channel(raw, ref), since, ref)
    if op == "unsubscribe":
        return Unsubscribe(_channel(raw, ref), ref)
    if op == "publish":
        if "data" not in raw:
            raise ProtocolError("publish needs a 'data' field", ref=ref)
        type_ = raw.get("type", DEFAULT_TYPE)
        if not valid_type(type_):
            raise ProtocolError(f"'type' must be a printable string of 1 to {_TYPE_MAX} characters", ref=ref)
        return Publish(_channel(raw, ref), raw["data"], type_, ref)
    if op == "ping":
        return Ping(ref)
    if op == "presence":
        cursor, limit = raw.get("cursor", 0), raw.get("limit", PRESENCE_PAGE)
        if not _whole(cursor) or cursor < 0:
            raise ProtocolError("'cursor' must be the whole number a previous presence answer gave (0: start)", ref=ref)
        if not _whole(limit) or not 1 <= limit <= PRESENCE_PAGE_MAX:
            raise ProtocolError(f"'limit' must be a whole number from 1 to {PRESENCE_PAGE_MAX}", ref=ref)
        return PresenceRead(_channel(raw, ref), cursor, limit, ref)
    if op == "presence_stats":
        return PresenceStats(_channel(raw, ref), ref)
    if op == "auth":
        token = raw.get("token")
        if not isinstance(token, str) or not token:
            raise ProtocolError("auth needs a 'token' string", ref=ref)
        return Auth(token, ref)
    if not isinstance(op, str):
        raise ProtocolError("message must have an 'op' field naming the operation", fatal=True)
    raise ProtocolError(
        f"unknown op {op[:40]!r}: expected auth, subscribe, unsubscribe, publish, presence, presence_stats or ping",
        ref=ref,
        code="unknown_op",
    )


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _channel(raw: dict[str, Any], ref: Ref) -> str:
    channel = raw.get("channel")
    if not isinstance(channel, str):
        raise ProtocolError("'channel' must be a string", ref=ref, code="invalid_channel")
    return channel


class ServerError(TypedDict):
    op: Literal["error"]
    ref: Ref
    code: str
    message: str


def _dump(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def subscribed(channel: str, ref: Ref, recovered: bool, latest: str | None) -> bytes:
    """``recovered``: the resume from ``since`` delivered everything missed (no gap)."""
    return _dump({"op": "subscribed", "channel": channel, "ref": ref, "recovered": recovered, "latest": latest})


def unsubscribed(channel: str, ref: Ref, reason: str | None = None) -> bytes:
    """The answer to ``unsubscribe`` (``reason`` None), or the server ending a subscription on its own (a
    refreshed token no longer grants it: ``reason`` is the error code)."""
    message: dict[str, Any] = {"op": "unsubscribed", "channel": channel, "ref": ref}
    if reason is not None:
        message["reason"] = reason
    return _dump(message)


def authed(ref: Ref, sub: str | None, expires_at: float | None) -> bytes:
    """The answer to ``auth``: who the connection is now, and until when (seconds since the epoch, or null)."""
    return _dump({"op": "authed", "ref": ref, "sub": sub, "expires_at": expires_at})


def event_prefix(channel: str) -> bytes:
    """The bytes before an event's id, shared by every event of a channel: ``{"op":"event","channel":...,"id":"``."""
    return b'{"op":"event","channel":' + _dump_str(channel) + b',"id":"'


def event(prefix: bytes, event_id: str, type: str, data: bytes) -> bytes:
    """An ``event`` message, assembled from pre-encoded parts so ``data`` is never decoded or re-encoded."""
    return prefix + event_id.encode() + b'","type":' + _dump_str(type) + b',"data":' + data + b"}"


def gap(channel: str, requested: str, earliest: str | None) -> bytes:
    return _dump({"op": "gap", "channel": channel, "requested": requested, "earliest": earliest})


def presence(ref: Ref, channel: str, clients: list[dict[str, Any]], cursor: int) -> bytes:
    """One page of the channel's presence; ``cursor`` 0: the last page."""
    return _dump({"op": "presence", "ref": ref, "channel": channel, "clients": clients, "cursor": cursor})


def presence_stats(ref: Ref, channel: str, clients: int, users: int) -> bytes:
    return _dump({"op": "presence_stats", "ref": ref, "channel": channel, "clients": clients, "users": users})


def published(ref: Ref, event_id: str) -> bytes:
    return _dump({"op": "published", "ref": ref, "id": event_id})


def error(ref: Ref, code: str, message: str) -> bytes:
    return _dump({"op": "error", "ref": ref, "code": code, "message": message})


def pong(ref: Ref) -> bytes:
    return _dump({"op": "pong", "ref": ref})


def reconnect(reason: str, after_ms: int) -> bytes:
    return _dump({"op": "reconnect", "reason": reason, "after_ms": after_ms})


@functools.lru_cache(maxsize=1024)
def _dump_str(value: str) -> bytes:
    """JSON for a channel name or event type: few distinct values, encoded once each (a replay of 1,000 events
    to 1,000 clients asks for the same ``"message"`` a million times)."""
    return json.dumps(value, ensure_ascii=False).encode()
