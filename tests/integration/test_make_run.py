"""``make run`` serves the gateway, and curl sees an event published with curl (issue 2, acceptance 1)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def test_make_run_serves_and_curl_receives_a_published_event() -> None:
    """The README's `make run`, then the README's curl commands: the SSE client prints the event."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is needed for this test (Debian: apt-get install curl)")
    port = free_port()  # FLEETCAST_PORT moves it off 8000 so a developer's own `make run` is left alone
    env = {**os.environ, "FLEETCAST_PORT": str(port), "FLEETCAST_ADMIN_PORT": str(free_port()),
           "FLEETCAST_LOG_LEVEL": "warning"}  # fmt: skip
    make = subprocess.Popen(
        ["make", "-s", "run"], cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, timeout=120, proc=make)
        base = f"http://127.0.0.1:{port}"
        sse = subprocess.Popen(
            [curl, "-sN", "--max-time", "20", f"{base}/v1/channels/demo/events"], stdout=subprocess.PIPE
        )
        try:
            # Publish once the subscription is live (the channel's info counts this pod's subscribers).
            deadline = time.monotonic() + 15
            while httpx.get(f"{base}/v1/channels/demo", timeout=5).json()["subscribers"] < 1:
                assert time.monotonic() < deadline, "the curl subscriber never showed up"
                time.sleep(0.05)
            posted = subprocess.run(
                [curl, "-s", "-X", "POST", f"{base}/v1/channels/demo/events",
                 "-H", "Content-Type: application/json", "-d", '{"data":{"n":1}}'],
                capture_output=True, check=True, timeout=20,
            )  # fmt: skip
            assert b'"id"' in posted.stdout
            output = b""
            assert sse.stdout is not None
            deadline = time.monotonic() + 15
            while b"data: " not in output and time.monotonic() < deadline:
                output += os.read(sse.stdout.fileno(), 4096)
            assert b'data: {"n":1}' in output, output
        finally:
            sse.kill()
            sse.wait(timeout=5)
            assert sse.stdout is not None
            sse.stdout.close()
    finally:
        # make runs the server as its child: stop the whole process group we started, by its id.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(make.pid, signal.SIGTERM)
        try:
            make.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait(timeout=5)
