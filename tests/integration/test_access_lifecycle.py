"""Credentials over time, against real pods (issue 12): tokens refreshed in place and expiring, keys rotated
without a restart (JWKS by ``kid``, API keys by editing their Secret's files), per-user channels across pods."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.exceptions import ConnectionClosed

from tests.support.clients import sse_frames, ws_client, ws_recv, ws_send, ws_subscribe
from tests.support.gateway import QUICK_STOP, GatewayProcess, gateway
from tests.support.processes import declare, redis_server
from tests.support.static import StaticServer
from tests.support.tokens import AUDIENCE, Keys


async def publish_every(pod: GatewayProcess, api_key: str, channel: str, stop: asyncio.Event) -> list[str]:
    """Publish numbered events every 50 ms until ``stop``; the ids, in order."""
    ids: list[str] = []
    auth = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
        while not stop.is_set():
            response = await client.post(f"/v1/channels/{channel}/events", json={"data": len(ids)}, headers=auth)
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
            await asyncio.sleep(0.05)
    return ids


async def read_until_closed(ws: Any) -> tuple[list[dict[str, Any]], tuple[int, str] | None]:
    """Every message until the server closes; the messages and the close code and reason."""
    messages: list[dict[str, Any]] = []
    try:
        while True:
            messages.append(await ws_recv(ws))
    except ConnectionClosed as closed:
        return messages, (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else None


async def test_a_refreshed_token_keeps_the_subscription_and_an_unrefreshed_one_closes_4001(keys: Keys) -> None:
    """Two refreshes in place carry a WebSocket across its tokens' expiry with every event exactly once; a
    client that does not refresh is closed with 4001 ``token expired`` after its token's ``exp``."""
    channel = "private:feed"
    with gateway(*QUICK_STOP, *keys.pod_args(), "--jwt-leeway", "0") as pod:
        stop = asyncio.Event()
        headers = {"Authorization": f"Bearer {keys.hs256(ttl=3, sub='u1', channels=[channel])}"}
        async with (
            ws_client(pod.ws_url, additional_headers=headers) as refreshing,
            ws_client(pod.ws_url) as lapsing,
        ):
            await ws_send(lapsing, op="auth", token=keys.hs256(ttl=2, sub="u2", channels=[channel]), ref="a")
            assert (await ws_recv(lapsing))["op"] == "authed"
            await ws_subscribe(refreshing, channel)
            await ws_subscribe(lapsing, channel)
            publisher = asyncio.create_task(publish_every(pod, keys.api_key, channel, stop))
            received: list[str] = []
            loop = asyncio.get_running_loop()
            start = loop.time()
            # The header token lapses after 2-3 s, the first refresh's after 3-4 s: the subscription outlives both.
            refreshes = [(start + 1.0, 3), (start + 2.5, 30)]
            while loop.time() < start + 5:
                if refreshes and loop.time() >= refreshes[0][0]:
                    ttl = refreshes.pop(0)[1]
                    token = keys.hs256(ttl=ttl, sub="u1", channels=[channel])
                    await ws_send(refreshing, op="auth", token=token, ref="refresh")
                message = await ws_recv(refreshing)
                if message["op"] == "event":
                    received.append(message["id"])
                else:
                    assert (message["op"], message["ref"], message["sub"]) == ("authed", "refresh", "u1")
            stop.set()
            published = await publisher
            while len(received) < len(published):
                received.append((await ws_recv(refreshing))["id"])
            assert received == published
            messages, close = await read_until_closed(lapsing)
            assert close == (4001, "token expired")
            assert 0 < len(messages) < len(published)


async def test_a_refresh_for_another_user_is_refused(keys: Keys) -> None:
    """A connection's user does not change by refresh; the old token stays in force."""
    with gateway(*QUICK_STOP, *keys.pod_args()) as pod:
        async with ws_client(pod.ws_url) as ws:
            await ws_send(ws, op="auth", token=keys.hs256(sub="alice", channels=["c"]), ref=1)
            assert (await ws_recv(ws))["sub"] == "alice"
            await ws_send(ws, op="auth", token=keys.hs256(sub="mallory", channels=["*"]), ref=2)
            refused = await ws_recv(ws)
            assert (refused["op"], refused["code"]) == ("error", "forbidden")
            await ws_send(ws, op="subscribe", channel="other", ref=3)
            assert (await ws_recv(ws))["code"] == "forbidden"


class JwksServer(StaticServer):
    """A JWKS endpoint whose document the test swaps, like an identity provider rotating its keys."""

    def __init__(self) -> None:
        super().__init__(b'{"keys": []}', "application/json")

    @property
    def url(self) -> str:
        return f"{self.origin}/jwks.json"

    def publish_keys(self, **keys: rsa.RSAPrivateKey) -> None:
        entries = [
            {**jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "alg": "RS256"}
            for kid, key in keys.items()
        ]
        self.body = json.dumps({"keys": entries}).encode()


async def history_status(pod: GatewayProcess, credential: str) -> int:
    async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
        response = await client.get("/v1/channels/c/history", headers={"Authorization": f"Bearer {credential}"})
        return response.status_code


async def eventually(check: Any, expected: Any, *, timeout: float = 15.0) -> None:
    """Poll ``check()`` until it returns ``expected`` (bounded)."""
    async with asyncio.timeout(timeout):
        while (value := await check()) != expected:
            await asyncio.sleep(0.2)
    assert value == expected


