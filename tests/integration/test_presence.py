"""Presence (issue 16): who is in a channel, across pods on one real Redis; rights; the embedded broker too.

Pods are processes, clients real WebSocket and SSE connections; every identity comes from a signed token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from tests.support.clients import publish, sse_frames, ws_client, ws_recv, ws_send, ws_subscribe
from tests.support.gateway import QUICK_STOP, GatewayProcess, gateway
from tests.support.processes import RedisServer, declare, redis_server
from tests.support.tokens import Keys

ROOM = "room:lobby"
LEASE = "10"


@pytest.fixture
def fleet(keys: Keys) -> Iterator[tuple[RedisServer, GatewayProcess, GatewayProcess]]:
    with redis_server() as redis:
        declare(redis, "room", "--presence", "--join-leave")
        declare(redis, "quiet")
        common = ["--redis-url", redis.url, *keys.pod_args(), "--presence-lease-seconds", LEASE, *QUICK_STOP]
        with gateway(*common, "--pod-name", "a") as pod_a, gateway(*common, "--pod-name", "b") as pod_b:
            yield redis, pod_a, pod_b


class Member:
    """One client: its WebSocket and every presence message and event it received, in order."""

    def __init__(self, sub: str, client: str) -> None:
        self.sub = sub
        self.client = client
        self.seen: list[tuple[str, Any]] = []
        self.ws: ClientConnection | None = None
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    def start_reading(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        async for raw in self.ws:
            message = json.loads(raw)
            if message["op"] in ("join", "leave"):
                self.seen.append((message["op"], message["client"]))
            elif message["op"] == "event":
                self.seen.append(("event", message["data"]))
            else:
                await self.replies.put(message)

    async def ask(self, **op: Any) -> dict[str, Any]:
        assert self.ws is not None
        await ws_send(self.ws, **op)
        return await asyncio.wait_for(self.replies.get(), 10)

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


def token(keys: Keys, sub: str, **claims: Any) -> str:
    return keys.hs256(sub=sub, channels=["room:*", "quiet:*"], **claims)


@contextlib.asynccontextmanager
async def member(keys: Keys, pod: GatewayProcess, sub: str, client: str, **claims: Any) -> AsyncIterator[Member]:
    joined = Member(sub, client)
    async with ws_client(f"{pod.ws_url}?token={token(keys, sub, **claims)}&client={client}") as ws:
        joined.ws = ws
        await ws_subscribe(ws, ROOM)
        joined.start_reading()
        try:
            yield joined
        finally:
            await joined.stop()


async def until(condition: Any, timeout: float, what: str) -> float:
    loop = asyncio.get_running_loop()
    began = loop.time()
    while not await condition():
        assert loop.time() - began < timeout, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.05)
    return loop.time() - began


async def present(http: httpx.AsyncClient, channel: str, bearer: str) -> list[dict[str, Any]]:
    """Every page of the channel's presence, read over REST."""
    clients: list[dict[str, Any]] = []
    cursor = 0
    while True:
        response = await http.get(
            f"/v1/channels/{channel}/presence", params={"cursor": cursor, "limit": 2},
            headers={"Authorization": f"Bearer {bearer}"},
        )  # fmt: skip
        assert response.status_code == 200, response.text
        page = response.json()
        clients += page["clients"]
        cursor = page["cursor"]
        if cursor == 0:
            return clients


PEOPLE = [("ann", "ann-tab-0001", "a"), ("bob", "bob-tab-0001", "a"), ("cy", "cy-tab-00001", "a"),
          ("dee", "dee-tab-0001", "b"), ("ann", "ann-phone-001", "b")]  # fmt: skip


async def test_two_pods_list_five_members_and_every_client_hears_later_joins_in_channel_order(
    fleet: tuple[RedisServer, GatewayProcess, GatewayProcess], keys: Keys
) -> None:
    """Three clients on pod A and two on pod B: presence read on either pod lists all five with their subs, the
    stats count 5 clients and 4 users, and each client heard the joins after its own, an event in between
    where it was published, in one order."""
    _, pod_a, pod_b = fleet
    pods = {"a": pod_a, "b": pod_b}
    reader = token(keys, "auditor")
    async with contextlib.AsyncExitStack() as stack:
        members: list[Member] = []
        backend = {"Authorization": f"Bearer {keys.api_key}"}
        async with httpx.AsyncClient(base_url=pod_b.url, timeout=10, headers=backend) as http:
            for i, (sub, client, pod) in enumerate(PEOPLE):
                extra = {"info": {"name": sub.title()}} if sub == "dee" else {}
                members.append(await stack.enter_async_context(member(keys, pods[pod], sub, client, **extra)))

                async def heard(i: int = i, client: str = client) -> bool:
                    return all(("join", client) in m.seen for m in members[: i + 1])

                await until(heard, 10, f"join of {client} heard by everyone before it")
                if i == 2:
                    await publish(http, ROOM, {"between": True}, type="note")

                    async def got_event() -> bool:
                        return all(("event", {"between": True}) in m.seen for m in members)

                    await until(got_event, 10, "the event between the joins")
        clients = [c for _, c, _ in PEOPLE]
        for i, m in enumerate(members):
            expected: list[tuple[str, Any]] = [("join", c) for c in clients[i:3]]
            if i <= 2:
                expected.append(("event", {"between": True}))
            expected += [("join", c) for c in clients[max(i, 3) :]]
            assert m.seen == expected, (m.client, m.seen)
        for pod in (pod_a, pod_b):
            async with httpx.AsyncClient(base_url=pod.url, timeout=10) as http:
                listed = await present(http, ROOM, reader)
            assert sorted((c["sub"], c["client"]) for c in listed) == sorted((s, c) for s, c, _ in PEOPLE)
            assert next(c for c in listed if c["sub"] == "dee")["info"] == {"name": "Dee"}
            assert all(set(c) == {"client", "sub", "info", "since"} for c in listed)  # no pod, no connection
        page = await members[3].ask(op="presence", channel=ROOM, limit=1000, ref=7)
        assert page["ref"] == 7
        assert page["cursor"] == 0
        assert len(page["clients"]) == 5
        stats = await members[0].ask(op="presence_stats", channel=ROOM, ref=8)
        assert stats == {"op": "presence_stats", "ref": 8, "channel": ROOM, "clients": 5, "users": 4}


