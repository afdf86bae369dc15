"""The internal port (issue 13, acceptance 1): admin, metrics and docs live on the admin listener, behind the
admin token; the public port knows none of them; ``fleetcast drain`` fails loudly when nothing answers."""

from __future__ import annotations

import os
import socket
import stat
import subprocess

import httpx
import pytest

from fleetcast.auth.admin_token import generated_path
from tests.support.front import front
from tests.support.gateway import QUICK_STOP, GatewayProcess, gateway
from tests.support.processes import PYTHON, free_port

ADMIN_ONLY = ["/internal/drain", "/metrics", "/docs", "/redoc", "/openapi.json"]


def fleetcast_drain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "fleetcast", "drain", *args], capture_output=True, text=True, timeout=30, check=False
    )


async def test_public_port_answers_404_for_admin_metrics_and_docs() -> None:
    """GET and POST of /internal/drain, /metrics, /docs, /redoc and /openapi.json on the public port: 404, with
    or without the admin token; the probes stay there."""
    with gateway(*QUICK_STOP) as pod:
        async with httpx.AsyncClient(base_url=pod.url, timeout=5) as http:
            for headers in ({}, pod.admin_headers):
                for path in ADMIN_ONLY:
                    assert (await http.get(path, headers=headers)).status_code == 404, path
                    assert (await http.post(path, headers=headers)).status_code in (404, 405), path
                assert (await http.post("/internal/drain", headers=headers)).status_code == 404
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 200
        async with httpx.AsyncClient(base_url=pod.admin_url, headers=pod.admin_headers, timeout=5) as admin:
            assert (await admin.get("/internal/drain")).json()["state"] == "serving"


async def test_admin_port_needs_the_token_even_through_a_loopback_forwarder() -> None:
    """Directly and through a loopback TCP forwarder (a sidecar proxy's view): no token 401, a wrong one 403, the
    pod's token 200; the drain is started only with it. Metrics and docs answer without a token."""
    with gateway(*QUICK_STOP) as pod:
        async with front(pod.admin_port) as forwarder:
            for base in (pod.admin_url, forwarder.url):
                async with httpx.AsyncClient(base_url=base, timeout=5) as http:
                    for method in ("GET", "POST"):
                        refused = await http.request(method, "/internal/drain")
                        assert refused.status_code == 401, (base, method, refused.text)
                        assert refused.json()["error"]["code"] == "unauthorized"
                        assert refused.headers["www-authenticate"].startswith("Bearer")
                        wrong = await http.request(
                            method, "/internal/drain", headers={"Authorization": "Bearer not-the-token"}
                        )
                        assert wrong.status_code == 403, (base, method, wrong.text)
                        basic = await http.request(method, "/internal/drain", headers={"Authorization": "Basic eDp5"})
                        assert basic.status_code == 401
                    status = await http.get("/internal/drain", headers=pod.admin_headers)
                    assert (status.status_code, status.json()["state"]) == (200, "serving")
                    assert (await http.get("/metrics")).text.count("fleetcast_connections") > 0
                    assert "/v1/channels/{channel}/events" in (await http.get("/openapi.json")).json()["paths"]
                    assert (await http.get("/docs")).status_code == 200
            async with httpx.AsyncClient(base_url=forwarder.url, headers=pod.admin_headers, timeout=5) as admin:
                started = await admin.post("/internal/drain", params={"exit": "false"})
                assert (started.status_code, started.json()["state"]) == (202, "draining")


def test_drain_command_fails_when_nothing_answers() -> None:
    """``fleetcast drain`` to a port nobody listens on exits 1 and says so (it used to print "drained", exit 0)."""
    port = free_port()
    token_file = generated_path(port)
    token_file.write_text("some-token\n")
    try:
        result = fleetcast_drain("--admin-port", str(port), "--timeout", "5")
    finally:
        token_file.unlink()
    assert result.returncode == 1, result
    assert f"nothing answers on http://127.0.0.1:{port}" in result.stderr
    assert "drained" not in result.stdout


