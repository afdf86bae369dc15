"""The benchmark's Nchan peer, driven by the harness itself at toy sizes: nginx + Debian's Nchan module started
and stopped by pid, the load client's Nchan wires (WebSocket frames, EventSource ``data:``/``id:``), lock-step SSE
publishing, W8 set-up, and the check that the Redis kind really stores in Redis. Skipped where the module is
absent (``make bench`` installs it); CI installs it, so there it runs."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from bench.suite import procs, workloads
from bench.suite.workloads import Context, Sizes

pytestmark = pytest.mark.redis

TINY = Sizes(w1_subscribers=40, w1_events=6, w2_channels=10, w2_per_channel=3, w2_events=30,
             w8_connections=60)  # fmt: skip


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[Context]:
    if shutil.which("nginx") is None or not procs.NCHAN_MODULE.exists():
        if os.environ.get("FLEETCAST_REQUIRE_NCHAN") == "1":
            pytest.fail("FLEETCAST_REQUIRE_NCHAN=1 but nginx or libnginx-mod-nchan is missing")
        pytest.skip("the benchmark's Nchan peer needs nginx and libnginx-mod-nchan")
    async with procs.redis_server(tmp_path) as redis:
        yield Context(tmp_path, redis, TINY)


@pytest.mark.parametrize("server", ["nchan", "nchan-mem"])
async def test_sse_fan_out_in_lock_step_delivers_every_event_once_unmerged(ctx: Context, server: str) -> None:
    result = await workloads.w1s(ctx, server)
    assert result["deliveries"] == 40 * 6
    assert result["paced"]
    assert result["deliveries_per_read"] == 1.0


async def test_websocket_fan_out_over_many_channels_goes_through_redis(ctx: Context) -> None:
    result = await workloads.w2(ctx, "nchan")
    assert result["deliveries"] == 30 * 3
    assert int(await ctx.redis.command("DBSIZE")) > 0


async def test_the_memory_kind_leaves_redis_empty_and_the_redis_check_notices(ctx: Context) -> None:
    await ctx.redis.command("FLUSHALL")
    result = await workloads.w1(ctx, "nchan-mem")
    assert result["deliveries"] == 40 * 6
    with pytest.raises(RuntimeError, match="storage is not Redis"):
        await workloads.redis_used(ctx, "nchan", "W1")


async def test_connection_set_up_counts_every_subscription(ctx: Context) -> None:
    result = await workloads.w8(ctx, "nchan")  # raises if any of them failed or timed out
    assert result["connections"] == 60
    assert result["concurrency"] > 0
    assert result["connections_per_s"] == pytest.approx(60 / result["connect_s"])
