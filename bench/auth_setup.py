"""What access control costs a pod: connection set-up with and without a token, and fan-out to the two.

Runs ``python -m bench.auth_setup`` (``--connections``, ``--repetitions``, ``--events``). One ``fleetcast serve``
pod on the embedded broker, with an HS256 secret configured, serves three kinds of client in turn, interleaved
over the repetitions so that machine noise spreads over all of them:

* ``anonymous``: connect, ``subscribe``;
* ``header``: connect with ``Authorization: Bearer <token>`` (verified in the handshake), ``subscribe``;
* ``query``: connect to ``/v1/ws?token=<token>`` (a browser's way to skip the extra op), ``subscribe``;
* ``auth op``: connect, ``auth {token}`` (a browser's other way, and how any client refreshes), ``subscribe``;
* ``reconnect``: the ``header`` clients again, right after them, with the same tokens (a drain or a network
  change: the pod remembers tokens it verified, so these skip the signature check).

Every client has its own token (its own ``sub``), fresh for each measurement, so the first three token rows pay
one full verification per connection, as a fleet of distinct users does.

For each it reports the pod's CPU (``/proc``, user + system) per connection and connections per server
CPU-second, from the first connect to the last ``subscribed``, and the ratio to anonymous. Then it holds
``--connections`` anonymous and as many token subscribers on two channels of the same pod, publishes
``--events`` to each, and reports the pod's CPU per delivery for both: a token is verified once per connection,
so fan-out should not see it. Clients run in this process; only the pod's CPU is counted. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
from websockets.asyncio.client import ClientConnection, connect

from bench.ws_fastpath import HOST, cpu_seconds, free_port, started, wait_healthy

KINDS = ("anonymous", "header", "query", "auth op")
ROWS = (*KINDS, "reconnect")
CONCURRENCY = 64


def cpu(pid: int) -> float:
    user, system = cpu_seconds(pid)
    return user + system


async def open_client(port: int, kind: str, token: str, channel: str) -> ClientConnection:
    headers = {"Authorization": f"Bearer {token}"} if kind == "header" else None
    query = f"?token={token}" if kind == "query" else ""
    ws = await connect(f"ws://{HOST}:{port}/v1/ws{query}", subprotocols=["fleetcast.v1"], additional_headers=headers)  # type: ignore[list-item]
    if kind == "auth op":
        await ws.send(json.dumps({"op": "auth", "token": token, "ref": 0}))
        assert json.loads(await ws.recv())["op"] == "authed"
    await ws.send(json.dumps({"op": "subscribe", "channel": channel, "ref": 1}))
    reply = json.loads(await ws.recv())
    assert reply["op"] == "subscribed", reply
    return ws


class Tokens:
    """Signs a distinct HS256 token per client (own ``sub`` and ``jti``), before the pod's CPU is read."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.made = 0

    def fresh(self, count: int) -> list[str]:
        now = int(time.time())
        tokens = []
        for _ in range(count):
            self.made += 1
            claims = {"sub": f"user-{self.made}", "jti": secrets.token_hex(8), "channels": ["*"], "publish": ["*"]}
            tokens.append(jwt.encode({**claims, "exp": now + 3600}, self.secret, algorithm="HS256"))
        return tokens


async def open_many(port: int, kind: str, tokens: list[str], channel: str) -> list[ClientConnection]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(token: str) -> ClientConnection:
        async with gate:
            return await open_client(port, kind, token, channel)

    return list(await asyncio.gather(*(one(token) for token in tokens)))


async def close_all(clients: list[ClientConnection]) -> None:
    await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)


async def settled(port: int) -> None:
    """Wait until the pod has finished every close (its connection count is 0), so that the next measurement
    does not pay for this one's goodbyes."""
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}") as client:
        async with asyncio.timeout(30):
            while sum((await client.get("/readyz")).json()["connections"].values()):
                await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)


async def setup_cost(port: int, pid: int, kind: str, tokens: list[str]) -> float:
    """Pod CPU seconds to take one client of ``kind`` per token from connect to subscribed."""
    before = cpu(pid)
    clients = await open_many(port, kind, tokens, f"setup-{secrets.token_hex(4)}")
    spent = cpu(pid) - before
    await close_all(clients)
    await settled(port)
    return spent


