"""What the Redis broker and the Redis fleet share: bounded connections, errors wrapped, scripts, backoff.

Every connection made here has a connect and a socket timeout and no hidden retries (redis-py retries three
times with backoff by default, which turns "Redis is down" into a multi-second hang). A caller that meets a
dead Redis gets :class:`fleetcast.errors.BrokerUnavailable` within about one timeout and decides itself
whether to retry. Long-lived readers reconnect with :class:`Backoff`: capped, jittered, never a busy loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio
import redis.exceptions
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import BlockingConnectionPool, Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from fleetcast.core.backoff import server_delay_ms
from fleetcast.errors import BrokerUnavailable

log = logging.getLogger(__name__)

TRANSIENT: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError (a restart still loading its AOF)
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica during failover
    # Redis Cluster: a shard without a master (CLUSTERDOWN, MASTERDOWN), a slot in migration (TRYAGAIN), redirects
    # past redis-py's limit, no seed reachable or a slot nobody serves (RedisClusterException).
    redis.exceptions.ClusterError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.AskError,
    redis.exceptions.RedisClusterException,
    OSError,
    TimeoutError,
)
"""Errors that mean "Redis is not reachable right now", as opposed to a bug in a command."""

Client = redis.asyncio.Redis | RedisCluster
"""A client for ordinary commands: one server's, or the cluster's (which routes each command by its key)."""

REFUSED: tuple[type[BaseException], ...] = (redis.exceptions.NoPermissionError, redis.exceptions.ReadOnlyError)
"""Errors that mean "Redis answers but will not let this user do that": an ACL user without the command, key or
pub/sub channel (``NOPERM``), or a read-only replica (``READONLY``). For the gateway this is as good as down."""


def refused(exc: BaseException) -> bool:
    """Whether Redis refused a command for want of permission (also when a Lua script's call was refused)."""
    if isinstance(exc, REFUSED):
        return True
    return isinstance(exc, redis.exceptions.ResponseError) and str(exc).lstrip().startswith(("NOPERM", "READONLY"))


def make_pool(url: str, *, timeout: float, max_connections: int) -> BlockingConnectionPool:
    """A pool whose connections time out after ``timeout`` seconds and never retry by themselves.

    The pool is bounded and blocking: when every connection is busy a caller waits up to ``timeout`` for one
    instead of opening the thousand-and-first connection to Redis.
    """
    pool: BlockingConnectionPool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        # RESP2: pub/sub messages arrive as plain replies on the reader's connection (RESP3 would route them
        # to redis-py's push handler), and XREAD answers with arrays, as the readers parse them.
        protocol=2,
    )
    return pool


def make_client(pool: BlockingConnectionPool) -> redis.asyncio.Redis:
    return redis.asyncio.Redis(connection_pool=pool)


def dedicated_connection(pool: BlockingConnectionPool) -> Connection:
    """A connection with the pool's settings that the pool does not lend out: for blocking readers."""
    conn: Connection = pool.make_connection()  # type: ignore[no-untyped-call]
    return conn


async def execute(client: Client, *args: str | bytes | int | float) -> Any:
    """``client.execute_command`` with a type: the one place that calls redis-py's untyped entry point."""
    return await client.execute_command(*args)


@contextmanager
def unavailable(what: str) -> Iterator[None]:
    """Turn Redis connectivity errors and permission refusals into :class:`BrokerUnavailable` (``raise ... from``)."""
    try:
        yield
    except redis.exceptions.ResponseError as exc:  # before TRANSIENT, which holds ReadOnlyError
        if isinstance(exc, TRANSIENT) and not refused(exc):
            raise BrokerUnavailable(f"{what}: Redis is unavailable ({type(exc).__name__}: {exc})") from exc
        if not refused(exc):
            raise
        raise BrokerUnavailable(f"{what}: {refusal_message(exc)}") from exc
    except TRANSIENT as exc:
        raise BrokerUnavailable(f"{what}: Redis is unavailable ({type(exc).__name__}: {exc})") from exc


async def check_write_access(client: Client, probe_key: str) -> None:
    """Raise :class:`BrokerUnavailable` unless this user may write the Gateway's keys on a writable Redis.

    ``PEXPIRE`` of a key nobody stores is a write command that changes nothing: an ACL user without write
    commands or without the key pattern gets ``NOPERM``, a read-only replica ``READONLY``.
    """
    with unavailable("write access"):
        await execute(client, "PEXPIRE", probe_key, 1)


def refusal_message(exc: BaseException) -> str:
    """What an operator needs to read when Redis refuses the gateway's user."""
    detail = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, redis.exceptions.NoPermissionError):
        detail = f"NOPERM {detail}"  # redis-py keeps the message but drops the error code
    elif isinstance(exc, redis.exceptions.ReadOnlyError):
        detail = f"READONLY {detail}"
    return (
        f"Redis refused the gateway's user ({detail}); check the ACL user in the gateway's Redis URL: it needs "
        "write access to its Gateway's keys on a primary"
    )


@dataclass(frozen=True)
class Script:
    """A Lua script run by SHA with a fallback to its text after a restart emptied the script cache."""

    text: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.text.encode()).hexdigest())

    async def run(self, client: Client, keys: Sequence[str], args: Sequence[str | bytes | int]) -> Any:
        try:
            return await execute(client, "EVALSHA", self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return await execute(client, "EVAL", self.text, len(keys), *keys, *args)


class Backoff:
    """Delays between reconnect attempts: doubling from ``base`` up to ``cap``, each jittered into its upper
    half, so a fleet of pods does not reconnect in lockstep and no delay is ever near zero."""

    def __init__(self, *, base: float = 0.1, cap: float = 5.0) -> None:
        self._base = base
        self._cap = cap
        self._attempt = 0

    def next(self) -> float:
        delay = server_delay_ms(self._attempt, base_ms=self._base * 1000, cap_ms=self._cap * 1000) / 1000
        self._attempt = min(self._attempt + 1, 30)
        return delay

    def reset(self) -> None:
        self._attempt = 0


async def stop_task(task: asyncio.Task[Any], *, timeout: float) -> None:
    """Cancel ``task`` and wait for it, re-cancelling if it swallowed the request.

    Python 3.11's ``asyncio.wait_for``, which redis-py uses around every socket write, drops a cancellation that
    lands just as the write completes (fixed in 3.12), so one ``cancel()`` is not always enough. The task's own
    loop also checks a stop flag; this waits at most ``timeout`` seconds in total.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while not task.done():
        task.cancel()
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            log.error("task %s did not stop within %.1f s", task.get_name(), timeout)
            return
        await asyncio.wait({task}, timeout=min(0.2, remaining))
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s ended with an error", task.get_name(), exc_info=task.exception())


def text(value: Any) -> str:
    """A reply element as ``str`` (replies are bytes: the clients run with ``decode_responses=False``)."""
    return value.decode() if isinstance(value, bytes) else str(value)
