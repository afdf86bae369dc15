"""Access rules declared in Channel resources reach the pods (issue 12, acceptance 6): the shipped examples are
applied to the real operator (kopf against kmock), which writes their policies to a real Redis, and a real pod
of the Gateway enforces them: ``chat`` (``anonymous: false``) refuses anonymous readers and admits tokens,
``scoreboard`` (``anonymous: true``) admits everyone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import kmock
import yaml

from tests.operator.harness import CHANNELS, GATEWAYS, NAMESPACE, create, eventually, new_object, running_operator
from tests.support.clients import ws_client, ws_recv, ws_send, ws_subscribe
from tests.support.gateway import QUICK_STOP, GatewayProcess, gateway
from tests.support.processes import RedisServer
from tests.support.tokens import Keys

EXAMPLES = Path(__file__).parents[2] / "manifests" / "examples"
GATEWAY = "edge"


def example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    return new_object(document["apiVersion"], document["kind"], document["metadata"]["name"], document["spec"])


async def status(pod: GatewayProcess, channel: str, token: str | None = None) -> int:
    """What an SSE subscribe to ``channel`` answers (200 means the stream opened)."""
    params = {"token": token} if token else {}
    async with (
        httpx.AsyncClient(base_url=pod.url, timeout=10) as client,
        client.stream("GET", f"/v1/channels/{channel}/events", params=params) as response,
    ):
        return response.status_code


async def test_the_chat_example_is_private_and_the_scoreboard_public_end_to_end(
    k8s: tuple[kmock.KubernetesEmulator, str], redis: RedisServer, keys: Keys
) -> None:
    """Operator -> Redis policy -> pod: anonymous readers of chat get 401, a token for chat:* gets in and may
    publish from its WebSocket (``fromClients``); anyone reads the scoreboard. Before the Channels exist, the
    Gateway's closed default already refuses anonymous readers."""
    emulator, url = k8s
    pod_args = ["--redis-url", redis.url, "--gateway", GATEWAY, "--namespace", NAMESPACE]
    with gateway(*QUICK_STOP, *pod_args, *keys.pod_args(audience=None)) as pod:
        assert await status(pod, "scoreboard") == 401, "undeclared families follow the Gateway's closed default"
        async with running_operator(url):
            spec = {"image": "fleetcast:test", "redis": {"url": redis.url}}
            await create(emulator, GATEWAYS, new_object("fleetcast.dev/v1alpha1", "Gateway", GATEWAY, spec))
            await create(emulator, CHANNELS, example("chat"))
            await create(emulator, CHANNELS, example("scoreboard"))

            async def scoreboard_public() -> bool:
                return await status(pod, "scoreboard") == 200

            member = keys.hs256(sub="ann", channels=["chat:*"], publish=["chat:*"])

            async def chat_declared() -> bool:
                # The operator handles the two Channels concurrently: the scoreboard's policy may land first.
                async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
                    info = await client.get("/v1/channels/chat:room-42", headers={"Authorization": f"Bearer {member}"})
                return info.status_code == 200 and info.json()["declared"] is True

            await eventually(scoreboard_public, timeout=20, what="the scoreboard policy reaching the pod")
            await eventually(chat_declared, timeout=20, what="the chat policy reaching the pod")
        assert await status(pod, "chat:room-42") == 401
        assert await status(pod, "chat:room-42", member) == 200
        async with ws_client(pod.ws_url, additional_headers={"Authorization": f"Bearer {member}"}) as ws:
            await ws_subscribe(ws, "chat:room-42")
            await ws_send(ws, op="publish", channel="chat:room-42", data={"text": "hi"}, ref=2)
            assert {(await ws_recv(ws))["op"], (await ws_recv(ws))["op"]} == {"published", "event"}
        async with ws_client(pod.ws_url) as anonymous:
            await ws_send(anonymous, op="publish", channel="scoreboard", data={"match": 1}, ref=3)
            assert (await ws_recv(anonymous))["code"] == "forbidden", "scoreboard is read-only for clients"
