"""One rooted tree of errors; the class says what the client sees and whether a retry can help.

Third-party errors are wrapped at the boundary that meets them (``raise BrokerUnavailable(...) from exc``), so
code above the broker never catches ``redis`` exceptions. Each class carries the HTTP status and the stable
``code`` string of the JSON error body ``{"error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations


class FleetcastError(Exception):
    """Base of every error fleetcast raises on purpose."""

    status = 500
    code = "internal"
    retry_after: float | None = None
    """Seconds after which the same request may succeed; None where retrying cannot help."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retry_after is not None:
            self.retry_after = retry_after


class BadRequest(FleetcastError):
    status = 400
    code = "bad_request"


class InvalidChannel(BadRequest):
    code = "invalid_channel"


class InvalidEventId(BadRequest):
    code = "invalid_event_id"


class NotSubscribed(BadRequest):
    code = "not_subscribed"


class Unauthorized(FleetcastError):
    status = 401
    code = "unauthorized"


class Forbidden(FleetcastError):
    status = 403
    code = "forbidden"


class Conflict(FleetcastError):
    """The request contradicts the pod's state (a shed asked of a draining pod)."""

    status = 409
    code = "conflict"


class UnknownChannel(FleetcastError):
    """The channel's family is not declared by any Channel resource (strict mode)."""

    status = 404
    code = "unknown_channel"


class PresenceDisabled(FleetcastError):
    """Presence was asked of a channel whose policy has it off."""

    status = 404
    code = "presence_disabled"


class PayloadTooLarge(FleetcastError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(FleetcastError):
    status = 415
    code = "unsupported_media_type"


class RateLimited(FleetcastError):
    status = 429
    code = "rate_limited"
    retry_after = 1.0


class Unavailable(FleetcastError):
    """A transient condition: the pod is draining or full. Retry elsewhere or later."""

    status = 503
    code = "unavailable"
    retry_after = 1.0


class ChannelFull(Unavailable):
    """The channel has as many subscribers on this pod as its policy admits."""

    code = "channel_full"


class BrokerUnavailable(Unavailable):
    """The broker (Redis) cannot be reached; nothing was written."""

    code = "broker_unavailable"
