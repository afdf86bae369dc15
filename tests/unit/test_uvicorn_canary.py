"""The canary for the one place fleetcast reaches into uvicorn (``transports/uvicorn_ws.py``).

It runs a real WebSocket handshake (over a socket pair on the event loop) through fleetcast's protocol class and
checks that uvicorn's protocol still has every attribute the fast path uses, and that the frame writer reaches
the app. A uvicorn release that renames one fails here, naming it, instead of at fan-out time in production.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from fleetcast.transports.uvicorn_ws import EXTENSION, UVICORN_ATTRIBUTES, FleetcastWebSocketProtocol

HANDSHAKE = (
    b"GET /v1/ws HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def test_uvicorn_still_has_what_the_fast_path_uses() -> None:
    seen: dict[str, Any] = {}
    protocol: FleetcastWebSocketProtocol | None = None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert protocol is not None
        await receive()  # websocket.connect
        seen["missing"] = [name for name in UVICORN_ATTRIBUTES if not hasattr(protocol, name)]
        seen["writer"] = scope.get("extensions", {}).get(EXTENSION)
        await send({"type": "websocket.accept"})
        seen["open"] = seen["writer"] is not None and seen["writer"].open
        await send({"type": "websocket.close", "code": 1000})

    config = uvicorn.Config(app, ws=FleetcastWebSocketProtocol, log_level="warning", lifespan="off")
    config.load()
    protocol = FleetcastWebSocketProtocol(config=config, server_state=ServerState(), app_state={})
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(lambda: protocol, ours)
    try:
        await loop.sock_sendall(theirs, HANDSHAKE)
        answer = await asyncio.wait_for(loop.sock_recv(theirs, 4096), 5)
        assert answer.startswith(b"HTTP/1.1 101"), answer[:200]
        async with asyncio.timeout(5):
            while "open" not in seen:
                await asyncio.sleep(0.01)
        assert not seen["missing"], (
            f"uvicorn {uvicorn.__version__} lacks {seen['missing']}: fix transports/uvicorn_ws.py"
        )
        assert seen["open"], "the frame writer did not see the accepted connection as open"
    finally:
        transport.close()
        theirs.close()
        await asyncio.sleep(0.05)


def test_uvicorn_httptools_still_has_what_the_bounded_head_uses() -> None:
    """``transports/uvicorn_http.py`` overrides uvicorn's httptools callbacks and reads ``transport``, ``loop``,
    ``headers`` and ``url`` (set where uvicorn sets them): each overridden method must still exist upstream (an
    override of a method uvicorn no longer calls would silently bound nothing), and each attribute still be set."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from fleetcast.transports import uvicorn_http

    source = uvicorn_http.__file__
    with open(source) as f:
        text = f.read()
    overridden = [
        name
        for name in (
            "connection_made",
            "connection_lost",
            "data_received",
            "on_message_begin",
            "on_headers_complete",
            "on_body",
            "on_message_complete",
            "handle_websocket_upgrade",
        )
        if f"def {name}(" in text
    ]
    assert len(overridden) == 8, overridden
    missing = [name for name in overridden if not callable(getattr(HttpToolsProtocol, name, None))]
    assert not missing, f"uvicorn {uvicorn.__version__}'s HttpToolsProtocol lacks {missing}: fix uvicorn_http.py"
    init = (
        HttpToolsProtocol.__init__.__code__.co_names
        + HttpToolsProtocol.connection_made.__code__.co_names
        + HttpToolsProtocol.on_message_begin.__code__.co_names
    )
    absent = [name for name in ("transport", "loop", "headers", "url") if name not in init]
    assert not absent, f"uvicorn {uvicorn.__version__} no longer sets {absent} on its httptools protocol"
