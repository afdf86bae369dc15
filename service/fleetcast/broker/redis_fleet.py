"""The fleet on Redis: the pod registry, the gateway's control stream, and channel policies.

Keys and record formats are those of :mod:`fleetcast.contract` (shared with the operator), all of them the
Gateway's own (:class:`fleetcast.contract.keys.Keys`): heartbeats in the hash ``keys.pods``, commands on the
stream ``keys.control``, policies in the hash ``keys.policies``, change announcements on the pub/sub channel
``keys.policies_changed``.

Two listeners run per pod, each on its own connection, each reconnecting with capped, jittered backoff: one
``XREAD BLOCK`` on the control stream from the position it had at :meth:`RedisFleet.start` (``$``), continuing
after a reconnect from the last command it saw, so a command sent during a blip still arrives; one
``SUBSCRIBE`` to policy announcements, which after every re-subscription reports ``None`` ("reload all"),
since announcements made while it was away are gone.

On a Redis Cluster (``mode="cluster"``) each of these keys lives in the slot its name hashes to (no two are ever
touched by one command, so they need no common hash tag); the listeners connect to the node serving their key and,
after losing it, re-read the topology before reconnecting, so they follow a failover. Policy announcements stay
classic ``PUBLISH``: a cluster forwards those to every node, and they are rare.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence
from typing import Any

from redis.asyncio.connection import Connection

from fleetcast.broker.fleet import CommandHandler, PolicyChangeHandler
from fleetcast.broker.redis_common import TRANSIENT, Backoff, execute, stop_task, text, unavailable
from fleetcast.broker.redis_connect import Mode, connect
from fleetcast.contract import commands
from fleetcast.contract.heartbeat import Heartbeat
from fleetcast.contract.keys import Keys
from fleetcast.contract.policy import ChannelPolicy, delete_commands, store_commands
from fleetcast.errors import BrokerUnavailable

log = logging.getLogger(__name__)

BLOCK_MS = 1000


class RedisFleet:
    """A :class:`fleetcast.broker.fleet.Fleet` on Redis, for pod ``pod`` of gateway ``gateway`` in Kubernetes
    namespace ``namespace``."""

    def __init__(
        self,
        url: str,
        *,
        gateway: str,
        pod: str,
        namespace: str = "default",
        timeout: float = 2.0,
        mode: Mode = "standalone",
    ) -> None:
        self.gateway = gateway
        self.keys = Keys(namespace, gateway)
        self._pod = pod
        self._timeout = timeout
        self._target = connect(url, mode=mode, timeout=timeout, max_connections=4)
        self._client = self._target.client
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._control_cursor: str | None = None

    @property
    def pod(self) -> str:
        return self._pod

    async def start(self, *, on_command: CommandHandler, on_policy_change: PolicyChangeHandler) -> None:
        # Commands are for the pods alive when they were sent: start after the stream's current end.
        with contextlib.suppress(*TRANSIENT, BrokerUnavailable):
            await self._target.refresh()
            self._control_cursor = await self._control_end()
        self._tasks = [
            asyncio.create_task(self._listen_commands(on_command), name="fleetcast-fleet-commands"),
            asyncio.create_task(self._listen_policies(on_policy_change), name="fleetcast-fleet-policies"),
        ]

    async def close(self) -> None:
        self._stopping = True
        for task in self._tasks:
            await stop_task(task, timeout=self._timeout + 2)
        self._tasks = []
        await self._target.close()

    async def _control_end(self) -> str:
        last = await execute(self._client, "XREVRANGE", self.keys.control, "+", "-", "COUNT", 1)
        return text(last[0][0]) if last else "0-0"

    async def _listen_commands(self, on_command: CommandHandler) -> None:
        backoff = Backoff()
        while not self._stopping:
            conn: Connection | None = None
            try:
                conn = await self._connect(self.keys.control)
                if self._control_cursor is None:  # Redis was down at start: "now" is when it came back
                    self._control_cursor = await self._control_end()
                backoff.reset()
                while not self._stopping:
                    await self._read_commands(conn, on_command)
            except TRANSIENT as exc:
                log.warning("control stream listener lost Redis (%s); reconnecting", exc)
            except Exception:
                log.exception("control stream listener failed; reconnecting")
            finally:
                await self._disconnect(conn)
            await asyncio.sleep(backoff.next())

    async def _connect(self, key: str) -> Connection:
        """A dedicated connection to the node serving ``key``; on a cluster, a failed attempt re-reads the
        topology first, so the next one goes to whichever node serves the key by then."""
        try:
            conn = self._target.connection_for(key)
            await conn.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            with contextlib.suppress(Exception):
                await self._target.refresh()
            raise
        return conn

    @staticmethod
    async def _disconnect(conn: Connection | None) -> None:
        if conn is not None:
            await conn.disconnect(nowait=True)

    async def _read_commands(self, conn: Connection, on_command: CommandHandler) -> None:
        key = self.keys.control
        assert self._control_cursor is not None
        await conn.send_command("XREAD", "COUNT", 100, "BLOCK", BLOCK_MS, "STREAMS", key, self._control_cursor)
        async with asyncio.timeout(BLOCK_MS / 1000 + self._timeout):
            reply = await conn.read_response(timeout=math.inf)
        for _, entries in reply or ():
            for entry_id, flat in entries:
                self._control_cursor = text(entry_id)
                fields = {text(k): text(v) for k, v in zip(flat[::2], flat[1::2], strict=True)}
                if fields.get("pod") != self._pod:
                    continue  # another pod's
                try:
                    command = commands.parse(fields)
                except ValueError:
                    log.warning("ignoring malformed control command %r", fields)
                    continue
                if command is None:
                    continue  # a command this version does not know
                try:
                    on_command(command)
                except Exception:
                    log.exception("command handler failed for %r", command)

    async def _listen_policies(self, on_policy_change: PolicyChangeHandler) -> None:
        backoff = Backoff()
        first = True
        while not self._stopping:
            conn: Connection | None = None
            try:
                conn = await self._connect(self.keys.policies_changed)
                await conn.send_command("SUBSCRIBE", self.keys.policies_changed)
                idle = 0.0
                while not self._stopping:
                    message = await conn.read_response(timeout=1.0)
                    if message is None:
                        idle += 1.0
                        if idle > 1.0 + self._timeout:
                            raise TimeoutError("no answer to PING on the policy subscription")
                        await conn.send_command("PING")
                        continue
                    idle = 0.0
                    kind = message[0] if isinstance(message, list) else None
                    if kind == b"subscribe":
                        backoff.reset()
                        if not first:
                            self._notify(on_policy_change, None)
                        first = False
                    elif kind == b"message":
                        self._notify(on_policy_change, text(message[2]))
            except TRANSIENT as exc:
                log.warning("policy subscription lost Redis (%s); reconnecting", exc)
            except Exception:
                log.exception("policy subscription failed; reconnecting")
            finally:
                await self._disconnect(conn)
            await asyncio.sleep(backoff.next())

    @staticmethod
    def _notify(on_policy_change: PolicyChangeHandler, family: str | None) -> None:
        try:
            on_policy_change(family)
        except Exception:
            log.exception("policy change handler failed for %r", family)

    async def _command(self, what: str, *args: str) -> Any:
        """One command through the bounded pool (on a cluster: a bounded number in flight, waited for), with Redis
        failures as BrokerUnavailable."""
        async with self._target.slot():
            with unavailable(what):
                return await execute(self._client, *args)

    async def write_heartbeat(self, heartbeat: Heartbeat) -> None:
        await self._command("heartbeat", "HSET", self.keys.pods, heartbeat.pod, heartbeat.to_json())

    async def remove_heartbeat(self, pod: str) -> None:
        await self._command("heartbeat", "HDEL", self.keys.pods, pod)

    async def heartbeats(self) -> dict[str, Heartbeat]:
        raw = await self._command("heartbeats", "HGETALL", self.keys.pods)
        records = {}
        for pod, record in raw.items():
            try:
                records[text(pod)] = Heartbeat.from_json(record)
            except ValueError as exc:
                log.warning("skipping heartbeat of %s: %s", text(pod), exc)
        return records

    async def policies(self) -> dict[str, ChannelPolicy]:
        raw = await self._command("policies", "HGETALL", self.keys.policies)
        policies = {}
        for family, record in raw.items():
            try:
                policies[text(family)] = ChannelPolicy.from_json(record)
            except ValueError as exc:
                log.warning("skipping policy of %s: %s", text(family), exc)
        return policies

    async def set_policy(self, family: str, policy: ChannelPolicy) -> None:
        async with self._target.slot():
            with unavailable("set policy"):
                await self._run(store_commands(self.keys, family, policy.to_json()))

    async def delete_policy(self, family: str) -> None:
        async with self._target.slot():
            with unavailable("delete policy"):
                await self._run(delete_commands(self.keys, family))

    async def _run(self, commands: Sequence[Sequence[str]]) -> None:
        """A policy write and its announcement: one MULTI on one server; on a cluster one by one, in order
        (redis-py refuses a MULTI naming a pub/sub channel of another slot), so a pod that hears the announcement
        reads the new record."""
        if self._target.cluster:
            for command in commands:
                await execute(self._client, *command)
            return
        async with self._client.pipeline(transaction=True) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            await pipe.execute()
