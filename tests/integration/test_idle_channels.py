"""Abandoned channels leave: the embedded broker forgets them, Redis expires their streams (issue 13).

20,000 channels made by anonymous publishers (pipelined HTTP publishes on one connection), then the pod's
channel count (embedded) or Redis' key count returns to its baseline after the (shortened) idle TTL; a client
resuming on a channel that left gets the gap signal, and a watched channel stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable

import httpx
import redis

from tests.support.clients import publish, ws_client, ws_recv, ws_send, ws_subscribe
from tests.support.gateway import QUICK_STOP, GatewayProcess, gateway
from tests.support.processes import declare, redis_server

CHANNELS = 20_000
IDLE_TTL = 10.0
"""Longer than the 20,000 publishes take on 2 cores (about 5 s; twice that with coverage measuring the pod), so
that most of them are held at once."""


async def pipelined_publishes(pod: GatewayProcess, channels: list[str]) -> None:
    """POST one event to each channel, all requests written on one connection before the answers are read."""
    request = (
        "POST /v1/channels/{}/events HTTP/1.1\r\nHost: pod\r\ncontent-type: application/json\r\n"
        "content-length: 10\r\n\r\n"
        '{{"data":1}}'
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", pod.port)
    try:

        async def write() -> None:
            for start in range(0, len(channels), 500):
                writer.write("".join(request.format(c) for c in channels[start : start + 500]).encode())
                await writer.drain()

        writing = asyncio.create_task(write())
        created, tail = 0, b""
        async with asyncio.timeout(60):
            while created < len(channels):
                chunk = await reader.read(1 << 16)
                assert chunk, "the pod closed the connection"
                window = tail + chunk  # a status line may span two reads; the tail is too short to hold one
                created += window.count(b"HTTP/1.1 201 ")
                assert b"HTTP/1.1 4" not in window, chunk[:300]
                assert b"HTTP/1.1 5" not in window, chunk[:300]
                tail = window[-12:]
        await writing
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def random_channels(family: str) -> list[str]:
    return [f"{family}:{uuid.uuid4().hex[:12]}" for _ in range(CHANNELS)]


async def channels_held(pod: GatewayProcess) -> int:
    """The pod's ``fleetcast_broker_channels``, from ``/metrics`` where the pod serves it (its admin listener,
    with the admin token, where it has one)."""
    base_url, headers = getattr(pod, "admin_url", pod.url), getattr(pod, "admin_headers", {})
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10) as client:
        text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("fleetcast_broker_channels "):
            return int(float(line.split()[1]))
    raise AssertionError("no fleetcast_broker_channels metric")


async def wait_for(read: Callable[[], object], expected: object, timeout: float) -> float:
    """Poll until ``await read()`` (or ``read()``) equals ``expected``; return the seconds it took."""
    started = time.monotonic()
    value: object = None
    while time.monotonic() - started < timeout:
        value = read()
        if asyncio.iscoroutine(value):
            value = await value
        if value == expected:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"still {value!r}, expected {expected!r} after {timeout} s")


async def assert_gap_on_resume(pod: GatewayProcess, channel: str, since: str) -> None:
    """A client resuming ``channel`` after ``since`` is subscribed, not recovered, and told of the gap."""
    async with ws_client(pod.ws_url) as ws:
        await ws_send(ws, op="subscribe", channel=channel, since=since, ref=1)
        subscribed, gap = await ws_recv(ws), await ws_recv(ws)
    assert (subscribed["op"], subscribed["recovered"]) == ("subscribed", False), subscribed
    assert gap["op"] == "gap", gap
    assert (gap["channel"], gap["requested"]) == (channel, since), gap


async def test_embedded_broker_forgets_idle_channels() -> None:
    """20,000 anonymous channels leave the embedded broker after the idle TTL; a watched channel stays; a
    resume on a forgotten channel gets the gap signal."""
    with gateway("--anonymous", "--idle-channel-ttl", str(IDLE_TTL), *QUICK_STOP) as pod:
        async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client, ws_client(pod.ws_url) as watcher:
            baseline = await channels_held(pod)
            await ws_subscribe(watcher, "watched")
            kept = await publish(client, "watched", {"n": 1})
            gone = await publish(client, "abandoned", {"n": 1})
            await pipelined_publishes(pod, random_channels("flood"))
            assert await channels_held(pod) > baseline + CHANNELS // 2, "most channels are held at once"
            took = await wait_for(lambda: channels_held(pod), baseline + 1, timeout=IDLE_TTL + 10)
            assert took >= IDLE_TTL * 0.5, "channels must not be forgotten before their idle TTL"
            history = (await client.get("/v1/channels/watched/history")).json()
            assert [e["id"] for e in history["events"]] == [kept], "a watched channel keeps its history"
            await assert_gap_on_resume(pod, "abandoned", gone)
        assert "Traceback" not in pod.log()


async def test_redis_streams_expire_when_idle() -> None:
    """On Redis every stream gets the family's idle TTL, refreshed by publishes: 20,000 channels leave and
    DBSIZE returns to its baseline; a resume on an expired stream gets the gap signal."""
    with redis_server() as server:
        declare(server, "room", "--anonymous", "--publish-anonymous", "--idle-ttl", f"{IDLE_TTL:g}s")
        declare(server, "forever", "--anonymous", "--publish-anonymous", "--idle-ttl", "none")
        with (
            gateway("--redis-url", server.url, *QUICK_STOP) as pod,
            redis.Redis.from_url(server.url) as client,
        ):
            async with httpx.AsyncClient(base_url=pod.url, timeout=10) as http:
                await publish(http, "forever", {"n": 1})
                baseline = client.dbsize()
                gone = await publish(http, "room:abandoned", {"n": 1})
                key = next(iter(client.scan_iter(match="*room:abandoned*")))
                assert 0 < client.pttl(key) <= IDLE_TTL * 1000
                await asyncio.sleep(1)
                await publish(http, "room:abandoned", {"n": 2})
                assert client.pttl(key) > (IDLE_TTL - 0.5) * 1000, "each publish refreshes the idle TTL"
                assert client.pttl(next(iter(client.scan_iter(match="*forever*")))) == -1, "idleTtl none: no TTL"
                await pipelined_publishes(pod, random_channels("room"))
                assert client.dbsize() > baseline + CHANNELS // 2, "most streams exist at once"
                await wait_for(client.dbsize, baseline, timeout=IDLE_TTL + 15)
                await assert_gap_on_resume(pod, "room:abandoned", gone)
                # A publish on an expired channel starts it again; the old id still reads as a gap.
                await publish(http, "room:abandoned", {"n": 2})
                await assert_gap_on_resume(pod, "room:abandoned", gone)
                info = (await http.get("/v1/channels/room:abandoned")).json()
                assert info["policy"]["history"]["idleTtl"] == f"{IDLE_TTL:g}s", json.dumps(info)
            assert "Traceback" not in pod.log()


async def test_a_full_redis_refuses_publishes_with_503_and_keeps_history() -> None:
    """Redis at maxmemory with noeviction (the chart's setting) refuses writes: publish answers 503 with
    Retry-After, the pod stays ready and serves history; publishing works again once memory is free."""
    with redis_server() as server, gateway("--redis-url", server.url, "--anonymous", *QUICK_STOP) as pod:
        async with httpx.AsyncClient(base_url=pod.url, timeout=10) as http:
            kept = await publish(http, "full", {"n": 1})
            with redis.Redis.from_url(server.url) as client:
                client.config_set("maxmemory-policy", "noeviction")
                client.config_set("maxmemory", 1)
                refused = await http.post("/v1/channels/full/events", json={"data": {"n": 2}})
                assert refused.status_code == 503, refused.text
                assert refused.json()["error"]["code"] == "broker_unavailable"
                assert "Redis is full" in refused.json()["error"]["message"]
                assert "retry-after" in refused.headers
                assert (await http.get("/readyz")).status_code == 200, "a full Redis still serves reads"
                history = (await http.get("/v1/channels/full/history")).json()
                assert [e["id"] for e in history["events"]] == [kept]
                client.config_set("maxmemory", 0)
            await publish(http, "full", {"n": 3})
        assert "Traceback" not in pod.log()
