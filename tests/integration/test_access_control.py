"""Access control against real pods on a real Redis (issue 12): nobody reads or writes a channel they were not
granted, whatever token they try, and a watching authorized client proves nothing leaked into the channel."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.support.clients import ws_client, ws_recv, ws_send, ws_subscribe
from tests.support.gateway import QUICK_STOP, GatewayProcess, gateway
from tests.support.processes import RedisServer, declare, redis_server
from tests.support.tokens import Keys, hostile_tokens

CHANNEL = "private:room-1"


@pytest.fixture(scope="module")
def keys() -> Iterator[Keys]:
    made = Keys()
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture(scope="module")
def secured(keys: Keys) -> Iterator[tuple[RedisServer, GatewayProcess]]:
    """A pod that admits nobody by default, with the family ``private`` declared for client publishing."""
    with redis_server() as redis:
        declare(redis, "private", "--publish-from-clients", "--no-anonymous")
        declare(redis, "notes", "--user-scoped")
        with gateway(*QUICK_STOP, "--redis-url", redis.url, *keys.pod_args()) as pod:
            yield redis, pod


@contextlib.asynccontextmanager
async def watcher(pod: GatewayProcess, keys: Keys) -> AsyncIterator[ClientConnection]:
    """An authorized WebSocket subscriber of CHANNEL (token in the handshake header)."""
    token = keys.hs256(sub="watcher", channels=[CHANNEL])
    async with ws_client(pod.ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        await ws_subscribe(ws, CHANNEL)
        yield ws


async def handshake_close_code(pod: GatewayProcess, credential: str, how: str = "header") -> int | None:
    """The close code a WebSocket gets when it presents ``credential`` in its handshake (after an ``error``):
    in the ``Authorization`` header, the ``token`` query parameter or the token cookie."""
    headers = {
        "header": {"Authorization": f"Bearer {credential}"},
        "cookie": {"Cookie": f"fleetcast_token={credential}"},
        "query": {},
    }[how]
    url = pod.ws_url + (f"?token={credential}" if how == "query" else "")
    async with ws_client(url, additional_headers=headers) as ws:
        assert (await ws_recv(ws))["op"] == "error"
        with pytest.raises(ConnectionClosed) as closed:
            await ws_recv(ws)
    return closed.value.rcvd.code if closed.value.rcvd else None


async def sse_status(pod: GatewayProcess, channel: str, **request: Any) -> tuple[int, dict[str, Any]]:
    async with (
        httpx.AsyncClient(base_url=pod.url, timeout=10) as client,
        client.stream("GET", f"/v1/channels/{channel}/events", **request) as response,
    ):
        if response.status_code == 200:
            return 200, {}
        return response.status_code, json.loads(await response.aread())


async def attempt_everything(pod: GatewayProcess, token: str | None) -> dict[str, Any]:
    """Try each way in with ``token`` (or none): what each answered."""
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    outcome: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
        published = await client.post(f"/v1/channels/{CHANNEL}/events", json={"data": "evil"}, headers=auth)
        outcome["publish"] = published.status_code, published.json()["error"]["code"]
        history = await client.get(f"/v1/channels/{CHANNEL}/history", headers=auth)
        outcome["history"] = history.status_code, history.json()["error"]["code"]
        info = await client.get(f"/v1/channels/{CHANNEL}", headers=auth)
        outcome["info"] = info.status_code
    status, body = await sse_status(pod, CHANNEL, headers=auth)
    outcome["sse"] = status, body.get("error", {}).get("code")
    if token:
        status, _ = await sse_status(pod, CHANNEL, params={"token": token})
        outcome["sse?token"] = status
        status, _ = await sse_status(pod, CHANNEL, headers={"Cookie": f"fleetcast_token={token}"})
        outcome["sse cookie"] = status
    async with ws_client(pod.ws_url) as ws:
        if token:
            await ws_send(ws, op="auth", token=token, ref="a")
            reply = await ws_recv(ws)
            if reply["op"] == "error":
                with pytest.raises(ConnectionClosed) as closed:
                    await ws_recv(ws)
                assert closed.value.rcvd is not None
                outcome["ws auth"] = reply["code"], closed.value.rcvd.code
                return outcome
            outcome["ws auth"] = reply["op"]
        await ws_send(ws, op="subscribe", channel=CHANNEL, ref=1)
        outcome["ws subscribe"] = (await ws_recv(ws))["code"]
        await ws_send(ws, op="publish", channel=CHANNEL, data="evil", ref=2)
        outcome["ws publish"] = (await ws_recv(ws))["code"]
        await ws_send(ws, op="ping", ref=3)
        assert (await ws_recv(ws))["op"] == "pong", "a refused request leaves the connection open"
    return outcome


async def test_no_token_is_refused_everywhere(secured: tuple[RedisServer, GatewayProcess], keys: Keys) -> None:
    """Without a token: 401 over HTTP and SSE, ``unauthorized`` errors over WebSocket, and nothing reaches the
    channel."""
    _, pod = secured
    async with watcher(pod, keys) as ws:
        outcome = await attempt_everything(pod, None)
        assert outcome == {
            "publish": (401, "unauthorized"),
            "history": (401, "unauthorized"),
            "info": 401,
            "sse": (401, "unauthorized"),
            "ws subscribe": "unauthorized",
            "ws publish": "unauthorized",
        }
        await assert_untouched(pod, keys, ws)


@pytest.mark.parametrize(
    "name", ["forged signature", "alg none", "HS/RS confusion", "expired", "not yet valid", "wrong audience"]
)
async def test_bad_tokens_are_refused_everywhere(
    secured: tuple[RedisServer, GatewayProcess], keys: Keys, name: str
) -> None:
    """Each hostile token: 401 over HTTP, SSE (header, query and cookie), close 4001 over WebSocket; the
    watching client and the history prove nothing was delivered or stored."""
    _, pod = secured
    token = hostile_tokens(keys, CHANNEL)[name]
    async with watcher(pod, keys) as ws:
        outcome = await attempt_everything(pod, token)
        expected_code = "token_expired" if name == "expired" else "invalid_token"
        assert outcome == {
            "publish": (401, expected_code),
            "history": (401, expected_code),
            "info": 401,
            "sse": (401, expected_code),
            "sse?token": 401,
            "sse cookie": 401,
            "ws auth": (expected_code, 4001),
        }
        for how in ("header", "query", "cookie"):
            assert await handshake_close_code(pod, token, how) == 4001, how
        await assert_untouched(pod, keys, ws)


async def test_a_token_for_another_channel_is_forbidden(
    secured: tuple[RedisServer, GatewayProcess], keys: Keys
) -> None:
    """A valid token that names other channels: 403 over HTTP and SSE, ``forbidden`` over WebSocket (the
    connection stays), and nothing reaches the channel."""
    _, pod = secured
    token = keys.hs256(sub="mallory", channels=["private:room-2", "other:*"], publish=["private:room-2"])
    async with watcher(pod, keys) as ws:
        outcome = await attempt_everything(pod, token)
        assert outcome == {
            "publish": (403, "forbidden"),
            "history": (403, "forbidden"),
            "info": 403,
            "sse": (403, "forbidden"),
            "sse?token": 403,
            "sse cookie": 403,
            "ws auth": "authed",
            "ws subscribe": "forbidden",
            "ws publish": "forbidden",
        }
        await assert_untouched(pod, keys, ws)


async def assert_untouched(pod: GatewayProcess, keys: Keys, ws: ClientConnection) -> None:
    """A sentinel published with the API key is the first and only thing the watcher and the history see."""
    async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
        response = await client.post(
            f"/v1/channels/{CHANNEL}/events",
            json={"data": "sentinel"},
            headers={"Authorization": f"Bearer {keys.api_key}"},
        )
        assert response.status_code == 201, response.text
        sentinel = response.json()["id"]
        received = await ws_recv(ws)
        assert (received["op"], received["id"], received["data"]) == ("event", sentinel, "sentinel")
        token = keys.hs256(channels=[CHANNEL])
        history = await client.get(
            f"/v1/channels/{CHANNEL}/history", params={"since": "0-0"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert all(e["data"] == "sentinel" for e in history.json()["events"]), history.text


async def test_granted_tokens_read_and_write_with_every_algorithm(
    secured: tuple[RedisServer, GatewayProcess], keys: Keys
) -> None:
    """HS256 and RS256 tokens that grant the channel subscribe over SSE (header, query, cookie) and WebSocket,
    read history, and publish over HTTP and WebSocket."""
    _, pod = secured
    for token in (
        keys.hs256(sub="alice", channels=[CHANNEL], publish=["private:*"]),
        keys.rs256(sub="alice", channels=["private:*"], publish=[CHANNEL]),
    ):
        for request in ({"headers": {"Authorization": f"Bearer {token}"}}, {"params": {"token": token}}):
            assert (await sse_status(pod, CHANNEL, **request))[0] == 200
        for url, headers in ((f"{pod.ws_url}?token={token}", {}), (pod.ws_url, {"Cookie": f"fleetcast_token={token}"})):
            async with ws_client(url, additional_headers=headers) as ws:
                await ws_subscribe(ws, CHANNEL)
        assert (await sse_status(pod, CHANNEL, headers={"Cookie": f"fleetcast_token={token}"}))[0] == 200
        async with ws_client(pod.ws_url) as ws:
            await ws_send(ws, op="auth", token=token, ref="a")
            authed = await ws_recv(ws)
            assert (authed["op"], authed["sub"], authed["ref"]) == ("authed", "alice", "a")
            await ws_subscribe(ws, CHANNEL)
            await ws_send(ws, op="publish", channel=CHANNEL, data="from ws", ref=2)
            replies = [await ws_recv(ws), await ws_recv(ws)]
            assert {r["op"] for r in replies} == {"published", "event"}, replies
        async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
            auth = {"Authorization": f"Bearer {token}"}
            published = await client.post(f"/v1/channels/{CHANNEL}/events", json={"data": 1}, headers=auth)
            assert published.status_code == 201, published.text
            history = await client.get(f"/v1/channels/{CHANNEL}/history", headers=auth)
            assert history.status_code == 200


async def test_api_keys_publish_only_over_http(secured: tuple[RedisServer, GatewayProcess], keys: Keys) -> None:
    """An API key publishes to any channel over HTTP; it reads nothing and opens no WebSocket."""
    _, pod = secured
    auth = {"Authorization": f"Bearer {keys.api_key}"}
    async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
        assert (await client.post("/v1/channels/anything/events", json={"data": 1}, headers=auth)).status_code == 201
        assert (await client.get(f"/v1/channels/{CHANNEL}/history", headers=auth)).status_code == 401
        wrong = {"Authorization": "Bearer key-not-a-key"}
        refused = await client.post("/v1/channels/anything/events", json={"data": 1}, headers=wrong)
        assert refused.status_code == 401
        assert "key-not-a-key" not in refused.text
        basic = {"Authorization": "Basic x"}
        refused = await client.post("/v1/channels/anything/events", json={"data": 1}, headers=basic)
        assert refused.status_code == 401
        assert "Bearer" in refused.json()["error"]["message"]
    assert await handshake_close_code(pod, keys.api_key) == 4001


async def test_user_scoped_channels_are_readable_by_their_user_only(
    secured: tuple[RedisServer, GatewayProcess], keys: Keys
) -> None:
    """``notes:<sub>`` of a user-scoped family: its user's token reads it with no channels claim; another
    user's token is forbidden, and no token is unauthorized."""
    _, pod = secured
    alice = keys.hs256(sub="alice")
    bob = keys.hs256(sub="bob")
    assert (await sse_status(pod, "notes:alice", params={"token": alice}))[0] == 200
    assert (await sse_status(pod, "notes:alice", params={"token": bob}))[0] == 403
    assert (await sse_status(pod, "notes:alice"))[0] == 401
    assert (await sse_status(pod, "notes", params={"token": alice}))[0] == 403


async def test_tokens_never_appear_in_answers_or_logs(secured: tuple[RedisServer, GatewayProcess], keys: Keys) -> None:
    """A refused token is not echoed in any answer, and the pod's log holds no token it was shown."""
    _, pod = secured
    tokens = hostile_tokens(keys, CHANNEL)
    async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
        for token in tokens.values():
            response = await client.get(f"/v1/channels/{CHANNEL}/history", params={"token": token})
            assert token not in response.text
            assert token.split(".")[1] not in response.text
    await asyncio.sleep(0.2)
    log = pod.log()
    for token in tokens.values():
        assert token.split(".")[1] not in log