def test_drain_command_without_a_token_file_fails_with_its_name() -> None:
    """Without the token file (no pod here made one), ``fleetcast drain`` exits 1 naming the file it looked for."""
    port = free_port()
    result = fleetcast_drain("--admin-port", str(port), "--timeout", "5")
    assert result.returncode == 1, result
    assert str(generated_path(port)) in result.stderr


def test_drain_command_refused_with_a_wrong_token() -> None:
    """A token file that is not the pod's: the pod answers 403 and ``fleetcast drain`` exits 1 with the answer."""
    with gateway(*QUICK_STOP) as pod:
        wrong = pod.log_path.with_suffix(".wrong")  # type: ignore[union-attr]
        wrong.write_text("not-the-token")
        try:
            result = fleetcast_drain("--admin-port", str(pod.admin_port), "--admin-token-file", str(wrong))
        finally:
            wrong.unlink()
        assert result.returncode == 1, result
        assert "drain refused: 403" in result.stderr
        assert httpx.get(f"{pod.admin_url}/internal/drain", headers=pod.admin_headers).json()["state"] == "serving"


@pytest.mark.parametrize("via", ["environment", "flags"])
def test_drain_command_drains_a_live_pod_with_the_token_it_generated(via: str) -> None:
    """A pod given no token file writes a random one to /tmp (mode 0600); ``fleetcast drain`` (the preStop hook,
    port from FLEETCAST_ADMIN_PORT as in the Deployment, or from the flag) finds it, drains the pod and exits 0;
    the pod exits 0 and removes the file."""
    pod = GatewayProcess(args=["--drain-propagation", "0", "--drain-timeout", "5"], generated_token=True)
    try:
        pod.start()
        path = generated_path(pod.admin_port)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        token = path.read_text().strip()
        status = httpx.get(f"{pod.admin_url}/internal/drain", headers={"Authorization": f"Bearer {token}"})
        assert status.status_code == 200
        if via == "flags":
            result = fleetcast_drain("--admin-port", str(pod.admin_port), "--timeout", "20")
        else:
            env = {**os.environ, "FLEETCAST_ADMIN_PORT": str(pod.admin_port)}
            result = subprocess.run(
                [PYTHON, "-m", "fleetcast", "drain"], capture_output=True, text=True, timeout=30, check=False, env=env
            )
        assert result.returncode == 0, result
        assert "drained" in result.stdout
        assert pod.proc is not None
        assert pod.proc.wait(timeout=15) == 0, pod.log()[-2000:]
        assert not path.exists()
    finally:
        pod.cleanup()


def test_admin_port_in_use_or_equal_to_the_public_port_stops_the_pod_with_a_message() -> None:
    """A pod whose admin port is its public port, or taken by another process, refuses to start and says why
    (a laptop's Prometheus on 9090, say); it leaves no token file behind."""
    port = free_port()

    def serve(admin_port: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-m", "fleetcast", "serve", "--port", str(port), "--admin-port", str(admin_port)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    same = serve(port)
    assert same.returncode != 0
    assert "the admin port needs its own" in same.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        in_use = serve(busy)
    assert in_use.returncode != 0
    assert f"cannot listen on 127.0.0.1:{busy}" in in_use.stderr
    assert not generated_path(busy).exists()


async def test_admin_port_off_serves_nothing_extra() -> None:
    """``--admin-port off`` (or 0, or FLEETCAST_ADMIN_PORT=off): no admin listener, and the public port still
    answers 404 for admin, metrics and docs."""
    with gateway(*QUICK_STOP, "--admin-port", "off") as pod:
        async with httpx.AsyncClient(base_url=pod.url, timeout=5) as http:
            for path in ADMIN_ONLY:
                assert (await http.get(path, headers=pod.admin_headers)).status_code == 404, path
            with pytest.raises(httpx.ConnectError):
                await http.get(f"{pod.admin_url}/metrics")
