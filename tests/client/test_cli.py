"""``fleetcast publish`` and ``fleetcast tail`` as real processes against real pods.

Resume is proven on two pods sharing one redis-server: ``tail`` reads from pod A, A is killed, events are
published through pod B while A is down, A comes back on the same port, and ``tail`` must print every event
exactly once, in order, which it can only do by resuming from the last id it printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tests.support.gateway import QUICK_STOP, GatewayProcess, gateway
from tests.support.processes import PYTHON, RedisServer, declare, free_port
from tests.support.tokens import Keys

LINE_TIMEOUT = 20.0
"""Seconds ``tail`` may take to print the next line: a reconnect after a pod restart backs off up to a few s."""


def fleetcast(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one ``fleetcast`` command to completion, its environment free of the caller's FLEETCAST_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCAST_")}
    return subprocess.run(
        [PYTHON, "-m", "fleetcast", *args], input=stdin, capture_output=True, text=True, timeout=30,
        env={**clean, **(env or {})},
    )  # fmt: skip


def published(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


class Tail:
    """A running ``fleetcast tail``; :meth:`lines` reads what it printed, parsed."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def lines(self, n: int) -> list[dict[str, Any]]:
        assert self.proc.stdout is not None
        out = []
        for _ in range(n):
            line = await asyncio.wait_for(self.proc.stdout.readline(), LINE_TIMEOUT)
            assert line, f"tail ended early: {await self.stderr()}"
            out.append(json.loads(line))
        return out

    async def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: the exit status and whatever else it printed."""
        self.proc.send_signal(signal.SIGINT)
        rest, err = await asyncio.wait_for(self.proc.communicate(), 10)
        assert not rest.strip(), f"unexpected output after the last line read: {rest!r}"
        return self.proc.returncode or 0, err.decode()

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        if self.proc.returncode is None:
            self.proc.kill()
        return (await asyncio.wait_for(self.proc.stderr.read(), 5)).decode()


@asynccontextmanager
async def tail(*args: str) -> AsyncIterator[Tail]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCAST_")}
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "fleetcast", "tail", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**clean, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        yield Tail(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.communicate()


@pytest.fixture
def two_pods(redis: RedisServer) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    with gateway("--redis-url", redis.url, *QUICK_STOP) as a, gateway("--redis-url", redis.url, *QUICK_STOP) as b:
        yield a, b


@pytest.mark.parametrize("transport", ["--ws", "--sse"])
async def test_tail_prints_every_event_once_in_order_across_a_pod_restart(
    two_pods: tuple[GatewayProcess, GatewayProcess], transport: str
) -> None:
    """publish prints ids; tail prints them as JSON lines, and after its pod is killed and restarted it resumes
    from the last id printed: the events published meanwhile (through the other pod) appear once, in order."""
    a, b = two_pods
    ids = [published(fleetcast("publish", "news:cli", '{"n": 0}', "--url", b.url, "--type", "headline"))]
    async with tail("news:cli", "--since", "0-0", "--url", a.url, transport) as reader:
        before = await reader.lines(1)
        ids += [published(fleetcast("publish", "news:cli", json.dumps({"n": n}), "--url", b.url)) for n in (1, 2)]
        before += await reader.lines(2)
        a.kill()
        ids += [published(fleetcast("publish", "news:cli", json.dumps({"n": n}), "--url", b.url)) for n in (3, 4, 5)]
        a.start()
        after = await reader.lines(3)
        status, err = await reader.interrupt()
    assert status == 0, err
    assert before[0] == {"channel": "news:cli", "id": ids[0], "type": "headline", "data": {"n": 0}}
    assert [line["id"] for line in before + after] == ids
    assert [line["data"] for line in before + after] == [{"n": n} for n in range(6)]
    assert "Traceback" not in err


async def test_tail_prints_a_gap_as_a_line_of_its_own(redis: RedisServer) -> None:
    """Resuming from an id the channel no longer holds prints the gap signal, then the events from the oldest."""
    declare(redis, "short", "--max-events", "2", "--anonymous", "--publish-anonymous")
    with gateway("--redis-url", redis.url, *QUICK_STOP) as pod:
        ids = [published(fleetcast("publish", "short:x", str(n), "--url", pod.url)) for n in range(5)]
        async with tail("short:x", "--since", ids[0], "--url", pod.url, "--sse") as reader:
            gap, *events = await reader.lines(3)
            await reader.interrupt()
    assert gap["channel"] == "short:x"
    assert gap["gap"]["requested"] == ids[0]
    assert [e["id"] for e in events] == ids[-2:]


@pytest.fixture(scope="module")
def keys() -> Iterator[Keys]:
    made = Keys()
    yield made
    made.cleanup()


@pytest.fixture(scope="module")
def secured(keys: Keys) -> Iterator[GatewayProcess]:
    """A pod that wants credentials: an API key or a token for publishing, a token for private channels."""
    with gateway(*keys.pod_args(), *QUICK_STOP) as pod:
        yield pod


def test_publish_says_what_is_wrong_with_an_exit_status_per_kind(secured: GatewayProcess, keys: Keys) -> None:
    """No credential or a wrong one: 3 and a hint; too big: 2; nobody listening: 5; bad JSON: 2, never sent."""
    url = ("--url", secured.url)
    missing = fleetcast("publish", "chat:a", "{}", *url)
    assert missing.returncode == 3
    assert "401" in missing.stderr
    assert "--key or FLEETCAST_PUBLISH_KEY" in missing.stderr
    wrong = fleetcast("publish", "chat:a", "{}", *url, "--key", "not-the-key")
    assert wrong.returncode == 3, wrong.stderr
    other = keys.hs256(sub="u1", publish=["other:*"])
    forbidden = fleetcast("publish", "chat:a", "{}", *url, env={"FLEETCAST_TOKEN": other})
    assert (forbidden.returncode, "403" in forbidden.stderr) == (3, True), forbidden.stderr
    assert other not in forbidden.stderr + forbidden.stdout
    too_big = fleetcast("publish", "chat:a", "-", *url, "--key", keys.api_key, stdin=json.dumps("x" * 1_200_000))
    assert (too_big.returncode, "413" in too_big.stderr) == (2, True), too_big.stderr
    not_json = fleetcast("publish", "chat:a", "{oops", *url, "--key", keys.api_key)
    assert (not_json.returncode, "not JSON" in not_json.stderr) == (2, True)
    closed = fleetcast("publish", "chat:a", "{}", "--url", f"http://127.0.0.1:{free_port()}")
    assert (closed.returncode, "connection refused" in closed.stderr) == (5, True), closed.stderr
    for result in (missing, wrong, forbidden, too_big, not_json, closed):
        assert "Traceback" not in result.stderr
        assert result.stdout == ""


def test_publish_with_the_key_from_the_environment_and_an_idempotency_key(secured: GatewayProcess, keys: Keys) -> None:
    """FLEETCAST_URL and FLEETCAST_PUBLISH_KEY stand in for the flags; a retried idempotency key gets the first id."""
    env = {"FLEETCAST_URL": secured.url, "FLEETCAST_PUBLISH_KEY": keys.api_key}
    first = published(fleetcast("publish", "chat:a", '{"n": 1}', "--idempotency-key", "k-1", env=env))
    again = published(fleetcast("publish", "chat:a", '{"n": 1}', "--idempotency-key", "k-1", env=env))
    assert first == again


@pytest.mark.parametrize("transport", ["--ws", "--sse"])
async def test_tail_with_a_token_and_without(secured: GatewayProcess, keys: Keys, transport: str) -> None:
    """--token opens a private channel; without one tail stops at once with status 3 and the server's reason."""
    channel = f"chat:{transport.strip('-')}"
    async with tail(channel, "--url", secured.url, "--since", "0-0", transport) as refused:
        assert refused.proc.stdout is not None
        status = await asyncio.wait_for(refused.proc.wait(), 15)
        err = await refused.stderr()
    assert status == 3, err
    assert err.count("needs a token") == 1 or err.count("401") == 1, err
    assert "--token or FLEETCAST_TOKEN" in err
    token = keys.hs256(sub="u1", channels=["chat:*"])
    published(fleetcast("publish", channel, '"hello"', "--url", secured.url, "--key", keys.api_key))
    async with tail(channel, "--url", secured.url, "--since", "0-0", "--token", token, transport) as reader:
        [line] = await reader.lines(1)
        assert (await reader.interrupt())[0] == 0
    assert line["data"] == "hello"


def test_publish_says_try_later_for_a_rate_limit_and_a_broker_outage(redis: RedisServer) -> None:
    """429 (the channel's publishPerSecond, one per 10 s here) and 503 (Redis gone): exit 4, "retry after"."""
    declare(redis, "slow", "--publish-per-second", "0.1", "--publish-anonymous", "--anonymous")
    with gateway("--redis-url", redis.url, *QUICK_STOP) as pod:
        results = [fleetcast("publish", "slow:a", "1", "--url", pod.url) for _ in range(2)]
        limited = [r for r in results if r.returncode != 0]
        assert limited, [r.stdout for r in results]
        assert limited[0].returncode == 4, limited[0].stderr
        assert "429" in limited[0].stderr
        assert "retry after" in limited[0].stderr
        redis.stop()
        down = fleetcast("publish", "other:a", "1", "--url", pod.url)
    assert down.returncode == 4, down.stderr
    assert "503" in down.stderr
    assert "cannot reach its broker" in down.stderr
