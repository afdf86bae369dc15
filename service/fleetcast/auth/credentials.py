"""Where a credential travels in a request: the one place that reads ``Authorization``, cookies and ``?token=``.

Programs send ``Authorization: Bearer <credential>``. Browsers cannot set headers on ``EventSource`` or a
WebSocket handshake, so a subscribe (SSE or WebSocket), history or info request may also carry a token in
``?token=`` or in a cookie (name configurable, ``fleetcast_token`` by default), in that order of precedence; a
WebSocket client may instead send it in an ``auth`` op, which is also how it refreshes one. The query token is
taken out of the request before anything else sees it (tracing records URLs).
"""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl, urlencode

TOKEN_SCOPE_KEY = "fleetcast.token"
"""Where :func:`take_query_token` leaves the ``?token=`` value in the ASGI scope."""


class NotBearer(ValueError):
    """An ``Authorization`` header of another scheme: a mistake worth naming rather than ignoring."""


def reader_token(
    authorization: str | None, query_token: str | None, cookie_header: str | None, cookie_name: str
) -> str | None:
    """The token a reading request presents, wherever it travels; :class:`NotBearer` for another scheme."""
    token = bearer(authorization)
    if authorization is not None and token is None:
        raise NotBearer("send the credential as 'Authorization: Bearer <token or API key>'")
    return token or query_token or cookie(cookie_header, cookie_name)


def bearer(authorization: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer <credential>`` header; None for no or another scheme."""
    if not authorization:
        return None
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        return None
    return credential


def cookie(header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header; None if absent or the header is malformed."""
    if not header or name not in header:
        return None
    jar = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None and morsel.value else None


def take_query_token(query_string: bytes) -> tuple[bytes, str | None]:
    """Split ``token=`` off a query string: (the query without it, the token or None)."""
    if b"token=" not in query_string:
        return query_string, None
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    token = next((v for k, v in pairs if k == "token"), None)
    rest = urlencode([(k, v) for k, v in pairs if k != "token"])
    return rest.encode("latin-1"), token or None
