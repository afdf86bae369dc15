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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

from redis.asyncio.connection import Connection

from fleetcast.broker.fleet import CommandHandler, PolicyChangeHandler
from fleetcast.broker.redis_common import (
    TRANSIENT,
    Backoff,
    Script,
    dedicated_connection,
    execute,
    make_client,
    make_pool,
    stop_task,
    text,
    unavailable,
)
from fleetcast.contract import commands
from fleetcast.contract.heartbeat import Heartbeat
from fleetcast.contract.keys import Keys
from fleetcast.contract.policy import ChannelPolicy, delete_commands, store_commands

log = logging.getLogger(__name__)

FORGET = Script(
    """
local record = redis.call('HGET', KEYS[1], ARGV[1])
if record and cjson.decode(record).timestamp == tonumber(ARGV[2]) then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""
)
"""Remove a pod's heartbeat record only if it is still the stale one the caller saw."""

BLOCK_MS = 1000


class RedisFleet:
    """A :class:`fleetcast.broker.fleet.Fleet` on Redis, for pod ``pod`` of gateway ``gateway`` in Kubernetes
    namespace ``namespace``."""

    def __init__(self, url: str, *, gateway: str, pod: str, namespace: str = "default", timeout: float = 2.0) -> None:
        self.gateway = gateway
        self.keys = Keys(namespace, gateway)
        self._pod = pod
        self._timeout = timeout
        self._pool = make_pool(url, timeout=timeout, max_connections=4)
        self._client = make_client(self._pool)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._control_cursor: str | None = None

    @property
    def pod(self) -> str:
        return self._pod

    async def start(self, *, on_command: CommandHandler, on_policy_change: PolicyChangeHandler) -> None:
        # Commands are for the pods alive when they were sent: start after the stream's current end.
        with contextlib.suppress(*TRANSIENT):
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
        await self._client.aclose()
        await self._pool.disconnect()

    async def _control_end(self) -> str:
        last = await execute(self._client, "XREVRANGE", self.keys.control, "+", "-", "COUNT", 1)
        return text(last[0][0]) if last else "0-0"

    async def _listen_commands(self, on_command: CommandHandler) -> None:
        backoff = Backoff()
        while not self._stopping:
            conn = dedicated_connection(self._pool)
            try:
                await conn.connect()  # type: ignore[no-untyped-call]
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
                await conn.disconnect(nowait=True)
            await asyncio.sleep(backoff.next())

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
            conn = dedicated_connection(self._pool)
            try:
                await conn.connect()  # type: ignore[no-untyped-call]
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
                await conn.disconnect(nowait=True)
            await asyncio.sleep(backoff.next())

    @staticmethod
    def _notify(on_policy_change: PolicyChangeHandler, family: str | None) -> None:
        try:
            on_policy_change(family)
        except Exception:
            log.exception("policy change handler failed for %r", family)

    async def write_heartbeat(self, heartbeat: Heartbeat) -> bool:
        with unavailable("heartbeat"):
            return bool(await execute(self._client, "HSET", self.keys.pods, heartbeat.pod, heartbeat.to_json()))

    async def forget_heartbeat(self, pod: str, timestamp: float) -> None:
        with unavailable("heartbeat"):
            await FORGET.run(self._client, [self.keys.pods], [pod, repr(timestamp)])

    async def remove_heartbeat(self, pod: str) -> None:
        with unavailable("heartbeat"):
            await execute(self._client, "HDEL", self.keys.pods, pod)

    async def heartbeats(self) -> dict[str, Heartbeat]:
        with unavailable("heartbeats"):
            raw = await execute(self._client, "HGETALL", self.keys.pods)
        records = {}
        for pod, record in raw.items():
            try:
                records[text(pod)] = Heartbeat.from_json(record)
            except ValueError as exc:
                log.warning("skipping heartbeat of %s: %s", text(pod), exc)
        return records

    async def policies(self) -> dict[str, ChannelPolicy]:
        with unavailable("policies"):
            raw = await execute(self._client, "HGETALL", self.keys.policies)
        policies = {}
        for family, record in raw.items():
            try:
                policies[text(family)] = ChannelPolicy.from_json(record)
            except ValueError as exc:
                log.warning("skipping policy of %s: %s", text(family), exc)
        return policies

    async def set_policy(self, family: str, policy: ChannelPolicy) -> None:
        with unavailable("set policy"):
            async with self._client.pipeline(transaction=True) as pipe:
                for command in store_commands(self.keys, family, policy.to_json()):
                    pipe.execute_command(*command)
                await pipe.execute()

    async def delete_policy(self, family: str) -> None:
        with unavailable("delete policy"):
            async with self._client.pipeline(transaction=True) as pipe:
                for command in delete_commands(self.keys, family):
                    pipe.execute_command(*command)
                await pipe.execute()
