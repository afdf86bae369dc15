"""``/v1/ws``: the WebSocket edge. Reads client ops, hands them to the session core, writes its answers.

Frames go out through the :class:`~fleetcast.transports.uvicorn_ws.FrameWriter` that fleetcast's uvicorn
protocol puts into the scope, so replies, replays and live batches share one ordered byte stream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from starlette.websockets import WebSocket

from fleetcast.auth.credentials import TOKEN_SCOPE_KEY, NotBearer, reader_token
from fleetcast.auth.principal import ANONYMOUS
from fleetcast.auth.tokens import InvalidToken, TokenExpired
from fleetcast.core import disconnects, messages, wsframe
from fleetcast.core.disconnects import Disconnect
from fleetcast.core.messages import ProtocolError, Ref
from fleetcast.errors import FleetcastError, NotSubscribed, PayloadTooLarge, Unauthorized
from fleetcast.hub.batch import Batch
from fleetcast.hub.notice import Notice
from fleetcast.pod import Pod
from fleetcast.session import presence
from fleetcast.session.json_input import UnreadableJson, read_json
from fleetcast.session.session import Session
from fleetcast.transports.uvicorn_ws import EXTENSION, FrameWriter

log = logging.getLogger(__name__)


class WsCodec:
    def events(self, batch: Batch) -> bytes:
        return batch.ws()

    def subscribed(self, channel: str, ref: Ref, recovered: bool, latest: str | None) -> bytes:
        return wsframe.text_frame(messages.subscribed(channel, ref, recovered, latest))

    def gap(self, channel: str, requested: str, earliest: str | None) -> bytes:
        return wsframe.text_frame(messages.gap(channel, requested, earliest))

    def unsubscribed(self, channel: str, reason: str) -> bytes:
        return wsframe.text_frame(messages.unsubscribed(channel, None, reason))

    def presence(self, notice: Notice) -> bytes:
        return notice.ws()


class WsWire:
    kind: Literal["ws"] = "ws"

    def __init__(self, writer: FrameWriter) -> None:
        self._writer = writer

    @property
    def closed(self) -> bool:
        return not self._writer.open

    def write(self, data: bytes) -> int:
        return self._writer.write(data)

    def buffered(self) -> int:
        return self._writer.buffered()

    @property
    def writable(self) -> bool:
        return self._writer.writable

    def set_on_writable(self, callback: Callable[[], None]) -> None:
        self._writer.on_writable = callback

    async def drain(self, timeout: float) -> bool:
        return await self._writer.wait_writable(timeout)

    def close(self, disconnect: Disconnect, after_ms: int) -> None:
        if disconnect.reconnect:
            self._writer.write(wsframe.text_frame(messages.reconnect(disconnect.reason, after_ms)))
        self._writer.close(disconnect.code, disconnect.reason)


PATH = "/v1/ws"


async def websocket_endpoint(websocket: WebSocket, pod: Pod) -> None:
    """Serve one WebSocket connection of protocol v1 for its whole life."""
    headers = websocket.headers
    origin = headers.get("origin")
    if origin is not None and not pod.origins.allows(origin, headers.get("host")):
        # Before the handshake completes: the browser sees a 403, and no page of another origin gets a socket
        # that carries its visitor's cookies or network position.
        await websocket.close(code=1008, reason="origin not allowed")
        return
    writer = websocket.scope.get("extensions", {}).get(EXTENSION)
    subprotocol = messages.SUBPROTOCOL if messages.SUBPROTOCOL in websocket.scope.get("subprotocols", []) else None
    await websocket.accept(subprotocol=subprotocol)
    if not isinstance(writer, FrameWriter):
        # Only fleetcast's uvicorn protocol offers the frame writer; say so rather than misbehave.
        await websocket.close(1011, "fleetcast WebSocket needs `fleetcast serve` (its uvicorn protocol)")
        return
    wire = WsWire(writer)
    refusal = pod.admission()
    if refusal is not None:
        # Transient: the client comes back (to another pod) after after_ms; the close handshake ends it.
        wire.close(refusal, pod.refusal_delay_ms(refusal))
        return
    principal = ANONYMOUS
    try:
        client = presence.client_id(websocket.query_params.get("client"))
    except FleetcastError as bad_client:
        wire.write(wsframe.text_frame(messages.error(None, bad_client.code, bad_client.message)))
        wire.close(disconnects.PROTOCOL_ERROR, 0)
        return
    try:
        token = reader_token(
            headers.get("authorization"),
            websocket.scope.get(TOKEN_SCOPE_KEY),
            headers.get("cookie"),
            pod.settings.auth.token_cookie,
        )
        if token is not None:
            principal = await pod.authenticator.token(token)
    except (FleetcastError, NotBearer) as refusal:
        error = refusal if isinstance(refusal, FleetcastError) else Unauthorized(str(refusal))
        wire.write(wsframe.text_frame(messages.error(None, error.code, error.message)))
        wire.close(_token_refusal(error), 0)
        return
    session = pod.open_session(wire, WsCodec(), principal, client)
    try:
        while not wire.closed:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                _refuse(
                    session, ProtocolError("binary frames are not part of fleetcast.v1; send JSON text", fatal=True)
                )
                break
            await _handle(pod, session, text)
    finally:
        pod.close_session(session)


def _refuse(session: Session, error: ProtocolError) -> None:
    session.send(wsframe.text_frame(messages.error(error.ref, error.code, error.message)))
    if error.fatal:
        session.close(disconnects.PROTOCOL_ERROR)


def _token_refusal(error: FleetcastError) -> Disconnect:
    """A token that was not accepted ends the connection (after an ``error`` saying why) with close 4001."""
    return disconnects.TOKEN_EXPIRED if isinstance(error, TokenExpired) else disconnects.UNAUTHORIZED


async def _handle(pod: Pod, session: Session, text: str) -> None:
    """One client op: parse it, let the session core decide, answer."""
    try:
        op = messages.parse(read_json(text))
    except UnreadableJson as exc:
        _refuse(session, ProtocolError(f"message is not valid JSON: {exc}", fatal=True))
        return
    except ProtocolError as error:
        _refuse(session, error)
        return
    reply: bytes
    try:
        match op:
            case messages.Subscribe(channel=channel, since=since, ref=ref):
                await session.subscribe(channel, since, ref)
                return
            case messages.Unsubscribe(channel=channel, ref=ref):
                if not session.unsubscribe(channel):
                    raise NotSubscribed(f"not subscribed to {channel!r}")
                reply = messages.unsubscribed(channel, ref)
            case messages.Publish(channel=channel, data=data, type=type_, ref=ref):
                reply = messages.published(ref, await session.publish(channel, data, type_, ref))
            case messages.Auth(token=token, ref=ref):
                try:
                    principal = await pod.authenticator.token(token)
                except InvalidToken as error:
                    session.send(wsframe.text_frame(messages.error(ref, error.code, error.message)))
                    session.close(_token_refusal(error))
                    return
                session.authenticate(principal)
                reply = messages.authed(ref, principal.sub, principal.expires_at)
            case messages.Ping(ref=ref):
                reply = messages.pong(ref)
            case messages.PresenceRead(channel=channel, cursor=cursor, limit=limit, ref=ref):
                session.read_presence(channel)
                clients, next_cursor = await pod.presence.page(channel, cursor, limit)
                reply = messages.presence(ref, channel, clients, next_cursor)
            case messages.PresenceStats(channel=channel, ref=ref):
                session.read_presence(channel)
                stats = await pod.presence.stats(channel)
                reply = messages.presence_stats(ref, channel, stats.clients, stats.users)
    except PayloadTooLarge as error:
        session.send(wsframe.text_frame(messages.error(op.ref, error.code, error.message)))
        session.close(disconnects.TOO_BIG)
        return
    except FleetcastError as error:
        reply = messages.error(op.ref, error.code, error.message)
    session.send(wsframe.text_frame(reply))
