"""A Channel field added in the contract and the session core only: ``limits.maxSubscribersPerPod``.

The rule lives in one place (``Session.join``), so both transports obey it without knowing it exists: the
WebSocket subscriber past the cap gets ``error {code: channel_full}`` and keeps its connection, the SSE one gets a
200 with ``fleetcast.reconnect`` (EventSource must come back, not give up), and a place frees when a subscriber
leaves.
"""

from __future__ import annotations

import json

import httpx

from tests.support.clients import collect_sse, publish, ws_client, ws_recv, ws_send, ws_subscribe
from tests.support.gateway import QUICK_STOP, gateway
from tests.support.processes import RedisServer, declare


async def test_a_full_channel_refuses_politely_on_both_transports(redis: RedisServer) -> None:
    declare(redis, "stage", "--anonymous", "--publish-anonymous", "--max-subscribers-per-pod", "2")
    with gateway(*QUICK_STOP, "--redis-url", redis.url) as pod:
        async with ws_client(pod.ws_url) as first, ws_client(pod.ws_url) as second, ws_client(pod.ws_url) as third:
            await ws_subscribe(first, "stage:main")
            await ws_subscribe(second, "stage:main")
            await ws_send(third, op="subscribe", channel="stage:main", ref=7)
            refused = await ws_recv(third)
            assert (refused["op"], refused["ref"], refused["code"]) == ("error", 7, "channel_full")
            await ws_subscribe(third, "stage:other")  # the connection stays, and other channels have room

            async with httpx.AsyncClient(base_url=pod.url, timeout=10) as http:
                frames = await collect_sse(pod.url, "stage:main", count=1)
                assert frames[0].event == "fleetcast.reconnect", frames
                assert json.loads(frames[0].data)["after_ms"] > 0

                await first.close()
                for _ in range(50):  # the pod forgets the closed subscriber within a moment
                    await ws_send(third, op="subscribe", channel="stage:main", ref=8)
                    answer = await ws_recv(third)
                    if answer["op"] == "subscribed":
                        break
                    assert answer["code"] == "channel_full"
                else:
                    raise AssertionError("the place of a closed subscriber was never freed")
                await publish(http, "stage:main", {"n": 1})
                assert (await ws_recv(third))["data"] == {"n": 1}


async def test_other_families_have_no_cap(redis: RedisServer) -> None:
    """The cap belongs to the family that declares it: another family's channel takes many subscribers."""
    declare(redis, "stage", "--anonymous", "--max-subscribers-per-pod", "1")
    declare(redis, "hall", "--anonymous")
    with gateway(*QUICK_STOP, "--redis-url", redis.url) as pod:
        async with ws_client(pod.ws_url) as a, ws_client(pod.ws_url) as b, ws_client(pod.ws_url) as c:
            for ws in (a, b, c):
                await ws_subscribe(ws, "hall:main")