async def test_jwks_rotation_takes_effect_without_a_restart() -> None:
    """A token signed with a new ``kid`` is accepted once the JWKS lists it, and one signed with a retired key
    is refused once the JWKS drops it; the pod never restarts."""
    old, new = rsa.generate_private_key(65537, 2048), rsa.generate_private_key(65537, 2048)

    def token(key: rsa.RSAPrivateKey, kid: str) -> str:
        claims = {"aud": AUDIENCE, "exp": 2_000_000_000, "channels": ["c"]}
        return jwt.encode(claims, key, "RS256", headers={"kid": kid})

    jwks = JwksServer()
    with jwks.running():
        jwks.publish_keys(k1=old)
        args = ["--no-anonymous", "--jwks-url", jwks.url, "--jwt-audience", AUDIENCE, "--jwks-refresh-seconds", "1"]
        with gateway(*QUICK_STOP, *args) as pod:
            assert await history_status(pod, token(old, "k1")) == 200
            assert await history_status(pod, token(new, "k2")) == 401
            jwks.publish_keys(k1=old, k2=new)
            await eventually(lambda: history_status(pod, token(new, "k2")), 200)
            jwks.publish_keys(k2=new)
            await eventually(lambda: history_status(pod, token(old, "k1")), 401)
            assert await history_status(pod, token(new, "k2")) == 200
            assert pod.proc is not None
            assert pod.proc.poll() is None


async def test_api_key_rotation_takes_effect_without_a_restart(keys: Keys) -> None:
    """Rewriting the key file (what the kubelet does when its Secret is edited) retires the old key and admits
    the new one; a new file adds a key."""

    async def publish_status(key: str) -> int:
        async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
            auth = {"Authorization": f"Bearer {key}"}
            return (await client.post("/v1/channels/c/events", json={"data": 1}, headers=auth)).status_code

    with gateway(*QUICK_STOP, *keys.pod_args(), "--key-reload-seconds", "0.5") as pod:
        old = keys.api_key
        assert await publish_status(old) == 201
        (keys.publish_keys_dir / "backend").write_text("rotated-key-0123456789")
        await eventually(lambda: publish_status(old), 401)
        assert await publish_status("rotated-key-0123456789") == 201
        (keys.publish_keys_dir / "billing").write_text("billing-key-0123456789")
        await eventually(lambda: publish_status("billing-key-0123456789"), 201)


@contextlib.asynccontextmanager
async def user_stream(
    pod: GatewayProcess, user: str, token: str, transport: str
) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
    """A user's own notification channel over WS or SSE; events land in the yielded queue."""
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=100)
    channel = f"notify:{user}"
    ready = asyncio.Event()

    async def over_ws() -> None:
        async with ws_client(pod.ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            await ws_subscribe(ws, channel)
            await ws_send(ws, op="subscribe", channel="notify:someone-else", ref=2)
            assert (await ws_recv(ws))["code"] == "forbidden"
            ready.set()
            while True:
                message = await ws.recv()
                events.put_nowait(json.loads(message))

    async def over_sse() -> None:
        async with (
            httpx.AsyncClient(base_url=pod.url, timeout=None) as client,
            client.stream("GET", f"/v1/channels/{channel}/events", params={"token": token}) as response,
        ):
            assert response.status_code == 200
            ready.set()
            async for frame in sse_frames(response):
                if not isinstance(frame, int):
                    events.put_nowait({"channel": channel, "data": frame.json()})

    task = asyncio.create_task(over_ws() if transport == "ws" else over_sse())
    try:
        async with asyncio.timeout(15):
            await asyncio.wait({task, asyncio.ensure_future(ready.wait())}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        yield events
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_hundred_users_each_get_only_their_own_notifications_across_two_pods(keys: Keys) -> None:
    """100 users on two pods (WS and SSE alike), tokens with only ``sub``: each receives exactly its own
    notifications, published through either pod, and none of anyone else's."""
    users = [f"user-{n}" for n in range(100)]
    with redis_server() as redis:
        declare(redis, "notify", "--user-scoped")
        common = [*QUICK_STOP, "--redis-url", redis.url, *keys.pod_args()]
        with gateway(*common) as a, gateway(*common) as b:
            async with contextlib.AsyncExitStack() as stack:
                queues = {}
                for n, user in enumerate(users):
                    pod = a if n % 2 else b
                    transport = "ws" if n % 4 < 2 else "sse"
                    queues[user] = await stack.enter_async_context(
                        user_stream(pod, user, keys.hs256(sub=user), transport)
                    )
                auth = {"Authorization": f"Bearer {keys.api_key}"}
                async with httpx.AsyncClient(timeout=10) as client:
                    for n, user in enumerate(users):
                        for k in range(3):
                            pod = b if (n + k) % 2 else a
                            response = await client.post(
                                f"{pod.url}/v1/channels/notify:{user}/events",
                                json={"data": f"{user}/{k}"},
                                headers=auth,
                            )
                            assert response.status_code == 201
                for user, queue in queues.items():
                    got = [(await asyncio.wait_for(queue.get(), 10))["data"] for _ in range(3)]
                    assert got == [f"{user}/0", f"{user}/1", f"{user}/2"]
                await asyncio.sleep(0.5)
                assert all(queue.empty() for queue in queues.values()), "nobody received anything more"
