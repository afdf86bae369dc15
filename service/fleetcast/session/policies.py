"""Which policy governs a channel: the declared Channel of its family, or the default for undeclared ones."""

from __future__ import annotations

from collections.abc import Mapping

from fleetcast.contract.policy import ChannelPolicy
from fleetcast.core import channels
from fleetcast.errors import InvalidChannel, UnknownChannel


class PolicyBook:
    """Channel name -> policy. ``strict``: a family no Channel declares is refused (404 / close 4004)."""

    def __init__(self, default: ChannelPolicy, *, strict: bool = False) -> None:
        self.default = default.undeclared()
        self.strict = strict
        self._declared: dict[str, ChannelPolicy] = {}

    def replace(self, declared: Mapping[str, ChannelPolicy]) -> None:
        """Take a new set of declared policies (the operator changed a Channel)."""
        self._declared = dict(declared)

    def resolve(self, channel: str) -> ChannelPolicy:
        try:
            family = channels.validate(channel)
        except ValueError as exc:
            raise InvalidChannel(str(exc)) from None
        policy = self._declared.get(family)
        if policy is not None:
            return policy
        if self.strict:
            raise UnknownChannel(f"no Channel resource declares the family {family!r} of channel {channel!r}")
        return self.default
