"""Real processes for tests: a redis-server and fleetcast gateway pods on free loopback ports.

Every process is started by a context manager and stopped by its PID when the block ends, whatever happens
inside it. Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, *, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something accepts connections on 127.0.0.1:port; fail if ``proc`` dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


def stop_process(proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Stop one process we started, by its PID: ``sig``, then SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def redis_server_binary() -> str:
    """The redis-server to run, or a skip that says what to install."""
    path = shutil.which("redis-server")
    if path is None:
        pytest.fail("redis-server is not installed: run `make test` (it installs it) or `apt-get install redis-server`")
    return path


@dataclass
class RedisServer:
    """A redis-server process on a free loopback port; restartable in place (same port, same data dir)."""

    appendonly: bool = False
    port: int = field(default_factory=free_port)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fleetcast-redis-")))
    proc: subprocess.Popen[bytes] | None = None
    extra_args: tuple[str, ...] = ()
    """More redis-server flags, e.g. ``("--aclfile", path)``."""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--protected-mode", "yes",
            "--loglevel", "warning",
            *self.extra_args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, proc=self.proc)

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is not None:
            stop_process(self.proc, sig=signal.SIGKILL if kill else signal.SIGTERM)
            self.proc = None

    def restart(self, *, downtime: float = 0.0) -> None:
        self.stop()
        time.sleep(downtime)
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def redis_server(*, appendonly: bool = False, extra_args: tuple[str, ...] = ()) -> Iterator[RedisServer]:
    """A fresh redis-server for the block; stopped by PID and its data removed afterwards."""
    server = RedisServer(appendonly=appendonly, extra_args=extra_args)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


PYTHON = sys.executable


def declare(redis: RedisServer, family: str, *flags: str) -> None:
    """Declare a channel family's policy with ``fleetcast channel set`` (the operator writes the same record)."""
    subprocess.run(
        [PYTHON, "-m", "fleetcast", "channel", "set", family, "--redis-url", redis.url, *flags],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
