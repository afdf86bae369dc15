"""The processes a benchmark run starts, each stopped by its pid: a Redis of its own, fleetcast pods, the peers'
pods (Socket.IO; Nchan in nginx, on Redis or in memory), the load client; and what ``/proc`` says about them (CPU
seconds, RSS).

Every child inherits this process's file-descriptor limit, which :func:`raise_fd_limit` lifts to the hard limit
first (10,000 connections need more than the usual 1,024). Loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.ws_fastpath import HOST, ROOT, HttpConnection, child_env, cpu_seconds, free_port, stop, wait_healthy
from fleetcast.auth import admin_token

PEER_DIR = ROOT / "bench" / "peers" / "socketio"
NCHAN_CONF = ROOT / "bench" / "peers" / "nchan" / "nginx.conf.in"
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
NCHAN_STORAGE = {
    "nchan": ("upstream bench_redis {{ nchan_redis_server {url}; }}", "nchan_redis_pass bench_redis;"),
    "nchan-mem": ("# memory: Nchan's default storage", ""),
}
"""The Nchan peer kinds and what each puts in the config (http level, each location): Redis (the fleet set-up,
every pod on one Redis) and shared memory (one nginx alone, Nchan's fastest)."""
SERVERS = ("fleetcast", "socketio", *NCHAN_STORAGE)
PAGE = os.sysconf("SC_PAGE_SIZE")


def raise_fd_limit() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def rss_bytes(pid: int) -> int:
    """Resident set size from ``/proc/<pid>/statm``."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def cpu_total(pid: int) -> float:
    user, system = cpu_seconds(pid)
    return user + system


@contextlib.asynccontextmanager
async def process(command: Sequence[str], log: Path, cwd: Path = ROOT) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("ab") as stderr:
        child = await asyncio.create_subprocess_exec(
            *command, cwd=cwd, env=child_env(), stdin=asyncio.subprocess.DEVNULL, stdout=stderr, stderr=stderr
        )
    try:
        yield child
    finally:
        await stop(child)


@dataclass
class Redis:
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    async def command(self, *args: str) -> bytes:
        """One command through redis-cli (setup and flushes only, never on a measured path)."""
        cli = await asyncio.create_subprocess_exec(
            "redis-cli", "-p", str(self.port), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, _ = await cli.communicate()
        return out


@contextlib.asynccontextmanager
async def redis_server(workdir: Path) -> AsyncIterator[Redis]:
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed (make system-deps)")
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
               "--dir", str(workdir), "--maxclients", "10000"]  # fmt: skip
    async with process(command, workdir / "redis.log") as child:
        redis = Redis(port, child.pid)
        for _ in range(100):
            if (await redis.command("PING")).strip() == b"PONG":
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError("redis-server did not answer PING")
        yield redis


@dataclass
class Pod:
    """A running server: fleetcast or a peer (one process each, so its pid's CPU and RSS are the server's)."""

    server: str
    port: int
    pid: int
    admin_port: int = 0
    """fleetcast's admin listener (drain), with the token the pod generated; 0 for the peers."""

    def admin_token(self) -> str:
        return admin_token.read(admin_token.generated_path(self.admin_port))

    def cpu(self) -> float:
        return cpu_total(self.pid)

    def rss(self) -> int:
        return rss_bytes(self.pid)


def fleetcast_command(port: int, redis: Redis, name: str, extra: Sequence[str] = (), admin_port: int = 0) -> list[str]:
    """``fleetcast serve`` for one pod; ``admin_port`` 0 leaves its admin listener off."""
    return [
        sys.executable, "-m", "fleetcast", "serve", "--port", str(port), "--redis-url", redis.url,
        "--pod-name", name, "--log-level", "warning", "--history-max-events", "2000",
        "--max-connections", "20000", "--admin-port", str(admin_port), *extra,
    ]  # fmt: skip


def peer_command(port: int, redis: Redis, extra: Sequence[str] = ()) -> list[str]:
    return ["node", str(PEER_DIR / "server.js"), "--port", str(port), "--redis-url", redis.url, *extra]


def nchan_command(server: str, port: int, redis: Redis, workdir: Path, name: str) -> list[str]:
    """nginx in the foreground as one process (``master_process off``) with the config of
    ``bench/peers/nchan/nginx.conf.in`` filled in for this pod; everything it writes stays in ``workdir``."""
    if shutil.which("nginx") is None or not NCHAN_MODULE.exists():
        raise RuntimeError("the Nchan peer needs nginx and libnginx-mod-nchan (apt-get install libnginx-mod-nchan)")
    upstream, redis_pass = NCHAN_STORAGE[server]
    fills = {"@WORKDIR@": str(workdir), "@NAME@": f"{server}-{name}", "@PORT@": str(port),
             "@UPSTREAM@": upstream.format(url=redis.url), "@REDIS_PASS@": redis_pass}  # fmt: skip
    text = NCHAN_CONF.read_text()
    for placeholder, value in fills.items():
        text = text.replace(placeholder, value)
    config = workdir / f"nginx-{server}-{name}.conf"
    config.write_text(text)
    return ["nginx", "-p", str(workdir), "-c", str(config), "-e", str(workdir / f"nginx-{server}-{name}-error.log")]


@contextlib.asynccontextmanager
async def pod(server: str, redis: Redis, workdir: Path, name: str, extra: Sequence[str] = ()) -> AsyncIterator[Pod]:
    port = free_port()
    admin_port = free_port() if server == "fleetcast" else 0
    if server == "fleetcast":
        command = fleetcast_command(port, redis, name, extra, admin_port)
    elif server in NCHAN_STORAGE:
        command = nchan_command(server, port, redis, workdir, name)
    else:
        command = peer_command(port, redis, extra)
    async with process(command, workdir / f"{server}-{name}.log") as child:
        await wait_healthy(port, child)
        yield Pod(server, port, child.pid, admin_port)


class LoadClient:
    """The load client process (:mod:`bench.suite.loadclient`), one JSON command and answer at a time."""

    def __init__(self, child: asyncio.subprocess.Process) -> None:
        self.child = child
        self.pid = child.pid

    async def call(self, deadline: float = 180.0, **command: Any) -> dict[str, Any]:
        assert self.child.stdin is not None
        assert self.child.stdout is not None
        self.child.stdin.write(json.dumps(command).encode() + b"\n")
        await self.child.stdin.drain()
        line = await asyncio.wait_for(self.child.stdout.readline(), deadline)
        if not line:
            raise RuntimeError("load client exited")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"load client: {answer['error']}")
        return answer

    async def connect(self, **spec: Any) -> dict[str, Any]:
        answer = await self.call(cmd="connect", **spec)
        if answer["failed"]:
            raise RuntimeError(f"{answer['failed']} connections failed: {answer['errors']}")
        return answer


@contextlib.asynccontextmanager
async def load_client(workdir: Path) -> AsyncIterator[LoadClient]:
    with (workdir / "loadclient.log").open("ab") as stderr:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.suite.loadclient", cwd=ROOT, env=child_env(),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
            limit=1 << 24,
        )  # fmt: skip
    try:
        assert child.stdout is not None
        await asyncio.wait_for(child.stdout.readline(), 20)
        yield LoadClient(child)
    finally:
        if child.stdin is not None:
            with contextlib.suppress(ConnectionError):
                child.stdin.write(b'{"cmd": "exit"}\n')
                child.stdin.close()
        await stop(child, signal.SIGTERM)


async def http_json(port: int, method: str, path: str, body: bytes = b"", token: str = "") -> tuple[int, Any]:
    connection = await HttpConnection.open(port)
    try:
        status, text = await connection.request(method, path, body, token)
    finally:
        connection.close()
    return status, json.loads(text) if text else None
