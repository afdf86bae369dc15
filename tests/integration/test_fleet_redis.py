"""A fleet over Redis Streams (issue 3): pods as processes on one real redis-server, clients on every pod.

Each test owns its redis-server and pods (started and stopped by PID). Pods run with a short drain so that
stopping them is quick; the tests that kill or restart things bound every wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis

from fleetcast.client import Event, SseClient, WsClient
from fleetcast.contract.heartbeat import Heartbeat
from fleetcast.contract.keys import Keys
from tests.support.clients import (
    collect_sse,
    sse_frames,
    wait_subscribers,
    ws_client,
    ws_recv,
    ws_send,
    ws_subscribe,
)
from tests.support.gateway import GatewayProcess
from tests.support.processes import redis_server

GATEWAY = "fleet-test"


@contextlib.asynccontextmanager
async def pods(redis_url: str, *names: str) -> AsyncIterator[list[GatewayProcess]]:
    """Pods of one gateway on ``redis_url``, started and stopped in parallel; their logs are printed on failure."""
    common = ["--redis-url", redis_url, "--gateway", GATEWAY, "--drain-propagation", "0", "--drain-timeout", "2"]
    fleet = [GatewayProcess(args=[*common, "--pod-name", name]) for name in names]
    try:
        await asyncio.gather(*(asyncio.to_thread(pod.start) for pod in fleet))
        yield fleet
    except BaseException:
        for pod in fleet:
            print(f"--- log of pod {pod.args[-1]} on port {pod.port} ---\n{pod.log()[-3000:]}")
        raise
    finally:
        await asyncio.gather(*(asyncio.to_thread(pod.cleanup) for pod in fleet))


async def eventually(condition: Callable[[], Awaitable[bool]], *, timeout: float, what: str) -> float:
    """Poll ``condition`` every 50 ms until it holds; return how long it took, fail after ``timeout`` s."""
    began = time.monotonic()
    while not await condition():
        assert time.monotonic() - began < timeout, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - began


async def status(url: str, path: str) -> int:
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        return (await http.get(path)).status_code


@dataclass
class Recorder:
    """One client's view of its channel: the ``n`` of each event, and gap signals, in arrival order."""

    channel: str
    seen: list[int] = field(default_factory=list)
    log: list[tuple[str, Any]] = field(default_factory=list)

    def on_event(self, event: Event) -> None:
        self.seen.append(event.data["n"])
        self.log.append(("event", event.data["n"]))

    def on_gap(self, channel: str, requested: str, earliest: str | None) -> None:
        self.log.append(("gap", requested))


def clients_for(recorders: list[Recorder], urls: Callable[[int], tuple[list[str], list[str]]]) -> list[Any]:
    """Half WebSocket, half SSE reference clients; ``urls(i)`` gives client i its (ws, http) URL lists."""
    clients: list[WsClient | SseClient] = []
    for i, r in enumerate(recorders):
        ws_urls, http_urls = urls(i)
        if i % 2 == 0:
            clients.append(WsClient(ws_urls, [r.channel], on_event=r.on_event, on_gap=r.on_gap))
        else:
            clients.append(SseClient(http_urls, r.channel, on_event=r.on_event, on_gap=r.on_gap))
    return clients


async def connections(url: str) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        counts: dict[str, int] = (await http.get("/readyz")).json()["connections"]
        return counts


async def test_events_published_on_one_pod_reach_ws_and_sse_subscribers_on_the_others_in_order() -> None:
    """Three pods on one Redis: 50 events published on pod A reach a WS and an SSE subscriber on each of pods B
    and C, all of them, in publish order."""
    channel = "fleet:order"
    with redis_server() as server:
        async with (
            pods(server.url, "a", "b", "c") as (pod_a, pod_b, pod_c),
            httpx.AsyncClient(base_url=pod_a.url, timeout=5) as http,
        ):
            # A first event fixes a position: SSE subscribers resume after it, so none can miss what follows.
            response = await http.post(f"/v1/channels/{channel}/events", json={"data": {"n": -1}})
            start = response.json()["id"]
            sse_tasks = [
                asyncio.create_task(collect_sse(pod.url, channel, count=50, last_event_id=start, timeout=20))
                for pod in (pod_b, pod_c)
            ]
            async with ws_client(pod_b.ws_url) as ws_b, ws_client(pod_c.ws_url) as ws_c:
                for ws in (ws_b, ws_c):
                    await ws_subscribe(ws, channel)
                published = []
                for n in range(50):
                    response = await http.post(f"/v1/channels/{channel}/events", json={"data": {"n": n}})
                    assert response.status_code == 201, response.text
                    published.append(response.json()["id"])
                for ws in (ws_b, ws_c):
                    received: list[tuple[str, int]] = []
                    while len(received) < 50:
                        message = await ws_recv(ws, timeout=10)
                        assert message["op"] == "event", message
                        received.append((message["id"], message["data"]["n"]))
                    assert received == list(zip(published, range(50), strict=True))
            for frames in await asyncio.gather(*sse_tasks):
                assert [(f.event, f.id, f.json()["n"]) for f in frames] == [
                    ("message", i, n) for n, i in enumerate(published)
                ]


