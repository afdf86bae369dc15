"""The fleet on a real Redis Cluster (issue 19): heartbeats, control commands and policies between pods and the
operator's Redis client, both in cluster mode, and the operator's stream statistics over every master."""

from __future__ import annotations

import asyncio
import subprocess
import time

from fleetcast.broker.base import Retention
from fleetcast.broker.redis_fleet import RedisFleet
from fleetcast.broker.redis_streams import RedisStreamsBroker
from fleetcast.contract.commands import DrainCommand
from fleetcast.contract.heartbeat import Heartbeat
from fleetcast.contract.keys import Keys
from fleetcast.contract.policy import ChannelPolicy
from fleetcast_operator.fleet_redis import FleetRedis
from tests.contract.test_fleet import Inbox
from tests.support.cluster import RedisCluster
from tests.support.processes import PYTHON


async def started(url: str, gateway: str, pod: str, inbox: Inbox) -> RedisFleet:
    fleet = RedisFleet(url, gateway=gateway, pod=pod, timeout=1.0, mode="cluster")
    await fleet.start(on_command=inbox.command, on_policy_change=inbox.policy)
    return fleet


async def test_pods_and_operator_meet_on_a_cluster(shared_cluster: RedisCluster) -> None:
    """A pod's heartbeat is read by the operator; the operator's drain command reaches that pod alone; its policy
    write is stored and announced to the pods; a CLI write (the pods' client) is announced too."""
    keys = Keys("default", "gw-cl")
    inbox_a, inbox_b = Inbox(), Inbox()
    pod_a = await started(shared_cluster.url, "gw-cl", "pod-a", inbox_a)
    pod_b = await started(shared_cluster.url, "gw-cl", "pod-b", inbox_b)
    operator = FleetRedis(shared_cluster.url, "cluster")
    try:
        heartbeat = Heartbeat(pod="pod-a", gateway="gw-cl", timestamp=time.time(), connections={"ws": 2, "sse": 0})
        await pod_a.write_heartbeat(heartbeat)
        assert Heartbeat.from_json((await operator.heartbeats(keys))["pod-a"]) == heartbeat

        await asyncio.sleep(0.3)  # both listeners are in place
        command = DrainCommand(pod="pod-a", connections_per_second=20.0)
        await operator.send(keys, command.to_fields())
        await inbox_a.wait(lambda: inbox_a.commands)
        assert inbox_a.commands == [command]

        policy = ChannelPolicy(history_max_events=7)
        assert await operator.put_policy(keys, "chat", policy.to_json())
        await inbox_b.wait(lambda: "chat" in inbox_b.changes)
        assert (await pod_b.policies())["chat"] == policy
        await pod_a.set_policy("news", ChannelPolicy(history_max_events=3))
        await inbox_b.wait(lambda: "news" in inbox_b.changes)
        await operator.drop_policy(keys, "chat")
        await inbox_b.wait(lambda: inbox_b.changes.count("chat") == 2)
        assert set(await pod_b.policies()) == {"news"}
        assert inbox_b.commands == []
    finally:
        await operator.close()
        await pod_a.close()
        await pod_b.close()


async def test_operator_stream_stats_cover_every_master(shared_cluster: RedisCluster) -> None:
    """The operator sums a family's streams on all three masters (SCAN visits each)."""
    keys = Keys("default", "gw-stats")
    broker = RedisStreamsBroker(shared_cluster.url, keys=keys, mode="cluster", timeout=1.0)
    await broker.start(lambda channel, batch: None)
    operator = FleetRedis(shared_cluster.url, "cluster")
    try:
        channels = [f"stats:r{i}" for i in range(30)]
        for channel in channels:
            await broker.publish(channel, b"1", "m", retention=Retention(max_events=10))
        stats = await operator.stream_stats(keys, "stats")
        assert (stats.streams, stats.length) == (30, 30)
    finally:
        await operator.close()
        await broker.close()


async def test_channel_cli_writes_a_policy_on_a_cluster(shared_cluster: RedisCluster) -> None:
    """``fleetcast channel set --redis-mode cluster`` stores the policy where pods in cluster mode read it."""
    command = [PYTHON, "-m", "fleetcast", "channel", "set", "cli", "--max-events", "9", "--gateway", "gw-cli"]
    command += ["--redis-url", shared_cluster.url, "--redis-mode", "cluster"]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pod = RedisFleet(shared_cluster.url, gateway="gw-cli", pod="p", mode="cluster", timeout=1.0)
    try:
        assert (await pod.policies())["cli"].history_max_events == 9
    finally:
        await pod.close()
