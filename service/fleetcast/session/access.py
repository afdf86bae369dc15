"""Every access rule of a channel, in one place: who may subscribe (and read history), who may publish.

The rules combine what a credential names (:class:`~fleetcast.auth.principal.Principal`) with what the channel's
``Channel`` resource declares (:class:`~fleetcast.contract.policy.ChannelPolicy`):

Subscribe, read history and channel info
    granted when the principal's ``channels`` claim names the channel; or, on a user-scoped family, when the
    channel is ``<family>:<sub>`` of the principal's own ``sub``; or, on any other channel, when the policy
    admits anonymous readers. Personal channels of a user-scoped family are never anonymous.
Publish
    an API key publishes anywhere, over HTTP (backends). Otherwise the ``publish`` claim must name the
    channel, or the policy must admit anonymous publishing; over a WebSocket (a client), the policy must also
    allow publishing from clients.

A refusal is :class:`~fleetcast.errors.Unauthorized` (401 / close 4001 territory: no credential, present one)
when the principal is anonymous, else :class:`~fleetcast.errors.Forbidden` (403, or a WebSocket ``error`` with
code ``forbidden``: this credential does not grant it). Messages name the channel and nothing of the token.

Each check resolves the channel's policy once and returns it, so callers never resolve it again.
"""

from __future__ import annotations

from typing import Literal

from fleetcast.auth.principal import Principal
from fleetcast.contract.policy import ChannelPolicy
from fleetcast.errors import Forbidden, Unauthorized
from fleetcast.session.policies import PolicyBook

Via = Literal["http", "ws"]


class Access:
    def __init__(self, policies: PolicyBook, *, expiry_leeway: float = 5.0) -> None:
        self.policies = policies
        self.expiry_leeway = expiry_leeway
        """Seconds a session outlives its token's ``exp``: the clock skew tokens are verified with."""

    def read(self, principal: Principal, channel: str) -> ChannelPolicy:
        """The policy of a channel ``principal`` may read (history, info); raises otherwise."""
        policy = self.policies.resolve(channel)
        if not readable(principal, channel, policy):
            raise _refusal(principal, "reading", channel, "a token")
        return policy

    def subscribe(self, principal: Principal, channel: str, transport: Literal["ws", "sse"]) -> ChannelPolicy:
        """The policy of a channel ``principal`` may subscribe to over ``transport``; raises otherwise."""
        policy = self.read(principal, channel)
        if transport not in policy.transports:
            raise Forbidden(f"channel {channel!r} does not allow the {transport} transport")
        return policy

    def publish(self, principal: Principal, channel: str, via: Via) -> ChannelPolicy:
        """The policy of a channel ``principal`` may publish to; raises otherwise."""
        policy = self.policies.resolve(channel)
        if principal.kind == "key":
            if via != "http":
                raise Forbidden("API keys publish over HTTP")
            return policy
        if via == "ws" and not policy.publish_from_clients:
            raise Forbidden(f"clients may not publish to {channel!r}; backends publish over HTTP")
        if principal.publish.allows(channel) or policy.publish_anonymous:
            return policy
        raise _refusal(principal, "publishing to", channel, "an API key or a token")


def readable(principal: Principal, channel: str, policy: ChannelPolicy) -> bool:
    if principal.subscribe.allows(channel):
        return True
    _, colon, suffix = channel.partition(":")
    if policy.subscribe_user_scoped and colon:
        return principal.sub is not None and suffix == principal.sub
    return policy.subscribe_anonymous


def _refusal(principal: Principal, action: str, channel: str, needed: str) -> Unauthorized | Forbidden:
    if principal.anonymous:
        return Unauthorized(f"{action} channel {channel!r} needs {needed} that grants it")
    return Forbidden(f"this credential does not grant {action} channel {channel!r}")
