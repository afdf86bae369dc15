"""Hostile or odd input at the parsers: each gets its documented answer and the pod stays healthy (issue 13).

Every test ends by checking the pod: ``/healthz`` answers 200, a fresh subscriber still gets a published
event, and the pod's log holds no traceback.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.clients import publish, ws_client, ws_recv, ws_send, ws_subscribe
from tests.support.gateway import QUICK_STOP, GatewayProcess, gateway
from tests.support.processes import PYTHON

BIG = 2**64


@pytest.fixture(scope="module")
def pod() -> Iterator[GatewayProcess]:
    with gateway("--anonymous", *QUICK_STOP) as pod:
        yield pod


async def assert_healthy(pod: GatewayProcess) -> None:
    """The pod serves: health, and a publish reaches a new subscriber; nothing it logged is a traceback."""
    async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
        assert (await client.get("/healthz")).status_code == 200
        async with ws_client(pod.ws_url) as ws:
            await ws_subscribe(ws, "healthy")
            event_id = await publish(client, "healthy", {"ok": True})
            event = await ws_recv(ws)
            assert (event["op"], event["id"]) == ("event", event_id)
    assert "Traceback" not in pod.log()


async def refused_with_4400(pod: GatewayProcess, frame: str | bytes) -> dict[str, Any]:
    """Send one frame; expect an ``error`` and then the close 4400. Returns the error."""
    async with ws_client(pod.ws_url) as ws:
        await ws.send(frame)
        error = await ws_recv(ws)
        with pytest.raises(ConnectionClosed):
            await ws_recv(ws)
        assert ws.close_code == 4400, ws.close_reason
        assert ws.close_reason == "protocol error"
    assert (error["op"], error["code"]) == ("error", "bad_message"), error
    assert error["message"]
    return error


async def test_deeply_nested_json_is_a_protocol_error(pod: GatewayProcess) -> None:
    """10,000 nested arrays: error + 4400, not a RecursionError and a dropped connection."""
    error = await refused_with_4400(pod, "[" * 10_000 + "]" * 10_000)
    assert "depth" in error["message"]
    await assert_healthy(pod)


async def test_lone_surrogate_in_ref_is_a_protocol_error(pod: GatewayProcess) -> None:
    r"""A ``ref`` of ``"\ud800"`` cannot be echoed as UTF-8: error + 4400, not a crash while answering."""
    await refused_with_4400(pod, '{"op":"ping","ref":"\\ud800"}')
    await refused_with_4400(pod, '{"op":"publish","channel":"c","data":"\\udc00x","ref":1}')
    await assert_healthy(pod)


async def test_binary_frame_closes_4400(pod: GatewayProcess) -> None:
    """Protocol v1 is JSON text: a binary frame is refused with an error and 4400."""
    error = await refused_with_4400(pod, b'{"op":"ping","ref":1}')
    assert "binary" in error["message"]
    await assert_healthy(pod)


async def test_channel_name_with_trailing_newline_is_refused(pod: GatewayProcess) -> None:
    """``chat\n`` is not ``chat``: HTTP 400 and a WS ``error``, both invalid_channel; the connection stays."""
    async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
        response = await client.post("/v1/channels/chat%0A/events", json={"data": 1})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_channel"
        response = await client.get("/v1/channels/chat%0A/history")
        assert response.status_code == 400, response.text
    async with ws_client(pod.ws_url) as ws:
        await ws_send(ws, op="subscribe", channel="chat\n", ref=7)
        error = await ws_recv(ws)
        assert (error["op"], error["code"], error["ref"]) == ("error", "invalid_channel", 7)
        await ws_send(ws, op="ping", ref=8)
        assert await ws_recv(ws) == {"op": "pong", "ref": 8}
    await assert_healthy(pod)


async def test_http_and_ws_accept_and_refuse_the_same_json(pod: GatewayProcess) -> None:
    """2**64 is accepted by both (read as a number, as JSON.parse reads it) and stored alike; NaN and a lone
    surrogate are refused by both (400 / error + 4400)."""
    async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
        body = f'{{"data": {{"n": {BIG}}}}}'
        response = await client.post(
            "/v1/channels/numbers/events", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 201, response.text
        async with ws_client(pod.ws_url) as ws:
            await ws.send(f'{{"op":"publish","channel":"numbers","data":{{"n":{BIG}}},"ref":1}}')
            reply = await ws_recv(ws)
            assert reply["op"] == "published", reply
        history = (await client.get("/v1/channels/numbers/history")).json()
        stored = [event["data"] for event in history["events"]]
        assert stored == [{"n": float(BIG)}, {"n": float(BIG)}]
        for bad in ('{"data": NaN}', '{"data": "\\ud800"}', "[" * 2000 + "]" * 2000):
            response = await client.post(
                "/v1/channels/numbers/events", content=bad, headers={"content-type": "application/json"}
            )
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == "bad_request"
    await refused_with_4400(pod, '{"op":"publish","channel":"numbers","data":NaN,"ref":1}')
    await assert_healthy(pod)


def test_unsupported_trace_exporter_is_a_one_line_error() -> None:
    """``OTEL_TRACES_EXPORTER=jaeger`` stops the start with one line naming the variable, not a traceback."""
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "jaeger"}
    done = subprocess.run(
        [PYTHON, "-m", "fleetcast", "serve", "--port", "0"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "OTEL_TRACES_EXPORTER='jaeger'" in lines[0]
    assert "Traceback" not in done.stderr
