"""Presence at 10,000 members (issue 16, acceptance 4): stats latency, paging the full list, and what presence
costs Redis while nobody joins or leaves.

Two fleetcast pods on one redis-server; the channel's family is declared with presence on and joins/leaves off
(``fleetcast channel set bench --presence --anonymous``): with joins and leaves on, 10,000 members joining means
10,000 announcements to up to 10,000 subscribers each, a broadcast storm that measures fan-out, not presence.
Half the members connect to each pod through :mod:`bench.ws_clients` (raw WebSocket subscribers, one process
per pod). Then, with the members connected and quiet:

1. an idle window of ``--idle-seconds`` with no request at all: ``INFO commandstats`` before and after gives every
   command Redis ran, per command; divided by pods and by heartbeat periods (2 s) it says what one pod costs
   per period (heartbeat, the live reader's keep-alive PING, and presence's share: one HGETALL of the registry);
2. ``--requests`` sequential ``GET /presence/stats`` on one kept-alive connection to pod A: p50/p99/max;
3. the whole list paged through ``GET /presence?limit=1000`` (HSCAN underneath): pages, wall time, and Redis's
   slowest HSCAN call (``usec_per_call`` from commandstats, and the SLOWLOG).

Run: ``.venv/bin/python -m bench.presence`` (about a minute; ``--members`` to change the size). Prints one
JSON document. Loopback only; every process it starts is stopped by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from asyncio.subprocess import DEVNULL
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.suite.procs import Pod, Redis, pod, raise_fd_limit, redis_server
from bench.ws_fastpath import HOST, ROOT, HttpConnection, child_env, stop
from fleetcast.contract.heartbeat import INTERVAL_SECONDS

CHANNEL = "bench:presence"
"""A channel of the family ``bench`` (declared with presence)."""


def commandstats(text: bytes) -> dict[str, tuple[int, float]]:
    """``cmdstat_<name>:calls=..,usec=..,usec_per_call=..`` -> {name: (calls, usec_per_call)}."""
    stats: dict[str, tuple[int, float]] = {}
    for line in text.decode().splitlines():
        if not line.startswith("cmdstat_"):
            continue
        name, _, fields = line.partition(":")
        values = dict(kv.split("=", 1) for kv in fields.split(","))
        stats[name.removeprefix("cmdstat_")] = (int(values["calls"]), float(values["usec_per_call"]))
    return stats


@contextlib.asynccontextmanager
async def members(target: Pod, count: int, workdir: Path) -> AsyncIterator[None]:
    """``count`` subscribers of the channel on ``target``, held until the block ends."""
    command = [sys.executable, "-m", "bench.ws_clients", HOST, str(target.port), "/v1/ws", str(count),
               str(10**9), "3600", "--subscribe", CHANNEL]  # fmt: skip
    with (workdir / f"clients-{target.port}.log").open("ab") as log:
        child = await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, env=child_env(), stdout=asyncio.subprocess.PIPE, stderr=log
        )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 300)
        if line.strip() != b"ready":
            raise RuntimeError(f"clients on port {target.port} did not get ready: {line!r}")
        yield
    finally:
        await stop(child)


async def get_json(connection: HttpConnection, path: str) -> Any:
    status, body = await connection.request("GET", path)
    if status != 200:
        raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
    return json.loads(body)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit()
    workdir = Path(tempfile.mkdtemp(prefix="fleetcast-bench-presence-"))
    async with redis_server(workdir) as redis:
        declare = [sys.executable, "-m", "fleetcast", "channel", "set", "bench", "--presence", "--anonymous",
                   "--redis-url", redis.url]  # fmt: skip
        child = await asyncio.create_subprocess_exec(*declare, cwd=ROOT, env=child_env(), stdout=DEVNULL)
        if await child.wait() != 0:
            raise RuntimeError("fleetcast channel set failed")
        async with pod("fleetcast", redis, workdir, "a") as pod_a, pod("fleetcast", redis, workdir, "b") as pod_b:
            return await measure(args, redis, pod_a, pod_b, workdir)


async def measure(args: argparse.Namespace, redis: Redis, pod_a: Pod, pod_b: Pod, workdir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"members": args.members, "pods": 2}
    began = time.monotonic()
    cpu_before = pod_a.cpu() + pod_b.cpu()
    joins_before = commandstats(await redis.command("INFO", "commandstats"))
    half = args.members // 2
    async with members(pod_a, half, workdir), members(pod_b, args.members - half, workdir):
        connection = await HttpConnection.open(pod_a.port)
        try:
            while (await get_json(connection, f"/v1/channels/{CHANNEL}/presence/stats"))["clients"] < args.members:
                await asyncio.sleep(0.1)
            joined = commandstats(await redis.command("INFO", "commandstats"))
            result["join"] = {
                "seconds_to_connect_and_be_present": round(time.monotonic() - began, 2),
                "pod_cpu_seconds": round(pod_a.cpu() + pod_b.cpu() - cpu_before, 2),
                "redis_commands": _delta(joins_before, joined),
            }
        finally:
            connection.close()
        await asyncio.sleep(3 * INTERVAL_SECONDS)  # let the last heartbeats and flushes pass
        result["idle"] = await idle_window(redis, args.idle_seconds)
        # A new connection per phase: the pod closes kept-alive connections idle for 5 s.
        connection = await HttpConnection.open(pod_a.port)
        try:
            result["stats"] = await stats_latency(connection, args.requests)
            result["list"] = await page_all(connection, redis, args.members)
        finally:
            connection.close()
    return result


def _delta(before: dict[str, tuple[int, float]], after: dict[str, tuple[int, float]]) -> dict[str, int]:
    """Calls per command between two snapshots, without the INFO and SLOWLOG the benchmark itself sent."""
    delta = {name: calls - before.get(name, (0, 0.0))[0] for name, (calls, _) in after.items()}
    return {name: n for name, n in sorted(delta.items()) if n and not name.startswith(("info", "slowlog"))}


async def idle_window(redis: Redis, seconds: float) -> dict[str, Any]:
    before = commandstats(await redis.command("INFO", "commandstats"))
    await asyncio.sleep(seconds)
    after = commandstats(await redis.command("INFO", "commandstats"))
    calls = _delta(before, after)
    periods = seconds / INTERVAL_SECONDS
    per_pod_period = {name: round(n / 2 / periods, 2) for name, n in calls.items()}
    # Presence's own commands while nobody joins or leaves: the registry read of the lease (HGETALL), and any
    # apply/reap script (EVALSHA/EVAL), HSCAN, SADD/SREM (none are expected).
    presence = {"hgetall", "evalsha", "eval", "hscan", "sadd", "srem", "smembers", "hlen"}
    return {
        "seconds": seconds,
        "calls": calls,
        "per_pod_per_heartbeat": per_pod_period,
        "presence_per_pod_per_heartbeat": round(sum(v for k, v in per_pod_period.items() if k in presence), 2),
    }


async def stats_latency(connection: HttpConnection, requests: int) -> dict[str, Any]:
    times: list[float] = []
    for _ in range(requests):
        started = time.perf_counter()
        await get_json(connection, f"/v1/channels/{CHANNEL}/presence/stats")
        times.append((time.perf_counter() - started) * 1000)
    return {
        "requests": requests,
        "p50_ms": round(percentile(times, 0.5), 2),
        "p99_ms": round(percentile(times, 0.99), 2),
        "max_ms": round(max(times), 2),
    }


async def page_all(connection: HttpConnection, redis: Redis, expected: int) -> dict[str, Any]:
    await redis.command("SLOWLOG", "RESET")
    before = commandstats(await redis.command("INFO", "commandstats"))
    started = time.perf_counter()
    cursor, pages, seen = 0, 0, set()
    while True:
        page = await get_json(connection, f"/v1/channels/{CHANNEL}/presence?limit=1000&cursor={cursor}")
        pages += 1
        seen.update(c["client"] for c in page["clients"])
        cursor = page["cursor"]
        if cursor == 0:
            break
    seconds = time.perf_counter() - started
    after = commandstats(await redis.command("INFO", "commandstats"))
    slowlog = (await redis.command("SLOWLOG", "LEN")).strip()
    hscan_calls = after["hscan"][0] - before.get("hscan", (0, 0.0))[0]
    return {
        "pages": pages,
        "clients_seen": len(seen),
        "complete": len(seen) == expected,
        "seconds": round(seconds, 3),
        "hscan_calls": hscan_calls,
        "hscan_usec_per_call": after["hscan"][1],
        "slowlog_entries_over_10ms": int(slowlog or 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=1000, help="stats requests timed")
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="the quiet window whose commands count")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
