"""What a browser request meets before any route: the origin check and CORS.

A request that carries ``Origin`` comes from a web page. If the page's origin is not allowed
(:class:`~fleetcast.auth.origins.OriginPolicy`) the answer is 403, whatever the route: a hostile page learns
nothing and changes nothing, even with its visitor's cookies. An allowed origin gets the CORS headers that let
the page read the answer (credentials included, for the token cookie), and its preflight ``OPTIONS`` is
answered here. Requests without ``Origin`` (programs) pass through untouched.

Written as plain ASGI rather than Starlette's ``CORSMiddleware``: the refusal of other origins is the point
here (CORS alone only stops a page from *reading* an answer, not the request from acting), and same-origin
requests are judged by the Host they were sent to.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetcast.api.errors import error_body
from fleetcast.auth.origins import OriginPolicy

_ALLOW_METHODS = b"GET, POST, OPTIONS"
_ALLOW_HEADERS = b"Authorization, Content-Type, Idempotency-Key, Last-Event-ID, traceparent"
_EXPOSE_HEADERS = b"Retry-After"
_PREFLIGHT_MAX_AGE = b"600"


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class BrowserGuard:
    def __init__(self, app: ASGIApp, origins: OriginPolicy) -> None:
        self.app = app
        self.origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send, origin: str) -> None:
        if not self.origins.allows(origin, header(scope, b"host")):
            await _answer(
                send, 403, [], error_body("forbidden_origin", "pages of this origin may not use this gateway")
            )
            return
        cors = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-credentials", b"true"),
            (b"vary", b"Origin"),
        ]
        if scope["method"] == "OPTIONS" and header(scope, b"access-control-request-method") is not None:
            preflight = [
                (b"access-control-allow-methods", _ALLOW_METHODS),
                (b"access-control-allow-headers", _ALLOW_HEADERS),
                (b"access-control-max-age", _PREFLIGHT_MAX_AGE),
            ]
            await _answer(send, 204, cors + preflight, b"")
            return
        cors.append((b"access-control-expose-headers", _EXPOSE_HEADERS))

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *cors]}
            await send(message)

        await self.app(scope, receive, send_with_cors)


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    content = [(b"content-type", b"application/json")] if body else []
    length = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + content + length})
    await send({"type": "http.response.body", "body": body})
