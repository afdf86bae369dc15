"""What the client hands to its user: events, counters, and the errors that end it.

Errors are rooted in :class:`fleetcast.errors.FleetcastError`, like everything fleetcast raises on purpose.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fleetcast.errors import FleetcastError


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a channel, as published: ``data`` is the decoded JSON value."""

    channel: str
    id: str
    type: str
    data: Any


@dataclass
class Stats:
    """Counters of one client, for tests, benchmarks and dashboards."""

    connects: int = 0
    """Connections opened (WS handshakes done, SSE streams answered 200)."""
    reconnects: int = 0
    """Connections opened after the first one."""
    events: int = 0
    """Events delivered to the user."""
    gaps: int = 0
    """Gap signals received: history the server no longer had."""
    duplicates: int = 0
    """Events dropped because their id was not above the last one delivered (the server promises none)."""


EventCallback = Callable[[Event], Awaitable[None] | None]
"""Called with each event, in order, from the client's reader; an async callback is awaited before the next
event is read (backpressure)."""
GapCallback = Callable[[str, str, str | None], Awaitable[None] | None]
"""``on_gap(channel, requested, earliest)``: events after ``requested`` and before ``earliest`` are lost; the
events that follow start at ``earliest`` (None: the channel holds nothing)."""


class ClientError(FleetcastError):
    """Base of the errors of :mod:`fleetcast.client`."""

    code = "client_error"


class Refused(ClientError):
    """The server refused the client for good (a terminal close code, or an SSE answer of 400/401/403/404, or a
    subscribe refused as unfixable); the client stopped and will not reconnect."""

    code = "refused"

    def __init__(
        self, message: str, *, close_code: int | None = None, status: int | None = None, error_code: str = ""
    ) -> None:
        super().__init__(message)
        self.close_code = close_code
        """The WebSocket close code, if the refusal was a close."""
        self.http_status = status
        """The HTTP status, if the refusal was an HTTP answer."""
        self.error_code = error_code
        """The server's ``code`` string (``unknown_channel``, ``forbidden``...), or the close reason."""


class RequestFailed(ClientError):
    """The server answered one request (publish, subscribe) with an ``error``; the connection goes on."""

    code = "request_failed"

    def __init__(self, message: str, *, error_code: str) -> None:
        super().__init__(message)
        self.error_code = error_code


class ConnectionLost(ClientError):
    """The connection ended before the server answered a request. A WebSocket publish is not retried for you:
    it has no idempotency key, so the event may or may not have been published."""

    code = "connection_lost"


class ClientClosed(ClientError):
    """The client was closed (or stopped) before the operation could complete."""

    code = "client_closed"
