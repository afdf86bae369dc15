"""Server heartbeats, and the idle timeout for clients that stopped answering (issue 4)."""

from __future__ import annotations

import asyncio
import base64
import os
import time

import httpx

from tests.support.gateway import gateway


async def test_idle_sse_stream_gets_ping_comments() -> None:
    """An idle SSE stream carries `: ping` comments, so proxies and clients see it alive."""
    with gateway("--sse-heartbeat-seconds", "0.5") as pod:
        async with (
            httpx.AsyncClient(base_url=pod.url, timeout=10) as client,
            client.stream("GET", "/v1/channels/quiet/events") as response,
        ):
            body = b""
            async with asyncio.timeout(5):
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if body.count(b": ping\n\n") >= 2:
                        break
    assert body.startswith(b"retry: ")


async def test_websocket_client_that_stops_answering_is_disconnected() -> None:
    """A client that completes the handshake and then never answers a ping is cut off after the timeout."""
    with gateway("--ws-ping-seconds", "0.5") as pod:
        reader, writer = await asyncio.open_connection("127.0.0.1", pod.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: fleetcast.v1\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101")
        started = time.monotonic()
        # Read (so the server's pings arrive) but never answer them; the server must close the connection.
        async with asyncio.timeout(10):
            while await reader.read(4096):
                pass
        assert time.monotonic() - started < 5
        writer.close()
        async with httpx.AsyncClient(base_url=pod.url) as client:
            status = (await client.get("/readyz")).json()
        assert status["connections"]["ws"] == 0
