"""The Fleet protocol: how a pod takes part in its fleet (pod registry, control commands, channel policies).

A pod announces itself with :meth:`Fleet.write_heartbeat` every :data:`fleetcast.contract.heartbeat.INTERVAL_SECONDS`
and withdraws with :meth:`Fleet.remove_heartbeat` when it exits. Commands the operator addresses to this pod
(:class:`fleetcast.contract.commands.DrainCommand`, :class:`~fleetcast.contract.commands.ShedCommand`) and
announcements that channel policies changed reach the pod through callbacks given to :meth:`Fleet.start`; the
fleet owns the tasks that read them and cancels them in :meth:`Fleet.close`. Commands are those sent after
``start`` (a command is for the pods alive when it was sent), each delivered once, in the order sent. Callbacks
run on the event loop and must not block or raise.

Policy changes carry the family name, or ``None`` when the fleet may have missed announcements (it was
disconnected) and the pod should reload every policy with :meth:`Fleet.policies`.

:class:`MemoryFleet` is the embedded implementation: one process is the whole fleet, so its registry is a dict
and the commands it delivers are the ones given to :meth:`MemoryFleet.send`. The Redis implementation is
:class:`fleetcast.broker.redis_fleet.RedisFleet`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from fleetcast.contract.commands import Command
from fleetcast.contract.heartbeat import Heartbeat
from fleetcast.contract.policy import ChannelPolicy

CommandHandler = Callable[[Command], None]
"""Called with each command addressed to this pod."""
PolicyChangeHandler = Callable[[str | None], None]
"""Called with the family whose policy changed, or None: reload all."""


class Fleet(Protocol):
    """One pod's view of the fleet. See the module docstring for the semantics."""

    @property
    def pod(self) -> str:
        """This pod's name: commands addressed to it are delivered, others are not."""
        ...

    async def start(self, *, on_command: CommandHandler, on_policy_change: PolicyChangeHandler) -> None:
        """Begin listening; returns even if the store is down (listening starts when it comes back)."""
        ...

    async def close(self) -> None:
        """Stop listening and release every connection and task."""
        ...

    async def write_heartbeat(self, heartbeat: Heartbeat) -> bool:
        """Store this pod's record in the registry (raises BrokerUnavailable while the store is down); True if
        the registry had no record of the pod (first beat, a store that lost its data, a record removed by
        :meth:`forget_heartbeat`): what the pod had stored there may be gone too."""
        ...

    async def forget_heartbeat(self, pod: str, timestamp: float) -> None:
        """Remove another pod's record if it is still the one written at ``timestamp`` (a stale record of a pod
        taken for dead; a record the pod has rewritten since stays)."""
        ...

    async def remove_heartbeat(self, pod: str) -> None:
        """Remove a pod's record (at exit: the operator then stops counting the pod at once)."""
        ...

    async def heartbeats(self) -> dict[str, Heartbeat]:
        """Every readable record of this gateway's pods, stale ones included (the reader judges staleness)."""
        ...

    async def policies(self) -> dict[str, ChannelPolicy]:
        """Every stored channel policy by family; malformed records are skipped (and logged)."""
        ...

    async def set_policy(self, family: str, policy: ChannelPolicy) -> None:
        """Store one family's policy and announce the change (the operator's job; the CLI's in development)."""
        ...

    async def delete_policy(self, family: str) -> None:
        """Remove one family's policy and announce the change."""
        ...


class MemoryFleet:
    """A :class:`Fleet` for the embedded mode: everything in this process, nothing shared."""

    def __init__(self, *, gateway: str = "default", pod: str = "local") -> None:
        self.gateway = gateway
        self._pod = pod
        self._heartbeats: dict[str, Heartbeat] = {}
        self._policies: dict[str, ChannelPolicy] = {}
        self._on_command: CommandHandler | None = None
        self._on_policy_change: PolicyChangeHandler | None = None

    @property
    def pod(self) -> str:
        return self._pod

    async def start(self, *, on_command: CommandHandler, on_policy_change: PolicyChangeHandler) -> None:
        self._on_command = on_command
        self._on_policy_change = on_policy_change

    async def close(self) -> None:
        self._on_command = None
        self._on_policy_change = None

    def send(self, command: Command) -> None:
        """Deliver a command as the operator would; commands for other pods are dropped, as on Redis."""
        if self._on_command is not None and command.pod == self._pod:
            self._on_command(command)

    async def write_heartbeat(self, heartbeat: Heartbeat) -> bool:
        new = heartbeat.pod not in self._heartbeats
        self._heartbeats[heartbeat.pod] = heartbeat
        return new

    async def forget_heartbeat(self, pod: str, timestamp: float) -> None:
        record = self._heartbeats.get(pod)
        if record is not None and record.timestamp == timestamp:
            del self._heartbeats[pod]

    async def remove_heartbeat(self, pod: str) -> None:
        self._heartbeats.pop(pod, None)

    async def heartbeats(self) -> dict[str, Heartbeat]:
        return dict(self._heartbeats)

    async def policies(self) -> dict[str, ChannelPolicy]:
        return dict(self._policies)

    async def set_policy(self, family: str, policy: ChannelPolicy) -> None:
        self._policies[family] = policy
        if self._on_policy_change is not None:
            self._on_policy_change(family)

    async def delete_policy(self, family: str) -> None:
        self._policies.pop(family, None)
        if self._on_policy_change is not None:
            self._on_policy_change(family)
