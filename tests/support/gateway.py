"""Gateway pods as real ``fleetcast serve`` processes on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import PYTHON, free_port, stop_process, wait_for_port

QUICK_STOP = ("--drain-propagation", "0", "--drain-timeout", "2")
"""Flags for pods whose test is not about draining: SIGTERM then ends them in well under a second."""


@dataclass
class GatewayProcess:
    """One pod. ``args`` are extra ``fleetcast serve`` flags; output goes to a log file for post-mortems.

    Its admin listener is on a free port of its own with a token the test writes to a file (``admin_url``,
    ``admin_headers``); with ``generated_token`` the pod makes its token itself, as in a Deployment.
    """

    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    generated_token: bool = False
    admin_token_file: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    def start(self) -> None:
        fd, name = tempfile.mkstemp(prefix="fleetcast-pod-", suffix=".log")
        self.log_path = Path(name)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        admin = ["--admin-port", str(self.admin_port)]
        if not self.generated_token:
            token_fd, token_name = tempfile.mkstemp(prefix="fleetcast-admin-", suffix=".token")
            with os.fdopen(token_fd, "w") as token_file:
                token_file.write(self.admin_token + "\n")
            self.admin_token_file = Path(token_name)
            admin += ["--admin-token-file", token_name]
        cmd = [
            PYTHON,
            "-m",
            "fleetcast",
            "serve",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            *admin,
            *self.args,
        ]
        with os.fdopen(fd, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_for_port(self.port, proc=self.proc)

    def stop(self, *, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc is not None:
            stop_process(self.proc, sig=sig, timeout=timeout)

    def kill(self) -> None:
        self.stop(sig=signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def cleanup(self) -> None:
        self.stop()
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
        if self.admin_token_file is not None:
            self.admin_token_file.unlink(missing_ok=True)


@contextlib.contextmanager
def gateway(*args: str, env: dict[str, str] | None = None) -> Iterator[GatewayProcess]:
    """A running pod for the block, stopped by PID afterwards; its log is printed if the block fails."""
    pod = GatewayProcess(args=list(args), env=env or {})
    try:
        pod.start()
        yield pod
    except BaseException:
        print(f"--- log of pod on port {pod.port} ---\n{pod.log()[-4000:]}")
        raise
    finally:
        pod.cleanup()
