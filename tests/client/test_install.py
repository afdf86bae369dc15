"""The client distribution (``clients/python``) installs into an empty virtual environment, alone, and works.

The project is copied to a temporary directory with its symbolic links resolved (what an sdist holds), installed
by pip into a venv made with ``--without-pip`` (this interpreter's pip drives it with ``--python``; nothing is
cached outside the temporary directory), and then used from that venv against a real pod.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetcast import __version__
from tests.support.gateway import QUICK_STOP, GatewayProcess, gateway
from tests.support.processes import PYTHON

CLIENT_PROJECT = Path(__file__).resolve().parents[2] / "clients" / "python"
SERVER_ONLY = {
    "fastapi",
    "starlette",
    "uvicorn",
    "redis",
    "hiredis",
    "uvloop",
    "httptools",
    "prometheus-client",
    "pyjwt",
}

SUBSCRIBER = """
import asyncio, json, sys
from fleetcast.client import WsClient

async def main():
    async with WsClient(sys.argv[1], {"demo:install": "0-0"}) as client:
        event = await asyncio.wait_for(anext(client), 10)
    print(json.dumps({"id": event.id, "type": event.type, "data": event.data}))
    print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("fastapi", "uvicorn", "redis"))))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty venv with ``pip install clients/python`` done in it; its bin directory."""
    tmp = tmp_path_factory.mktemp("client-install")
    project = tmp / "fleetcast-client"
    shutil.copytree(CLIENT_PROJECT, project, symlinks=False, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    env = {**os.environ, "PIP_NO_CACHE_DIR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    result = subprocess.run(
        [PYTHON, "-m", "pip", "--python", str(python), "install", "--quiet", str(project)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    yield env_dir / "bin"
    shutil.rmtree(tmp, ignore_errors=True)


def installed(bin_dir: Path) -> dict[str, str]:
    result = subprocess.run(
        [PYTHON, "-m", "pip", "--python", str(bin_dir / "python"), "list", "--format", "json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return {p["name"].lower(): p["version"] for p in json.loads(result.stdout)}


@pytest.fixture(scope="module")
def pod() -> Iterator[GatewayProcess]:
    with gateway(*QUICK_STOP) as running:
        yield running


def test_the_client_installs_without_the_servers_dependencies(client_venv: Path) -> None:
    """pip list in the venv: fleetcast-client at the server's version, and no FastAPI, uvicorn, Redis, OTel."""
    packages = installed(client_venv)
    assert packages.get("fleetcast-client") == __version__
    assert not {name for name in packages if name in SERVER_ONLY or name.startswith("opentelemetry")}, packages
    assert {"httpx", "websockets", "orjson"} <= set(packages)


def run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=30)


def test_a_script_in_that_venv_receives_an_event_from_a_pod(client_venv: Path, pod: GatewayProcess) -> None:
    """The venv's fleetcast-client publishes; a small WsClient script there receives the event."""
    assert run(client_venv / "fleetcast-client", "--version").stdout.strip() == f"fleetcast-client {__version__}"
    published = run(client_venv / "fleetcast-client", "publish", "demo:install", '{"hello": "venv"}', "--url", pod.url)
    assert published.returncode == 0, published.stderr
    received = run(client_venv / "python", "-c", SUBSCRIBER, pod.ws_url)
    assert received.returncode == 0, received.stderr
    event, server_modules = (json.loads(line) for line in received.stdout.splitlines())
    assert event == {"id": published.stdout.strip(), "type": "message", "data": {"hello": "venv"}}
    assert server_modules == []
