"""The Server-Sent Events client: one channel over ``GET /v1/channels/{channel}/events``, as EventSource, plus
backoff and the fleetcast control events.

Each stream sends ``Last-Event-ID`` = the last id delivered (or the ``since`` it was built with), so the server
replays what was missed. Between streams it waits as the server said:

- ``fleetcast.reconnect {reason, after_ms}``: exactly ``after_ms``, no backoff on top (the stream ends there);
- the stream ended without one: the last ``retry:`` value (the server jitters it per client);
- an answer of 400, 401, 403 or 404: it stops and reports :class:`~fleetcast.client.events.Refused` with the
  server's JSON error message, because retrying cannot fix it (the server never answers those for transient
  conditions);
- anything else (no connection, a broken or silent stream, another status): full-jitter backoff (base 500 ms,
  cap 10 s, ``Retry-After`` respected as a floor); the attempt counter resets when a stream opens with 200.

``fleetcast.gap`` goes to ``on_gap``. With several base URLs (pods) each new stream goes to the next one in turn.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import ssl
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from fleetcast.client.backoff import Backoff
from fleetcast.client.base import ClientBase, Sleep, Timeouts
from fleetcast.client.events import Event, EventCallback, GapCallback, Refused
from fleetcast.client.sse_parse import Retry, SseParser
from fleetcast.core import channels, ids
from fleetcast.core.sse import GAP_EVENT, JOIN_EVENT, LEAVE_EVENT, RECONNECT_EVENT

log = logging.getLogger(__name__)

TERMINAL_STATUS = frozenset({400, 401, 403, 404})
_ERROR_BODY_MAX = 64 * 1024


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every SSE client of the process: building one loads the trust store (tens of ms),
    which a thousand clients starting together would otherwise do a thousand times on the event loop."""
    return ssl.create_default_context()


PRESENCE_EVENTS = {JOIN_EVENT: "join", LEAVE_EVENT: "leave"}


class SseClient(ClientBase):
    """A reconnecting, resuming SSE client for one channel.

    ``url``: a pod's base URL (``http://host:port``) or several, tried in turn. ``since``: resume after this id
    on the first stream (None: from now). ``token``: a JWT sent as ``Authorization: Bearer`` on every request
    (None: anonymous). ``client_id``: this client's presence id, sent as ``?client=`` on every request (default: a
    random id per client object); ``on_presence``: called with ``{"op": "join"|"leave", "channel", "client", "sub",
    "info"}`` on channels with presence joins and leaves. See :class:`~fleetcast.client.base.ClientBase` for
    delivery, the iterator and ownership.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        channel: str,
        *,
        since: str | None = None,
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
        channels.validate(channel)
        if since is not None:
            ids.parse(since)
        self.urls: tuple[str, ...] = (url,) if isinstance(url, str) else tuple(url)
        if not self.urls:
            raise ValueError("give at least one URL")
        self.channel = channel
        self.since = since
        self._token = token
        self.client_id = client_id or secrets.token_urlsafe(12)
        self._on_presence = on_presence
        self.url: str | None = None
        """The base URL of the current (or last) stream."""
        self.retry_ms: int | None = None
        """The last ``retry:`` the server sent."""

    async def _run(self) -> None:
        t = self.timeouts
        timeout = httpx.Timeout(connect=t.open, read=t.idle, write=t.open, pool=t.open)
        async with httpx.AsyncClient(timeout=timeout, verify=_tls_context()) as http:
            turn = 0
            while True:
                self.url = self.urls[turn % len(self.urls)]
                turn += 1
                try:
                    delay_ms = await self._stream(http, self.url)
                except httpx.TransportError as exc:
                    log.info("SSE stream from %s failed: %r; backing off", self.url, exc)
                    delay_ms = None
                await self._pause(self.backoff.next_ms() if delay_ms is None else delay_ms)

    async def _stream(self, http: httpx.AsyncClient, base: str) -> int | None:
        """One request: the server's delay before the next (``after_ms`` or ``retry:``), or None for backoff."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        since = self.last_ids.get(self.channel) or self.since
        if since is not None:
            headers["Last-Event-ID"] = since
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        url = f"{base.rstrip('/')}/v1/channels/{quote(self.channel, safe=':')}/events"
        async with http.stream("GET", url, headers=headers, params={"client": self.client_id}) as response:
            if response.status_code != 200:
                return await self._refused(response)
            self.stats.connects += 1
            if self.stats.connects > 1:
                self.stats.reconnects += 1
            self.backoff.reset()
            return await self._read(response)

    async def _read(self, response: httpx.Response) -> int | None:
        parser = SseParser()
        async for line in response.aiter_lines():
            frame = parser.feed(line)
            if frame is None:
                continue
            if isinstance(frame, Retry):
                self.retry_ms = frame.ms
            elif frame.event == RECONNECT_EVENT:
                advice = _json_object(frame.data)
                log.info("server asks to reconnect in %s ms (%s)", advice.get("after_ms"), advice.get("reason"))
                return int(advice.get("after_ms", 0))
            elif frame.event in PRESENCE_EVENTS:
                if self._on_presence is not None:
                    op = PRESENCE_EVENTS[frame.event]
                    self._on_presence({"op": op, "channel": self.channel, **_json_object(frame.data)})
            elif frame.event == GAP_EVENT:
                gap = _json_object(frame.data)
                await self._gap(self.channel, str(gap.get("requested")), gap.get("earliest"))
            elif frame.id:
                await self._deliver(Event(self.channel, frame.id, frame.event, orjson.loads(frame.data)))
        # The stream ended without advice: come back after `retry:`, as EventSource does.
        return self.retry_ms

    async def _refused(self, response: httpx.Response) -> int | None:
        status = response.status_code
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) >= _ERROR_BODY_MAX:
                break
        error = _json_object(body).get("error")
        code, message = "", body[:500].decode(errors="replace")
        if isinstance(error, dict):
            code, message = str(error.get("code", "")), str(error.get("message", message))
        if status in TERMINAL_STATUS:
            raise Refused(f"HTTP {status}: {message}", status=status, error_code=code)
        log.info("SSE request to %s answered %d (%s); backing off", response.url, status, message)
        retry_after = response.headers.get("retry-after", "")
        if retry_after.isdigit():
            return max(int(retry_after) * 1000, self.backoff.next_ms())
        return None


def _json_object(data: str | bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
