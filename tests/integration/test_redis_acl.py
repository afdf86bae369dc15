"""Redis locked down (issue 13, acceptance 2): the chart's ACL users on a real redis-server.

The ACL file is the one the chart renders (real Helm engine) with a second Gateway in ``redis.auth.extraGateways``;
the URLs are the chart's, pointed at the local server. Each gateway user may touch only its own Gateway's keys
and may not write its policies or control stream; no user may FLUSHALL, CONFIG, SCRIPT FLUSH, KEYS or DEBUG.
Two real pods of two Gateways on that Redis, with the same channel names, see none of each other's events,
policies or heartbeats. A pod whose user may only read is unready and answers publishes with 503.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.exceptions

from fleetcast.contract.keys import Keys
from fleetcast_operator.fleet_redis import FleetRedis
from tests.chart.chart import NAMESPACE, objects
from tests.support.clients import ws_client, ws_recv, ws_subscribe
from tests.support.gateway import QUICK_STOP, gateway
from tests.support.processes import PYTHON, RedisServer, redis_server

MAIN, OTHER = "fleetcast", "other"
"""The chart's own Gateway (release "fleetcast") and a second one in the same namespace."""
VALUES = {"redis": {"auth": {"extraGateways": [{"namespace": NAMESPACE, "name": OTHER}]}}}
CHART_HOST = f"fleetcast-redis.{NAMESPACE}.svc:6379"
FORBIDDEN: list[tuple[Any, ...]] = [
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("CONFIG", "GET", "*"),
    ("CONFIG", "SET", "appendonly", "no"),
    ("SCRIPT", "FLUSH"),
    ("KEYS", "*"),
    ("ACL", "SETUSER", "mallory", "on", ">pw", "~*", "+@all"),
]


@dataclass
class LockedRedis:
    server: RedisServer
    secret: dict[str, str]

    def url(self, key: str, *, user: str | None = None) -> str:
        """A URL from the chart's Secret, aimed at the local server (optionally with another user name)."""
        url = self.secret[key].replace(CHART_HOST, f"127.0.0.1:{self.server.port}")
        if user is not None:
            url = url.replace(url.split("//", 1)[1].split(":", 1)[0], user, 1)
        return url

    def client(self, key: str) -> redis.Redis:
        return redis.Redis.from_url(self.url(key), decode_responses=True, socket_timeout=5)


def chart_secret() -> dict[str, str]:
    secrets = [doc for _, doc in objects(VALUES) if doc["kind"] == "Secret"]
    (secret,) = [doc for doc in secrets if doc["metadata"]["name"].endswith("-auth")]
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def read_only_variant(acl: str) -> str:
    """The main gateway user's line as user ``reader``: same keys and commands, every key read-only."""
    (line,) = [row for row in acl.splitlines() if row.startswith(f"user gateway.{NAMESPACE}.{MAIN} ")]
    return line.replace(f"gateway.{NAMESPACE}.{MAIN}", "reader", 1).replace("%RW~", "%R~").replace(" ~fc:", " %R~fc:")


@pytest.fixture(scope="module")
def locked() -> Iterator[LockedRedis]:
    secret = chart_secret()
    directory = Path(tempfile.mkdtemp(prefix="fleetcast-acl-"))
    try:
        aclfile = directory / "users.acl"
        aclfile.write_text(secret["users.acl"] + read_only_variant(secret["users.acl"]) + "\n")
        with redis_server(extra_args=("--aclfile", str(aclfile))) as server:
            yield LockedRedis(server, secret)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def refused(call: Callable[[], Any]) -> bool:
    try:
        call()
    except redis.exceptions.NoPermissionError:
        return True
    return False


def test_gateway_user_touches_only_its_own_keys_and_nobody_flushes(locked: LockedRedis) -> None:
    """The gateway user writes its streams and heartbeats but not another Gateway's control stream or policies,
    nor its own (the operator's job); the operator writes those; no user may FLUSHALL, CONFIG, SCRIPT FLUSH,
    KEYS, DEBUG or ACL; the default user is off."""
    main, other = Keys(NAMESPACE, MAIN), Keys(NAMESPACE, OTHER)
    gw, operator = locked.client("gateway-url"), locked.client("operator-url")
    try:
        assert gw.xadd(main.stream("chat"), {"data": "1"})
        assert gw.hset(main.pods, "pod-a", "{}") == 1
        assert refused(lambda: gw.xadd(other.control, {"cmd": "drain", "pod": "pod-b"}))
        assert refused(lambda: gw.hset(other.policies, "chat", "{}"))
        assert refused(lambda: gw.publish(other.policies_changed, "chat"))
        assert refused(lambda: gw.xadd(other.stream("chat"), {"data": "x"}))
        assert refused(lambda: gw.xrange(other.stream("chat")))
        assert refused(lambda: gw.hgetall(other.pods))
        assert refused(lambda: gw.xadd(main.control, {"cmd": "drain", "pod": "pod-a"}))
        assert refused(lambda: gw.hset(main.policies, "chat", "{}"))
        # Inside a script the same rules hold: the publish script cannot be turned against another Gateway.
        script = "return redis.call('XADD', KEYS[1], '*', 'data', 'x')"
        assert refused(lambda: gw.eval(script, 1, other.stream("chat")))

        assert operator.xadd(other.control, {"cmd": "drain", "pod": "pod-b"})
        assert operator.hset(other.policies, "audit", "{}") == 1
        assert refused(lambda: operator.xadd(main.stream("chat"), {"data": "forged"}))

        for client in (gw, operator):
            for command in FORBIDDEN:
                assert refused(lambda c=client, cmd=command: c.execute_command(*cmd)), command  # type: ignore[misc]
            # DEBUG: not granted, and Redis 7 also turns it off by default; either way it does not run.
            with pytest.raises(redis.exceptions.ResponseError):
                client.execute_command("DEBUG", "SLEEP", "0")
        anonymous = redis.Redis.from_url(locked.server.url, socket_timeout=5)
        try:
            with pytest.raises(redis.exceptions.AuthenticationError):
                anonymous.ping()
        finally:
            anonymous.close()
    finally:
        gw.close()
        operator.close()


