"""The Deployment the operator writes for a Gateway's ``spec.auth`` runs a pod that enforces it.

No Kubernetes runs here, so the test plays the kubelet's part, and only that: it lays each Secret volume of the
operator-built pod spec out as the kubelet does (a timestamped directory, the ``..data`` symlink, one symlink per
entry, and an atomic swap of ``..data`` when the Secret is edited), moves the mount paths under a temporary
directory, and starts a real pod with the container's own environment. What is proven is the contract between
the operator's builder and ``fleetcast serve``: the variables and files line up, rotation by editing the Secret
reaches a running pod, and the Gateway's defaults are the closed ones.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from fleetcast_operator.gateway.resources import SECRETS_DIR, deployment
from fleetcast_operator.gateway.spec import parse_gateway_spec
from tests.support.clients import ws_client, ws_subscribe
from tests.support.gateway import QUICK_STOP, GatewayProcess, gateway
from tests.support.processes import RedisServer
from tests.support.tokens import AUDIENCE, Keys

APP = "https://app.example.com"


def project_secret(volume: Mapping[str, Any], data: Mapping[str, str], mount: Path) -> None:
    """Write ``data`` (a Secret's entries) where the kubelet would for ``volume``, replacing what is there."""
    items = volume["secret"].get("items") or [{"key": k, "path": k} for k in data]
    mount.mkdir(parents=True, exist_ok=True)
    version = mount / f"..{time.time_ns()}"
    version.mkdir()
    for item in items:
        (version / item["path"]).write_text(data[item["key"]])
    staged = mount / "..data_tmp"
    staged.symlink_to(version.name)
    os.replace(staged, mount / "..data")  # the kubelet's atomic switch to the new version
    for item in items:
        link = mount / item["path"]
        if not link.is_symlink():
            link.symlink_to(f"..data/{item['path']}")


class Kubelet:
    """The operator's pod spec for one Gateway, materialized: Secret volumes under ``root``, env with paths."""

    def __init__(self, spec: Mapping[str, Any], secrets: dict[str, dict[str, str]], root: Path) -> None:
        pod = deployment("edge", "realtime", "uid-1", parse_gateway_spec(spec), replicas=1)["spec"]["template"]
        self.container = pod["spec"]["containers"][0]
        self.volumes = {v["name"]: v for v in pod["spec"]["volumes"] if "secret" in v}
        self.secrets, self.root = secrets, root
        for name in self.volumes:
            self.edit(self.volumes[name]["secret"]["secretName"], secrets[self.volumes[name]["secret"]["secretName"]])

    def mount_of(self, volume: str) -> Path:
        mount = next(m for m in self.container["volumeMounts"] if m["name"] == volume)
        return self.root / Path(mount["mountPath"]).relative_to(SECRETS_DIR)

    def edit(self, secret: str, data: dict[str, str]) -> None:
        """``kubectl edit secret``: every volume of that Secret gets the new entries."""
        self.secrets[secret] = data
        for name, volume in self.volumes.items():
            if volume["secret"]["secretName"] == secret:
                project_secret(volume, data, self.mount_of(name))

    def environment(self) -> dict[str, str]:
        env = {}
        for variable in self.container["env"]:
            if "value" in variable:
                env[variable["name"]] = variable["value"].replace(SECRETS_DIR, str(self.root))
        return env


@pytest.fixture
def pod_and_kubelet(redis: RedisServer) -> Iterator[tuple[GatewayProcess, Kubelet, Keys]]:
    keys = Keys()
    spec = {
        "image": "fleetcast/gateway:test",
        "redis": {"url": redis.url},
        "auth": {
            "allowedOrigins": [APP],
            "publishKeysSecretRef": {"name": "backends"},
            "jwt": {"secretRef": {"name": "jwt", "key": "hs256"}, "audience": AUDIENCE},
        },
    }
    secrets = {"backends": {"ci": "ci-key-0123456789abcdef"}, "jwt": {"hs256": keys.secret.decode()}}
    with tempfile.TemporaryDirectory(prefix="fleetcast-kubelet-") as root:
        kubelet = Kubelet(spec, secrets, Path(root))
        env = kubelet.environment()
        # Only the speed of noticing a rotated file is shortened; the pod gets every other value as built.
        env["FLEETCAST_KEY_RELOAD_SECONDS"] = "0.2"
        try:
            with gateway("--host", "127.0.0.1", *QUICK_STOP, env=env) as pod:
                yield pod, kubelet, keys
        finally:
            keys.cleanup()


async def test_operator_built_pod_enforces_the_gateway_auth(
    pod_and_kubelet: tuple[GatewayProcess, Kubelet, Keys],
) -> None:
    """Closed by default; the JWT secret and API keys of the mounted Secrets work; other origins get 403; an
    edited Secret rotates the API key on the running pod."""
    pod, kubelet, keys = pod_and_kubelet
    channel = "news:contract"
    async with httpx.AsyncClient(base_url=pod.url, timeout=10) as http:
        anonymous = await http.get(f"/v1/channels/{channel}/history")
        assert anonymous.status_code == 401, anonymous.text
        token = keys.hs256(sub="u1", channels=["news:*"])
        granted = await http.get(f"/v1/channels/{channel}/history", headers={"Authorization": f"Bearer {token}"})
        assert granted.status_code == 200, granted.text

        body = {"data": {"n": 1}}
        assert (await http.post(f"/v1/channels/{channel}/events", json=body)).status_code == 401
        key = {"Authorization": "Bearer ci-key-0123456789abcdef"}
        assert (await http.post(f"/v1/channels/{channel}/events", json=body, headers=key)).status_code == 201

        with pytest.raises(InvalidStatus) as refused:
            async with ws_client(pod.ws_url, origin="https://evil.example"):
                pass
        assert refused.value.response.status_code == 403
        async with ws_client(pod.ws_url, origin=APP, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            assert (await ws_subscribe(ws, channel))["op"] == "subscribed"

        kubelet.edit("backends", {"ci": "ci-key-rotated-fedcba9876543210"})
        rotated = {"Authorization": "Bearer ci-key-rotated-fedcba9876543210"}
        deadline = time.monotonic() + 10
        while (await http.post(f"/v1/channels/{channel}/events", json=body, headers=rotated)).status_code != 201:
            assert time.monotonic() < deadline, "the edited Secret never reached the pod"
            await asyncio.sleep(0.1)
        assert (await http.post(f"/v1/channels/{channel}/events", json=body, headers=key)).status_code in (401, 403)