async def fan_out_cost(port: int, pid: int, kind: str, tokens: list[str], events: int) -> float:
    """Pod CPU seconds per delivery, publishing ``events`` to one subscriber of ``kind`` per token."""
    channel = f"fanout-{secrets.token_hex(4)}"
    clients = await open_many(port, kind, tokens, channel)
    count, token = len(tokens), tokens[0]
    received = 0
    everything = asyncio.Event()

    async def drain(ws: ClientConnection) -> None:
        nonlocal received
        while True:
            message = json.loads(await ws.recv())
            if message["op"] == "event":
                received += 1
                if received == count * events:
                    everything.set()

    readers = [asyncio.create_task(drain(ws)) for ws in clients]
    publisher = httpx.AsyncClient(base_url=f"http://{HOST}:{port}", headers={"Authorization": f"Bearer {token}"})
    before = cpu(pid)
    try:
        for seq in range(events):
            response = await publisher.post(f"/v1/channels/{channel}/events", json={"data": seq})
            assert response.status_code == 201, response.text
        await asyncio.wait_for(everything.wait(), 60)
        return (cpu(pid) - before) / (count * events)
    finally:
        await publisher.aclose()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await close_all(clients)
        await settled(port)


@contextlib.asynccontextmanager
async def pod(secret_file: Path, log: Path) -> AsyncIterator[tuple[int, int]]:
    port = free_port()
    command = [sys.executable, "-m", "fleetcast", "serve", "--port", str(port), "--log-level", "warning",
               "--jwt-secret-file", str(secret_file), "--max-connections", "100000", "--admin-port", "0"]  # fmt: skip
    async with started(command, log) as process:
        await wait_healthy(port, process)
        yield port, process.pid


async def main_async(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="fleetcast-bench-auth-") as tmp:
        secret = secrets.token_urlsafe(48).encode()
        secret_file = Path(tmp) / "secret"
        secret_file.write_bytes(secret)
        tokens = Tokens(secret)
        n = args.connections
        async with pod(secret_file, Path(tmp) / "pod.log") as (port, pid):
            for kind in KINDS:  # imports, caches, first allocations
                await close_all(await open_many(port, kind, tokens.fresh(200), "warm-up"))
            await settled(port)
            costs: dict[str, list[float]] = {row: [] for row in ROWS}
            for repetition in range(args.repetitions):
                turn = repetition % len(KINDS)  # each kind goes first, second, third and fourth equally often
                for kind in KINDS[turn:] + KINDS[:turn]:
                    batch = tokens.fresh(n)
                    costs[kind].append(await setup_cost(port, pid, kind, batch))
                    if kind == "header":
                        costs["reconnect"].append(await setup_cost(port, pid, kind, batch))
            fan_out = {kind: await fan_out_cost(port, pid, kind, tokens.fresh(n), args.events) for kind in KINDS[:2]}
    anonymous = statistics.median(costs["anonymous"])
    print(f"connection set-up, {args.connections} clients x {args.repetitions} (medians; pod CPU only)")
    print("| clients | pod CPU per connection | connections / pod CPU-s | vs anonymous |")
    print("| --- | ---: | ---: | ---: |")
    for kind in ROWS:
        median = statistics.median(costs[kind])
        per = median / args.connections
        print(f"| {kind} | {per * 1000:.3f} ms | {1 / per:,.0f} | {anonymous / median:.2f}x |")
    print(f"\nfan-out, {args.connections} subscribers x {args.events} events")
    print("| subscribers | pod CPU per delivery | deliveries / pod CPU-s |")
    print("| --- | ---: | ---: |")
    for kind, per in fan_out.items():
        label = "anonymous" if kind == "anonymous" else "with a token"
        print(f"| {label} | {per * 1e6:.2f} us | {1 / per:,.0f} |")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--repetitions", type=int, default=6)
    parser.add_argument("--events", type=int, default=200)
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
