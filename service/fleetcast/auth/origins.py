"""Which web pages may use the gateway from a visitor's browser.

A browser attaches the visitor's cookies to requests any page makes, and lets any page open a WebSocket to any
host: without an origin check, a hostile page could read and write channels with its visitor's credentials
(cross-site WebSocket hijacking). Browsers always say which page is asking (``Origin``), and a page cannot
forge it. So a request that carries an ``Origin`` is served only when that origin is allowed:

- the gateway's own origin (the ``Origin`` names the host the request was sent to: its demo page, or a page
  behind the same ingress host), always;
- each ``--allowed-origins`` entry: an exact origin (``https://app.example.com``) or a wildcard for one DNS
  label level and below (``https://*.example.com`` allows ``https://a.example.com`` and
  ``https://a.b.example.com``, not ``https://example.com``, and never another scheme or port);
- when no entry is configured: ``http://localhost``, ``http://127.0.0.1`` and ``http://[::1]`` on any port, for
  development (``make run``).

Requests without ``Origin`` come from programs (backends, the CLI, ``curl``), which hold their own credentials
and ride nobody's; they are not origin-checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_LOCAL_DEVELOPMENT = re.compile(r"^http://(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?$")
_EXACT = re.compile(r"^https?://[a-z0-9.-]+(:\d{1,5})?$|^https?://\[[0-9a-f:]+\](:\d{1,5})?$")
_WILDCARD = re.compile(r"^(https?)://\*\.([a-z0-9-]+(?:\.[a-z0-9-]+)+)(:\d{1,5})?$")


class OriginPolicy:
    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self.exact: set[str] = set()
        self._patterns: list[re.Pattern[str]] = []
        for entry in allowed:
            origin = entry.strip().rstrip("/").lower()
            if not origin:
                continue
            wildcard = _WILDCARD.match(origin)
            if wildcard:
                scheme, domain, port = wildcard.groups()
                self._patterns.append(
                    re.compile(rf"^{scheme}://([a-z0-9-]+\.)+{re.escape(domain)}{re.escape(port or '')}$")
                )
            elif _EXACT.match(origin):
                self.exact.add(origin)
            else:
                raise ValueError(
                    f"{entry!r} is not an origin: expected scheme://host[:port] or scheme://*.domain[:port]"
                )
        self.development = not self.exact and not self._patterns

    def allows(self, origin: str, host: str | None) -> bool:
        """Whether a page of ``origin`` may use a gateway reached as ``host`` (the request's Host header)."""
        origin = origin.lower()
        if host is not None and _authority(origin) == host.lower():
            return True
        if origin in self.exact or any(p.match(origin) for p in self._patterns):
            return True
        return self.development and _LOCAL_DEVELOPMENT.match(origin) is not None


def _authority(origin: str) -> str | None:
    """``host[:port]`` of an origin, as a Host header would carry it (default ports are left out by both)."""
    scheme, sep, authority = origin.partition("://")
    if not sep or scheme not in ("http", "https"):
        return None
    default = ":443" if scheme == "https" else ":80"
    return authority[: -len(default)] if authority.endswith(default) else authority
