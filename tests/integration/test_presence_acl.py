"""Presence under the chart's Redis ACL users (issue 16 with issue 13): every command presence sends, the reaper's
included, passes as the gateway's own user, on that Gateway's keys only."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetcast.contract.heartbeat import Heartbeat
from fleetcast.contract.keys import Keys
from fleetcast.contract.presence import Entry
from tests.chart.chart import NAMESPACE
from tests.integration.test_redis_acl import MAIN, LockedRedis, chart_secret
from tests.support.clients import ws_client, ws_recv, ws_subscribe
from tests.support.gateway import QUICK_STOP, gateway
from tests.support.processes import PYTHON, redis_server


@pytest.fixture
def locked() -> Iterator[LockedRedis]:
    secret = chart_secret()
    directory = Path(tempfile.mkdtemp(prefix="fleetcast-acl-"))
    try:
        aclfile = directory / "users.acl"
        aclfile.write_text(secret["users.acl"] + "\n")
        with redis_server(extra_args=("--aclfile", str(aclfile))) as server:
            yield LockedRedis(server, secret)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def test_presence_joins_lists_counts_leaves_and_reaps_as_the_gateway_user(locked: LockedRedis) -> None:
    """A pod connected as the chart's gateway user registers a subscriber, lists and counts it, announces its
    leave, and reaps the entries of a dead pod (its stale record removed too): no NOPERM anywhere."""
    keys = Keys(NAMESPACE, MAIN)
    channel = "room:acl"
    await asyncio.to_thread(
        subprocess.run,
        [PYTHON, "-m", "fleetcast", "channel", "set", "room", "--presence", "--join-leave", "--anonymous",
         "--redis-url", locked.url("operator-url"), "--namespace", NAMESPACE, "--gateway", MAIN],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    # A pod that died long ago, seeded with the gateway's own user (what a dead pod would have left).
    store = locked.client("gateway-url")
    stale = time.time() - 120
    ghost = Entry(channel, "ghost-000001", "gus", None, "a-ghost", "a-ghost.x.1", stale)
    store.hset(keys.pods, "a-ghost", Heartbeat(pod="a-ghost", gateway=MAIN, timestamp=stale).to_json())
    store.hset(keys.presence(channel), ghost.field, ghost.to_json())
    store.sadd(keys.presence_channels("a-ghost"), channel)
    args = [*QUICK_STOP, "--namespace", NAMESPACE, "--gateway", MAIN, "--pod-name", "b-live",
            "--redis-url", locked.url("gateway-url"), "--presence-grace-seconds", "0.2"]  # fmt: skip
    try:
        with gateway(*args) as pod:
            async with (
                httpx.AsyncClient(base_url=pod.url, timeout=10) as http,
                ws_client(f"{pod.ws_url}?client=watcher-0001") as watcher,
            ):
                await ws_subscribe(watcher, channel)
                async with ws_client(pod.ws_url) as ws:
                    await ws_subscribe(ws, channel)
                    deadline = time.monotonic() + 10
                    while True:
                        listed = (await http.get(f"/v1/channels/{channel}/presence")).json()["clients"]
                        if len(listed) == 2 and not store.exists(keys.presence_channels("a-ghost")):
                            break
                        assert time.monotonic() < deadline, listed
                        await asyncio.sleep(0.1)
                    stats = (await http.get(f"/v1/channels/{channel}/presence/stats")).json()
                    assert (stats["clients"], stats["users"]) == (2, 0)
                seen = []
                while not seen or seen[-1]["op"] != "leave":
                    seen.append(await ws_recv(watcher, timeout=10))
                assert [m["op"] for m in seen if m["op"] in ("join", "leave")][-1] == "leave"
            assert store.hget(keys.presence(channel), ghost.field) is None
            assert store.hget(keys.pods, "a-ghost") is None
            pod.stop()
            assert "NOPERM" not in pod.log()
        assert store.hgetall(keys.presence(channel)) == {}  # its own leaves, written as it stopped
        assert not store.exists(keys.presence_channels("b-live"))  # and its index, dropped
    finally:
        store.close()
