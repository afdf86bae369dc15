"""A benchmark-only FastAPI app that fans events out the way most ASGI apps do: one ``send`` per message per
subscriber. It is the baseline of :mod:`bench.ws_fastpath` and is never part of fleetcast.

``POST /v1/channels/{channel}/events`` with ``{"data": ...}`` sends an ``event`` message, shaped like fleetcast's,
to every local WebSocket subscriber of the channel (``/v1/ws?channel=...``), and answers only once every send
returned. The mode says how each message is sent:

- ``naive``: ``await websocket.send_text(json.dumps(message))`` per subscriber: encoded per subscriber, as an app
  that keeps a list of sockets would;
- ``preencoded``: the message encoded once, then one ASGI ``websocket.send`` per subscriber.

Served with the settings ``fleetcast serve`` uses (httptools, uvloop, uvicorn's sans-I/O WebSocket protocol,
no permessage-deflate), so the only difference to fleetcast is how frames reach the transport.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from starlette.responses import Response

Mode = Literal["naive", "preencoded"]
SUBPROTOCOL = "fleetcast.v1"


def create_app(mode: Mode) -> FastAPI:
    app = FastAPI()
    rooms: dict[str, set[WebSocket]] = {}
    seq = itertools.count(1)

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.websocket("/v1/ws")
    async def subscribe(websocket: WebSocket, channel: str) -> None:
        await websocket.accept(subprotocol=SUBPROTOCOL)
        room = rooms.setdefault(channel, set())
        room.add(websocket)
        try:
            await websocket.send_text(json.dumps({"op": "subscribed", "channel": channel}, separators=(",", ":")))
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            room.discard(websocket)

    @app.post("/v1/channels/{channel}/events", status_code=201)
    async def publish(channel: str, request: Request) -> Response:
        body: dict[str, Any] = await request.json()
        event_id = f"{int(time.time() * 1000)}-{next(seq)}"
        message = {"op": "event", "channel": channel, "id": event_id, "type": "message", "data": body["data"]}
        subscribers = tuple(rooms.get(channel, ()))
        if mode == "naive":
            for websocket in subscribers:
                await websocket.send_text(json.dumps(message, separators=(",", ":")))
        else:
            text = json.dumps(message, separators=(",", ":"))
            for websocket in subscribers:
                await websocket.send({"type": "websocket.send", "text": text})
        answer = json.dumps({"channel": channel, "id": event_id})
        return Response(answer, status_code=201, media_type="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=["naive", "preencoded"], required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    config = uvicorn.Config(
        create_app(args.mode),
        host="127.0.0.1",
        port=args.port,
        http="httptools",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        loop="uvloop",
        lifespan="on",
        log_level="warning",
        access_log=False,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
