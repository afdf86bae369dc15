"""The WebSocket client (``/v1/ws``, subprotocol ``fleetcast.v1``): many channels on one connection.

On every connection it subscribes to each channel it holds, with ``since`` = the last id it delivered, so a lost
connection, a drain or a slow-consumer close costs nothing: the server replays what was missed (or signals a gap,
then continues from its oldest event). Between connections it waits as the server said:

- a ``reconnect {reason, after_ms}`` message before the close: exactly ``after_ms``, no backoff on top;
- a close whose code is terminal (4000-4099, 4400, 1000, 1009, see :func:`~fleetcast.client.backoff.advice_for`):
  it stops and reports :class:`~fleetcast.client.events.Refused` with the code and reason;
- anything else (a lost connection, 1011, 1012 without ``after_ms``, 1013, 4100-4199, a failed handshake): full
  jitter backoff, base 500 ms, cap 10 s; the attempt counter resets when a subscribe is confirmed.

With several URLs (pods of a fleet) each new connection goes to the next URL in turn, so a drained pod's
clients move on. Publishing is not retried across connections (see :class:`ConnectionLost`).

It deliberately does not reorder, batch or persist anything, and it does not verify TLS differently from
``websockets``' defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from fleetcast.client.backoff import Backoff, advice_for
from fleetcast.client.base import ClientBase, Sleep, Timeouts
from fleetcast.client.events import (
    ClientClosed,
    ConnectionLost,
    Event,
    EventCallback,
    GapCallback,
    Refused,
    RequestFailed,
)
from fleetcast.core import channels, ids
from fleetcast.core.messages import SUBPROTOCOL

log = logging.getLogger(__name__)

TERMINAL_HTTP = frozenset({400, 401, 403, 404})
"""Handshake answers that retrying cannot fix."""
TERMINAL_SUBSCRIBE_ERRORS = frozenset(
    {"bad_request", "invalid_channel", "invalid_event_id", "unauthorized", "forbidden", "unknown_channel"}
)
"""``error`` codes that refuse a subscribe for good; any other code (``broker_unavailable``...) is transient:
the client drops the connection and comes back with backoff."""
PING_SECONDS = 20.0
"""WebSocket protocol pings from the client, as the server sends them."""
MAX_MESSAGES_BUFFERED = 16
"""Messages ``websockets`` holds before it stops reading the socket (the backpressure of a slow consumer)."""


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The server's confirmation of a subscribe. ``recovered``: the resume missed nothing (no gap)."""

    channel: str
    recovered: bool
    latest: str | None


class _Transient(Exception):
    """The connection cannot go on, but a new one may: back off and reconnect."""


