"""Who is asking, and which channels their credential names: the pure half of access control.

A :class:`Principal` is what a connection or request proved: nothing (anonymous), an API key (a backend), or a
verified token with a user id (``sub``) and the channel patterns of its ``channels`` and ``publish`` claims.
Patterns are deliberately few, so that a person can read a token and know what it grants:

- ``chat:room-42``: exactly that channel;
- ``chat:*``: every ``chat:<suffix>`` channel (not the bare ``chat``; name it too if it is meant);
- ``*``: every channel.

Whether a principal may read or write a channel also depends on the channel's policy (anonymous readers,
per-user channels, client publishing); :mod:`fleetcast.session.access` combines the two. Nothing here does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from fleetcast.contract.presence import INFO_MAX_BYTES
from fleetcast.core import channels

MAX_PATTERNS = 256
"""Patterns one claim may hold: a token is read once per connection, but it should stay a token, not a list."""
MAX_SUB_LENGTH = 128


class BadClaims(ValueError):
    """A token's claims are not of the documented shape; the message names the claim, never its value."""


@dataclass(frozen=True, slots=True)
class Grants:
    """Channel patterns from one claim, compiled for a set lookup per check."""

    everything: bool = False
    exact: frozenset[str] = frozenset()
    families: frozenset[str] = frozenset()
    """Families whose every suffixed channel is granted (``family:*``)."""

    def allows(self, channel: str) -> bool:
        if self.everything or channel in self.exact:
            return True
        family, colon, _ = channel.partition(":")
        return bool(colon) and family in self.families

    @classmethod
    def parse(cls, claim: str, value: Any) -> Grants:
        """The grants of a ``channels`` or ``publish`` claim (absent: none); :class:`BadClaims` if malformed."""
        if value is None:
            return NOTHING
        if not isinstance(value, list) or len(value) > MAX_PATTERNS:
            raise BadClaims(f"claim {claim!r} must be a list of at most {MAX_PATTERNS} channel patterns")
        return cls.of(claim, value)

    @classmethod
    def of(cls, claim: str, patterns: Iterable[Any]) -> Grants:
        everything = False
        exact: set[str] = set()
        families: set[str] = set()
        for pattern in patterns:
            if not isinstance(pattern, str):
                raise BadClaims(f"claim {claim!r} must hold strings")
            if pattern == "*":
                everything = True
            elif pattern.endswith(":*") and _valid_family(pattern[:-2]):
                families.add(pattern[:-2])
            elif _valid_channel(pattern):
                exact.add(pattern)
            else:
                raise BadClaims(f"claim {claim!r} holds a pattern that is neither a channel name, '<family>:*' nor '*'")
        return cls(everything, frozenset(exact), frozenset(families))


NOTHING = Grants()


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["anonymous", "token", "key"]
    sub: str | None = None
    """The user id of a token (``sub``); None for anonymous clients, keys, and tokens without one."""
    subscribe: Grants = NOTHING
    """From the ``channels`` claim: channels this principal may read whatever their policy says."""
    publish: Grants = NOTHING
    """From the ``publish`` claim."""
    expires_at: float | None = None
    """The token's ``exp`` (seconds since the epoch); None for keys, anonymous clients and tokens without one."""
    key_name: str | None = None
    """The name of the API key a backend used (for logs; the key itself is never kept here)."""
    info: Any = None
    """The token's ``info`` claim (any JSON, at most :data:`INFO_MAX_BYTES` encoded): what presence shows of
    the user besides its ``sub``."""

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"


ANONYMOUS = Principal("anonymous")


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    """A token's principal from its verified claims; :class:`BadClaims` names the first malformed claim."""
    sub = claims.get("sub")
    if sub is not None and (not isinstance(sub, str) or not 0 < len(sub) <= MAX_SUB_LENGTH):
        raise BadClaims(f"claim 'sub' must be a string of 1 to {MAX_SUB_LENGTH} characters")
    exp = claims.get("exp")
    info = claims.get("info")
    if info is not None and len(json.dumps(info, separators=(",", ":"), ensure_ascii=False).encode()) > INFO_MAX_BYTES:
        raise BadClaims(f"claim 'info' must be at most {INFO_MAX_BYTES} bytes of JSON")
    return Principal(
        "token",
        sub=sub,
        subscribe=Grants.parse("channels", claims.get("channels")),
        publish=Grants.parse("publish", claims.get("publish")),
        expires_at=float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None,
        info=info,
    )


def _valid_family(text: str) -> bool:
    try:
        return channels.validate(text) == text
    except ValueError:
        return False


def _valid_channel(text: str) -> bool:
    try:
        channels.validate(text)
    except ValueError:
        return False
    return True