async def test_presence_answers_404_when_the_policy_has_it_off_and_403_without_subscribe_rights(
    fleet: tuple[RedisServer, GatewayProcess, GatewayProcess], keys: Keys
) -> None:
    """A family without presence: 404 presence_disabled naming the fix (REST and WS); a token that does not grant
    the channel: 403 whether or not presence is on; no token: 401; a bad client id: 400; an oversized info: 401."""
    _, pod_a, _ = fleet
    allowed = token(keys, "ann")
    stranger = keys.hs256(sub="eve", channels=["other:*"])
    async with httpx.AsyncClient(base_url=pod_a.url, timeout=10) as http:

        async def get(path: str, bearer: str | None) -> httpx.Response:
            headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
            return await http.get(path, headers=headers)

        for path in ("/v1/channels/quiet:1/presence", "/v1/channels/quiet:1/presence/stats"):
            response = await get(path, allowed)
            assert response.status_code == 404, response.text
            error = response.json()["error"]
            assert error["code"] == "presence_disabled"
            assert "presence.enabled" in error["message"]
            assert (await get(path, stranger)).status_code == 403
        for path in (f"/v1/channels/{ROOM}/presence", f"/v1/channels/{ROOM}/presence/stats"):
            assert (await get(path, stranger)).status_code == 403
            assert (await get(path, None)).status_code == 401
            assert (await get(path, allowed)).status_code == 200
        response = await http.get(
            f"/v1/channels/{ROOM}/events", params={"client": "x"}, headers={"Authorization": f"Bearer {allowed}"}
        )
        assert response.status_code == 400
        assert "client" in response.json()["error"]["message"]
        huge = keys.hs256(sub="big", channels=["room:*"], info={"bio": "x" * 2000})
        response = await get(f"/v1/channels/{ROOM}/presence", huge)
        assert response.status_code == 401
        assert "info" in response.json()["error"]["message"]
    async with ws_client(f"{pod_a.ws_url}?token={allowed}") as ws:
        await ws_send(ws, op="presence", channel="quiet:1", ref=1)
        reply = await ws_recv(ws)
        assert (reply["op"], reply["code"]) == ("error", "presence_disabled"), reply
    async with ws_client(f"{pod_a.ws_url}?token={stranger}") as ws:
        await ws_send(ws, op="presence_stats", channel=ROOM, ref=2)
        reply = await ws_recv(ws)
        assert (reply["op"], reply["code"]) == ("error", "forbidden"), reply


async def test_embedded_broker_announces_joins_and_leaves_over_sse_after_the_grace() -> None:
    """One pod on the embedded broker with presence on for undeclared families (``make run --presence``): an SSE
    subscriber hears a WebSocket client join and, once the grace window has passed after it left, leave, as
    ``fleetcast.join`` / ``fleetcast.leave`` frames without ids; the list shows the SSE client meanwhile."""
    channel = "demo:presence"
    with gateway("--presence", "--presence-grace-seconds", "0.5", *QUICK_STOP) as pod:
        async with (
            httpx.AsyncClient(base_url=pod.url, timeout=None) as http,
            http.stream("GET", f"/v1/channels/{channel}/events", params={"client": "sse-page-0001"}) as stream,
        ):
            assert stream.status_code == 200
            frames = sse_frames(stream)
            async with ws_client(f"{pod.ws_url}?client=ws-page-00001") as ws:
                await ws_subscribe(ws, channel)
                listed: list[dict[str, Any]] = []

                async def both() -> bool:
                    listed[:] = (await http.get(f"/v1/channels/{channel}/presence")).json()["clients"]
                    return len(listed) == 2

                await until(both, 5, "both clients listed")
                assert all(c["sub"] is None for c in listed)
                # Anonymous: the client id is not taken (anyone could claim it); the pod makes one.
                assert {c["client"] for c in listed}.isdisjoint({"sse-page-0001", "ws-page-00001"})
            seen = []
            async with asyncio.timeout(10):
                async for frame in frames:
                    if isinstance(frame, int):
                        continue
                    seen.append(frame)
                    if frame.event == "fleetcast.leave":
                        break
            joins = [f for f in seen if f.event == "fleetcast.join"]
            assert [f.event for f in seen][-1] == "fleetcast.leave"
            assert all(f.id is None for f in seen)
            left = seen[-1].json()
            assert left["client"] in {j.json()["client"] for j in joins}
            assert left["sub"] is None
            stats = (await http.get(f"/v1/channels/{channel}/presence/stats")).json()
            assert stats == {"channel": channel, "clients": 1, "users": 0}