class WsClient(ClientBase):
    """A reconnecting, resuming WebSocket client.

    ``url``: one ``ws://host:port/v1/ws`` or several (tried in turn). ``channels``: names to subscribe to from
    the start, or a mapping of name -> ``since`` (resume after that id; None: from now). ``token``: a JWT sent
    as ``Authorization: Bearer`` on every handshake (None: anonymous). ``client_id``: this client's presence id,
    sent as ``?client=`` on every handshake, so a reconnect (to any pod) keeps its presence entry instead of
    leaving and joining again (default: a random id per client object). ``on_presence``: called with each ``join``
    and ``leave`` message of a channel with presence. See
    :class:`~fleetcast.client.base.ClientBase` for delivery, the iterator and ownership.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        channels: Iterable[str] | Mapping[str, str | None] = (),
        *,
        on_event: EventCallback | None = None,
        on_gap: GapCallback | None = None,
        max_queue: int = 1000,
        timeouts: Timeouts | None = None,
        backoff: Backoff | None = None,
        sleep: Sleep = asyncio.sleep,
        token: str | None = None,
        client_id: str | None = None,
        on_presence: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__(
            on_event=on_event, on_gap=on_gap, max_queue=max_queue, timeouts=timeouts, backoff=backoff, sleep=sleep
        )
        self.urls: tuple[str, ...] = (url,) if isinstance(url, str) else tuple(url)
        if not self.urls:
            raise ValueError("give at least one URL")
        self.client_id = client_id or secrets.token_urlsafe(12)
        self._on_presence = on_presence
        self._headers = {"Authorization": f"Bearer {token}"} if token else None
        wanted = channels if isinstance(channels, Mapping) else dict.fromkeys(channels)
        self._wanted: dict[str, str | None] = {}
        for name, since in wanted.items():
            self._wanted[_checked(name, since)] = since
        self.subscriptions: dict[str, Subscribed] = {}
        """Channels the server confirmed on the current connection."""
        self.url: str | None = None
        """The URL of the current (or last) connection."""
        self._ws: ClientConnection | None = None
        self._change = asyncio.Event()
        """Set (and replaced) whenever a connection opens or closes, or the client stops."""
        self._refs = itertools.count(1)
        self._requests: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._subscribe_refs: dict[int, str] = {}
        self._waiters: dict[str, list[asyncio.Future[Subscribed]]] = {}

    # Public operations

    async def subscribe(self, channel: str, since: str | None = None, *, timeout: float | None = None) -> Subscribed:
        """Hold ``channel`` from now on (on this and every later connection) and wait for the server to confirm.

        ``since``: resume after that id (ignored if the client already delivered an event of the channel).
        Raises :class:`RequestFailed` if the server refuses the channel (it is then dropped), ``TimeoutError``
        after ``timeout`` (the channel stays held: the client keeps trying), ``ValueError`` for a malformed name.
        """
        channel = _checked(channel, since)
        confirmed = self.subscriptions.get(channel)
        if confirmed is not None:
            return confirmed
        waiter: asyncio.Future[Subscribed] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        if channel not in self._wanted:
            self._wanted[channel] = since
            if self._ws is not None:
                await self._send_subscribe(self._ws, channel)
        async with asyncio.timeout(self.timeouts.request if timeout is None else timeout):
            return await waiter

    async def unsubscribe(self, channel: str, *, timeout: float | None = None) -> None:
        """Stop holding ``channel``; events of it still in flight are dropped. Its resume position is forgotten."""
        self._wanted.pop(channel, None)
        self.last_ids.pop(channel, None)
        if self.subscriptions.pop(channel, None) is not None and self._ws is not None:
            await self._request({"op": "unsubscribe", "channel": channel}, timeout)

    async def publish(self, channel: str, data: Any, type: str | None = None, *, timeout: float | None = None) -> str:
        """Publish one event over the socket and return its id (the server's ``published`` reply).

        Waits for a connection if there is none (within ``timeout``). Raises :class:`RequestFailed` if the server
        refuses (``forbidden`` when the channel does not take publishes from clients), :class:`ConnectionLost`
        if the connection ended before the reply (the event may or may not exist: no retry is made).
        """
        message: dict[str, Any] = {"op": "publish", "channel": channel, "data": data}
        if type is not None:
            message["type"] = type
        reply = await self._request(message, timeout)
        event_id: str = reply["id"]
        return event_id

    async def presence(
        self, channel: str, *, cursor: int = 0, limit: int = 100, timeout: float | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of the clients present in ``channel`` and the cursor of the next (0: this was the last)."""
        reply = await self._request({"op": "presence", "channel": channel, "cursor": cursor, "limit": limit}, timeout)
        return list(reply["clients"]), int(reply["cursor"])

    async def presence_stats(self, channel: str, *, timeout: float | None = None) -> tuple[int, int]:
        """``(clients, users)`` present in ``channel``."""
        reply = await self._request({"op": "presence_stats", "channel": channel}, timeout)
        return int(reply["clients"]), int(reply["users"])

    async def ping(self, *, timeout: float | None = None) -> float:
        """A ``ping`` op answered by ``pong``: the round trip in seconds (behind any events queued before it)."""
        started = time.monotonic()
        await self._request({"op": "ping"}, timeout)
        return time.monotonic() - started

    # Requests

    async def _request(self, message: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        ref = next(self._refs)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._requests[ref] = future
        try:
            async with asyncio.timeout(self.timeouts.request if timeout is None else timeout):
                ws = await self._connection()
                try:
                    await ws.send(orjson.dumps({**message, "ref": ref}).decode())
                except ConnectionClosed as exc:
                    raise ConnectionLost(f"the connection closed before {message['op']} was sent") from exc
                return await future
        finally:
            self._requests.pop(ref, None)

    async def _connection(self) -> ClientConnection:
        while self._ws is None:
            if self._done.is_set():
                raise self._failure or ClientClosed("the client is closed")
            await self._change.wait()
        return self._ws

    def _changed(self) -> None:
        self._change.set()
        self._change = asyncio.Event()

    async def _send_subscribe(self, ws: ClientConnection, channel: str) -> None:
        ref = next(self._refs)
        self._subscribe_refs[ref] = channel
        message: dict[str, Any] = {"op": "subscribe", "channel": channel, "ref": ref}
        since = self.last_ids.get(channel) or self._wanted.get(channel)
        if since is not None:
            message["since"] = since
        # If the connection is closing, the reader sees it and the next connection subscribes again.
        with contextlib.suppress(ConnectionClosed):
            await ws.send(orjson.dumps(message).decode())

    # The connection loop

    async def _run(self) -> None:
        for turn in itertools.count():
            self.url = self.urls[turn % len(self.urls)]
            delay_ms: int | None = None
            try:
                ws = await connect(
                    _with_client(self.url, self.client_id),
                    subprotocols=[Subprotocol(SUBPROTOCOL)],
                    open_timeout=self.timeouts.open,
                    close_timeout=self.timeouts.close,
                    ping_interval=PING_SECONDS,
                    ping_timeout=PING_SECONDS,
                    max_queue=MAX_MESSAGES_BUFFERED,
                    compression=None,
                    additional_headers=self._headers,
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in TERMINAL_HTTP:
                    raise Refused(
                        f"{self.url} refused the WebSocket upgrade with HTTP {status}", status=status
                    ) from exc
                log.info("WebSocket upgrade to %s answered %d; backing off", self.url, status)
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                log.info("cannot connect to %s: %s; backing off", self.url, exc)
            else:
                self.stats.connects += 1
                if self.stats.connects > 1:
                    self.stats.reconnects += 1
                delay_ms = await self._session(ws)
            if delay_ms is None:
                delay_ms = self.backoff.next_ms()
            await self._pause(delay_ms)

    async def _session(self, ws: ClientConnection) -> int | None:
        """One connection, from subscribing to its end: the server's ``after_ms`` if it gave one, else None."""
        self._ws = ws
        self._changed()
        try:
            if not self._wanted:
                self.backoff.reset()
            for channel in list(self._wanted):
                await self._send_subscribe(ws, channel)
            return await self._read(ws)
        except _Transient as exc:
            log.info("dropping the connection to %s: %s", self.url, exc)
            return None
        finally:
            self._ws = None
            self._changed()
            self.subscriptions.clear()
            self._subscribe_refs.clear()
            for future in self._requests.values():
                if not future.done():
                    future.set_exception(ConnectionLost(f"the connection to {self.url} ended before the reply"))
            await ws.close()

    async def _read(self, ws: ClientConnection) -> int | None:
        after_ms: int | None = None
        quiet = 0
        while True:
            try:
                async with asyncio.timeout(self.timeouts.idle):
                    raw = await ws.recv(decode=True)
            except TimeoutError:
                if quiet:
                    raise _Transient(f"no answer for {2 * self.timeouts.idle:g} s") from None
                quiet += 1
                await ws.send(orjson.dumps({"op": "ping", "ref": next(self._refs)}).decode())
                continue
            except ConnectionClosed as exc:
                return self._closed_by_server(exc, after_ms)
            quiet = 0
            message: dict[str, Any] = orjson.loads(raw)
            op = message.get("op")
            if op == "event":
                if message["channel"] in self._wanted:
                    await self._deliver(Event(message["channel"], message["id"], message["type"], message["data"]))
            elif op == "reconnect":
                after_ms = int(message["after_ms"])
                log.info("server asks to reconnect in %d ms (%s)", after_ms, message.get("reason"))
            elif op == "gap":
                await self._gap(message["channel"], message["requested"], message.get("earliest"))
            elif op == "subscribed":
                self._confirmed(message)
            elif op in ("join", "leave"):
                if self._on_presence is not None and message.get("channel") in self._wanted:
                    self._on_presence(message)
            elif op == "error":
                self._refused(message)
            else:
                future = self._requests.get(message.get("ref"))  # type: ignore[arg-type]
                if future is not None and not future.done():
                    future.set_result(message)

    def _closed_by_server(self, exc: ConnectionClosed, after_ms: int | None) -> int | None:
        close = exc.rcvd
        code = close.code if close is not None else None
        reason = close.reason if close is not None else ""
        if after_ms is not None:
            return after_ms
        if advice_for(code) == "stop":
            raise Refused(f"the server closed the connection: {code} {reason}".strip(), close_code=code,
                          error_code=reason)  # fmt: skip
        how = "without a close frame" if code is None else f"with {code} {reason}".rstrip()
        log.info("connection to %s closed %s; backing off", self.url, how)
        return None

    def _confirmed(self, message: dict[str, Any]) -> None:
        channel = self._subscribe_refs.pop(message.get("ref"), None)  # type: ignore[arg-type]
        if channel is None or channel not in self._wanted:
            return
        confirmed = Subscribed(channel, bool(message.get("recovered", True)), message.get("latest"))
        self.subscriptions[channel] = confirmed
        self.backoff.reset()
        for waiter in self._waiters.pop(channel, []):
            if not waiter.done():
                waiter.set_result(confirmed)

    def _refused(self, message: dict[str, Any]) -> None:
        ref = message.get("ref")
        code = str(message.get("code", ""))
        text = str(message.get("message", ""))
        channel = self._subscribe_refs.pop(ref, None)  # type: ignore[arg-type]
        if channel is not None:
            if code not in TERMINAL_SUBSCRIBE_ERRORS:
                raise _Transient(f"subscribe to {channel!r} failed: {code}: {text}")
            self._wanted.pop(channel, None)
            waiters = self._waiters.pop(channel, [])
            if not waiters:
                # Nobody asked for this subscribe now (a resubscribe): losing the channel silently would be worse.
                raise Refused(f"subscribe to {channel!r} refused: {text}", error_code=code)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(RequestFailed(text, error_code=code))
            return
        future = self._requests.get(ref)  # type: ignore[arg-type]
        if future is not None and not future.done():
            future.set_exception(RequestFailed(text, error_code=code))
        else:
            log.warning("server error without a request: %s: %s", code, text)

    def _stopped(self) -> None:
        reason = self._failure or ClientClosed("the client is closed")
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(reason)
        self._waiters.clear()
        for future in self._requests.values():
            if not future.done():
                future.set_exception(reason)
        self._changed()  # Whoever waits for a connection sees the client is done.


def _checked(channel: str, since: str | None) -> str:
    """``ValueError`` with the server's wording for a malformed channel name or event id."""
    channels.validate(channel)
    if since is not None:
        ids.parse(since)
    return channel


def _with_client(url: str, client_id: str) -> str:
    return url + ("&" if "?" in url else "?") + "client=" + client_id