async def test_killed_pod_clients_resume_on_the_others_without_loss_or_duplicates() -> None:
    """kill -9 of a pod carrying 100 subscribers (WS and SSE) while publishing goes on: each client reconnects to
    the next pod of its list with its last id and ends with a contiguous, duplicate-free sequence."""
    channels = [f"kill:c{i}" for i in range(5)]
    recorders = [Recorder(channels[i % len(channels)]) for i in range(100)]
    sent = dict.fromkeys(channels, 0)
    stop = asyncio.Event()

    async def publish_forever(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            while not stop.is_set():
                for channel in channels:
                    response = await http.post(f"/v1/channels/{channel}/events", json={"data": {"n": sent[channel]}})
                    assert response.status_code == 201, response.text
                    sent[channel] += 1
                await asyncio.sleep(0.02)

    with redis_server() as server:
        async with pods(server.url, "a", "b", "c") as (pod_a, pod_b, pod_c):
            others = [(pod_b, pod_c), (pod_c, pod_b)]

            def urls(i: int) -> tuple[list[str], list[str]]:
                order = [pod_a, *others[(i // 2) % 2]]  # victim first; then B or C, alternately
                return [p.ws_url for p in order], [p.url for p in order]

            clients = clients_for(recorders, urls)
            publisher: asyncio.Task[None] | None = None
            try:
                for client in clients:
                    client.start()
                await eventually(
                    lambda: _equals(connections(pod_a.url), {"ws": 50, "sse": 50}), timeout=15, what="100 on pod A"
                )
                publisher = asyncio.create_task(publish_forever(pod_b.url))
                await asyncio.sleep(1.0)
                pod_a.kill()
                await asyncio.sleep(2.0)
                stop.set()
                await publisher
                await eventually(
                    lambda: _true(all(len(r.seen) >= sent[r.channel] for r in recorders)),
                    timeout=20,
                    what="every client caught up",
                )
                await asyncio.sleep(0.3)  # anything extra (a duplicate) would arrive now
                for i, (recorder, client) in enumerate(zip(recorders, clients, strict=True)):
                    kind = type(client).__name__
                    assert recorder.seen == list(range(sent[recorder.channel])), f"client {i} ({kind})"
                    assert (client.stats.duplicates, client.stats.gaps) == (0, 0), f"client {i} ({kind})"
                    assert client.stats.reconnects >= 1, f"client {i} ({kind})"
                    assert client.url in urls(i)[i % 2][1:], f"client {i} ({kind}) did not move to B or C"
                spread = [await connections(pod.url) for pod in (pod_b, pod_c)]
                assert all(counts == {"ws": 25, "sse": 25} for counts in spread), spread
            finally:
                stop.set()
                if publisher is not None and not publisher.done():
                    publisher.cancel()
                await asyncio.gather(*(client.close() for client in clients))


async def test_redis_restart_with_aof_loses_no_acknowledged_publish() -> None:
    """Redis (AOF, fsync always) restarts during publishing: every publish answered 201 reaches every subscriber,
    in order and once; publishes during the outage get 503 with Retry-After; both pods turn unready, then ready
    again without a restart, and stay live (healthz 200 throughout)."""
    channel = "aof:c"
    recorders = [Recorder(channel) for _ in range(20)]
    acked: list[int] = []
    refused: list[httpx.Response] = []
    stop = asyncio.Event()

    async def publish_forever(url: str) -> None:
        n = 0
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            while not stop.is_set():
                response = await http.post(f"/v1/channels/{channel}/events", json={"data": {"n": n}})
                if response.status_code == 201:
                    acked.append(n)
                else:
                    refused.append(response)
                    await asyncio.sleep(0.1)
                n += 1
                await asyncio.sleep(0.01)

    with redis_server(appendonly=True) as server:
        async with pods(server.url, "a", "b") as (pod_a, pod_b):
            both = [pod_a, pod_b]

            def urls(i: int) -> tuple[list[str], list[str]]:
                order = both if i % 4 < 2 else both[::-1]
                return [p.ws_url for p in order], [p.url for p in order]

            clients = clients_for(recorders, urls)
            publisher: asyncio.Task[None] | None = None
            try:
                for client in clients:
                    client.start()
                await eventually(
                    lambda: _total_is(both, 20),
                    timeout=10,
                    what="20 clients connected",
                )
                publisher = asyncio.create_task(publish_forever(pod_a.url))
                await asyncio.sleep(0.5)
                restart = asyncio.create_task(asyncio.to_thread(server.restart, downtime=1.5))
                await eventually(lambda: _is(status(pod_b.url, "/readyz"), 503), timeout=3, what="B unready")
                assert await status(pod_b.url, "/healthz") == 200
                await restart
                for pod in both:
                    await eventually(lambda p=pod: _is(status(p.url, "/readyz"), 200), timeout=10, what="ready")
                count = len(acked)
                await eventually(lambda: _true(len(acked) >= count + 20), timeout=10, what="publishing resumed")
                stop.set()
                await publisher
                await eventually(
                    lambda: _true(all(set(acked) <= set(r.seen) for r in recorders)),
                    timeout=20,
                    what="every acknowledged publish delivered",
                )
                await asyncio.sleep(0.3)
            finally:
                stop.set()
                if publisher is not None and not publisher.done():
                    publisher.cancel()
                await asyncio.gather(*(client.close() for client in clients))
    assert refused, "no publish fell into the outage"
    for response in refused:
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "broker_unavailable"
        assert int(response.headers["Retry-After"]) >= 1
    for i, (recorder, client) in enumerate(zip(recorders, clients, strict=True)):
        # A 503 may still have been appended (Redis died after the write, before the answer): allowed, once, in order.
        assert recorder.seen == sorted(set(recorder.seen)), f"client {i} out of order or repeated"
        assert (client.stats.duplicates, client.stats.gaps) == (0, 0), f"client {i}"


async def test_redis_restart_without_persistence_signals_gaps_to_live_and_resuming_clients() -> None:
    """Redis restarts without persistence: live subscribers (WS and SSE, staying connected) get one gap signal
    before the events published after the restart; clients resuming from a pre-restart id get the gap first."""
    channel = "lost:c"
    recorders = [Recorder(channel) for _ in range(4)]
    with redis_server(appendonly=False) as server:
        async with pods(server.url, "a", "b") as (pod_a, pod_b):
            clients = clients_for(recorders, lambda i: ([pod_b.ws_url], [pod_b.url]))
            try:
                for client in clients:
                    client.start()
                await eventually(lambda: _equals(connections(pod_b.url), {"ws": 2, "sse": 2}), timeout=10, what="4")
                await wait_subscribers(pod_b.url, channel, 4)
                async with httpx.AsyncClient(base_url=pod_a.url, timeout=5) as http:
                    before = []
                    for n in range(5):
                        before.append(
                            (await http.post(f"/v1/channels/{channel}/events", json={"data": {"n": n}})).json()["id"]
                        )
                    await eventually(lambda: _true(all(len(r.seen) == 5 for r in recorders)), timeout=5, what="5")
                    await asyncio.to_thread(server.restart)
                    for pod in (pod_a, pod_b):
                        await eventually(lambda p=pod: _is(status(p.url, "/readyz"), 200), timeout=10, what="ready")
                    after = []
                    for n in range(5, 8):
                        response = await http.post(f"/v1/channels/{channel}/events", json={"data": {"n": n}})
                        assert response.status_code == 201, response.text
                        after.append(response.json()["id"])
                await eventually(lambda: _true(all(len(r.seen) == 8 for r in recorders)), timeout=10, what="8")
                await asyncio.sleep(0.3)
                for i, (recorder, client) in enumerate(zip(recorders, clients, strict=True)):
                    expected = [
                        *(("event", n) for n in range(5)),
                        ("gap", before[-1]),
                        *(("event", n) for n in range(5, 8)),
                    ]
                    assert recorder.log == expected, f"live client {i} ({type(client).__name__})"
                    assert client.stats.reconnects == 0
            finally:
                await asyncio.gather(*(client.close() for client in clients))

            # Resuming from before the restart: the gap comes first, then what the new stream holds.
            async with ws_client(pod_a.ws_url) as ws:
                reply = await ws_subscribe(ws, channel, since=before[2])
                assert reply["recovered"] is False
                assert await ws_recv(ws) == {
                    "op": "gap",
                    "channel": channel,
                    "requested": before[2],
                    "earliest": after[0],
                }
                assert [(await ws_recv(ws))["id"] for _ in after] == after
            frames = await collect_sse(pod_b.url, channel, count=4, last_event_id=before[2], timeout=10)
            assert (frames[0].event, frames[0].json()) == (
                "fleetcast.gap",
                {"requested": before[2], "earliest": after[0]},
            )
            assert [f.id for f in frames[1:]] == after


async def test_heartbeats_of_every_pod_are_in_redis_and_follow_connection_changes() -> None:
    """Every pod's heartbeat is in the gateway's pod hash with the documented schema; connecting and
    disconnecting clients shows in the counts within 3 s."""
    with redis_server() as server:
        async with pods(server.url, "a", "b", "c") as (_, pod_b, pod_c):
            store = redis.Redis.from_url(server.url, socket_timeout=2)
            try:

                def beats() -> dict[str, Heartbeat]:
                    raw = store.hgetall(Keys("default", GATEWAY).pods)
                    return {k.decode(): Heartbeat.from_json(v) for k, v in raw.items()}

                async def counts_are(expected: dict[str, dict[str, int]]) -> bool:
                    now = await asyncio.to_thread(beats)
                    return all(now[name].connections == want for name, want in expected.items())

                await eventually(lambda: _true(len(beats()) == 3), timeout=3, what="three heartbeats")
                for name, beat in beats().items():
                    assert (beat.pod, beat.gateway, beat.draining, beat.ready) == (name, GATEWAY, False, True)
                    assert time.time() - beat.timestamp < 3
                idle = {"ws": 0, "sse": 0}
                async with ws_client(pod_b.ws_url) as ws1, ws_client(pod_b.ws_url) as ws2:
                    await ws_subscribe(ws1, "beat:c")
                    await ws_subscribe(ws2, "beat:c")
                    async with (
                        httpx.AsyncClient(base_url=pod_c.url, timeout=None) as http,
                        http.stream("GET", "/v1/channels/beat:c/events", headers={"Accept": "text/event-stream"}),
                    ):
                        changed = time.monotonic()
                        want = {"b": {"ws": 2, "sse": 0}, "c": {"ws": 0, "sse": 1}, "a": idle}
                        await eventually(lambda: counts_are(want), timeout=3, what="counts after connecting")
                        assert time.monotonic() - changed < 3
                        assert beats()["b"].subscriptions == {"beat": 2}
                changed = time.monotonic()
                await eventually(lambda: counts_are(dict.fromkeys("abc", idle)), timeout=3, what="counts after leaving")
                assert time.monotonic() - changed < 3
            finally:
                store.close()


async def test_redis_down_sse_gets_reconnect_ws_gets_error_publish_gets_503() -> None:
    """With Redis down: readyz 503 and healthz 200; an SSE request gets 200, ``retry:``, ``fleetcast.reconnect``
    and the end of the stream (never a 5xx); a WS subscribe gets ``error`` ``broker_unavailable`` and the
    connection stays usable; a publish gets 503 with Retry-After. Redis back: ready again, no restart."""
    with redis_server() as server:
        async with pods(server.url, "a") as (pod,):
            await asyncio.to_thread(server.stop)
            await eventually(lambda: _is(status(pod.url, "/readyz"), 503), timeout=5, what="unready")
            assert await status(pod.url, "/healthz") == 200
            async with httpx.AsyncClient(base_url=pod.url, timeout=10) as http:
                began = time.monotonic()
                async with http.stream(
                    "GET", "/v1/channels/down:c/events", headers={"Accept": "text/event-stream"}
                ) as response:
                    assert response.status_code == 200
                    assert response.headers["content-type"].startswith("text/event-stream")
                    items = [item async for item in sse_frames(response)]  # ends: the server closed the stream
                assert time.monotonic() - began < 5
                frames = [item for item in items if not isinstance(item, int)]
                retries = [item for item in items if isinstance(item, int)]
                assert [f.event for f in frames] == ["fleetcast.reconnect"]
                assert frames[0].json()["reason"] == "broker unavailable"
                assert retries, "no retry: line"
                assert retries[-1] == frames[0].json()["after_ms"] > 0

                response = await http.post("/v1/channels/down:c/events", json={"data": 1})
                assert response.status_code == 503
                assert response.json()["error"]["code"] == "broker_unavailable"
                assert int(response.headers["Retry-After"]) >= 1

            async with ws_client(pod.ws_url) as ws:
                await ws_send(ws, op="subscribe", channel="down:c", ref=7)
                error = await ws_recv(ws)
                assert (error["op"], error["ref"], error["code"]) == ("error", 7, "broker_unavailable")
                await ws_send(ws, op="ping", ref=8)
                assert await ws_recv(ws) == {"op": "pong", "ref": 8}

            await asyncio.to_thread(server.start)
            await eventually(lambda: _is(status(pod.url, "/readyz"), 200), timeout=10, what="ready again")
            async with httpx.AsyncClient(base_url=pod.url, timeout=10) as http:
                assert (await http.post("/v1/channels/down:c/events", json={"data": 2})).status_code == 201


async def _total_is(fleet: list[GatewayProcess], expected: int) -> bool:
    return sum([sum((await connections(pod.url)).values()) for pod in fleet]) == expected


async def _true(value: bool) -> bool:
    return value


async def _is(call: Awaitable[int], expected: int) -> bool:
    return await call == expected


async def _equals(call: Awaitable[dict[str, int]], expected: dict[str, int]) -> bool:
    return await call == expected