async def test_the_operator_does_its_work_as_its_own_user(locked: LockedRedis) -> None:
    """The operator's Redis calls (heartbeats, policies, drain commands, stream statistics) all pass as the
    chart's operator user."""
    main = Keys(NAMESPACE, MAIN)
    fleet = FleetRedis(locked.url("operator-url"))
    try:
        assert isinstance(await fleet.heartbeats(main), dict)
        assert await fleet.put_policy(main, "ops", "{}") is True
        await fleet.drop_policy(main, "ops")
        assert await fleet.send(main, {"cmd": "noop", "pod": "nobody"})
        stats = await fleet.stream_stats(main, "chat")
        assert stats.streams >= 1
    finally:
        await fleet.close()


async def test_two_gateways_on_one_redis_share_nothing(locked: LockedRedis) -> None:
    """Two pods of two Gateways, same channel names: each hears only its own events, history, policy and
    heartbeats."""
    common = [*QUICK_STOP, "--namespace", NAMESPACE]
    # A policy for the main Gateway only, written with the operator's user as the operator would.
    await asyncio.to_thread(
        subprocess.run,
        [PYTHON, "-m", "fleetcast", "channel", "set", "small", "--max-message-bytes", "100", "--anonymous",
         "--publish-anonymous", "--idle-ttl", "none", "--redis-url", locked.url("operator-url"),
         "--namespace", NAMESPACE, "--gateway", MAIN],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    main_args = [*common, "--gateway", MAIN, "--pod-name", "pod-main", "--redis-url", locked.url("gateway-url")]
    other_url = locked.url(f"gateway.{NAMESPACE}.{OTHER}-url")
    other_args = [*common, "--gateway", OTHER, "--pod-name", "pod-other", "--redis-url", other_url]
    with gateway(*main_args) as main_pod, gateway(*other_args) as other_pod:
        async with (
            httpx.AsyncClient(base_url=main_pod.url, timeout=10) as main_http,
            httpx.AsyncClient(base_url=other_pod.url, timeout=10) as other_http,
            ws_client(main_pod.ws_url) as main_ws,
            ws_client(other_pod.ws_url) as other_ws,
        ):
            for client in (main_http, other_http):
                assert (await client.get("/readyz")).status_code == 200
            await ws_subscribe(main_ws, "chat:room")
            await ws_subscribe(other_ws, "chat:room")
            for client, name in ((main_http, MAIN), (other_http, OTHER)):
                response = await client.post("/v1/channels/chat:room/events", json={"data": {"from": name}})
                assert response.status_code == 201, response.text
            for ws, name in ((main_ws, MAIN), (other_ws, OTHER)):
                event = await ws_recv(ws)
                assert (event["op"], event["data"]) == ("event", {"from": name})
                with pytest.raises(TimeoutError):
                    await ws_recv(ws, timeout=0.5)  # the other Gateway's event never arrives
            for client, name in ((main_http, MAIN), (other_http, OTHER)):
                history = (await client.get("/v1/channels/chat:room/history", params={"since": "0-0"})).json()
                assert [e["data"] for e in history["events"]] == [{"from": name}]

            big = {"data": "x" * 200}
            assert (await other_http.post("/v1/channels/small:a/events", json=big)).status_code == 201
            assert (await main_http.post("/v1/channels/small:a/events", json=big)).status_code == 413
            # A family kept forever (idleTtl none): the publish script clears the stream's TTL (PERSIST).
            kept = await main_http.post("/v1/channels/small:b/events", json={"data": 1})
            assert kept.status_code == 201, kept.text

            operator = locked.client("operator-url")
            try:
                main_pods = lambda: set(operator.hgetall(Keys(NAMESPACE, MAIN).pods))  # noqa: E731
                other_pods = lambda: set(operator.hgetall(Keys(NAMESPACE, OTHER).pods))  # noqa: E731
                assert await wait_for(lambda: "pod-main" in main_pods() and "pod-other" in other_pods())
                assert "pod-other" not in main_pods()
                assert "pod-main" not in other_pods()
            finally:
                operator.close()


async def test_a_read_only_user_is_unready_and_publishing_answers_503(locked: LockedRedis) -> None:
    """A pod whose Redis user may read but not write: readyz 503, publish 503 with a message naming the refusal."""
    url = locked.url("gateway-url", user="reader")
    with gateway(*QUICK_STOP, "--namespace", NAMESPACE, "--gateway", MAIN, "--redis-url", url) as pod:
        async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["broker"] is False
            response = await client.post("/v1/channels/chat:room/events", json={"data": 1})
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert error["code"] == "broker_unavailable"
            assert "refused the gateway's user" in error["message"]
            assert "NOPERM" in error["message"]
            assert response.headers["Retry-After"]
            await asyncio.sleep(1.5)  # the live reader retries; the pod stays unready
            assert (await client.get("/readyz")).status_code == 503
        assert "Traceback" not in pod.log()


async def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.1)
    return check()
