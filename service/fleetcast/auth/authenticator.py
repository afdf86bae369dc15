"""The pod's authenticator: turns a presented credential into a :class:`~fleetcast.auth.principal.Principal`.

Two kinds of credential exist, and each is accepted only where it belongs:

- **tokens** (JWT) are what clients (browsers, apps) hold: they authenticate WebSocket connections, SSE
  streams, history and info reads, and publishes whose ``publish`` claim names the channel;
- **API keys** are what backends hold: they publish over HTTP to any channel, and do nothing else.

The authenticator owns one background task that re-reads key files when they change and refreshes the JWKS
document; :meth:`start` and :meth:`close` bound its life (the pod calls both).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from dataclasses import dataclass

import httpx

from fleetcast.auth.keys import (
    JWKS_MIN_REFRESH_SECONDS,
    MAX_JWKS_BYTES,
    FileWatch,
    KeyFileError,
    parse_jwks,
    read_public_key,
    read_publish_keys,
    read_secret,
)
from fleetcast.auth.principal import Principal
from fleetcast.auth.tokens import KeySet, TokenVerifier, UnknownKeyId
from fleetcast.errors import Unauthorized

log = logging.getLogger(__name__)

_JWKS_FETCH_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class AuthSettings:
    anonymous: bool = True
    """The policy of channel families no Channel declares lets anyone subscribe and publish (a laptop's
    ``make run``); off, such channels need a token or key like declared private ones."""
    jwt_secret_file: str | None = None
    """File holding the shared secret of HS256/384/512 tokens (at least 32 bytes)."""
    jwt_public_key_file: str | None = None
    """PEM public key for RS*/PS*, ES* or EdDSA tokens."""
    jwks_url: str | None = None
    """JWKS document of an identity provider; keys chosen by the token's ``kid``."""
    jwt_audience: str | None = None
    """When set, tokens must carry this ``aud``."""
    jwt_issuer: str | None = None
    """When set, tokens must carry this ``iss``."""
    jwt_leeway_seconds: float = 5.0
    """Clock skew tolerated on ``exp`` and ``nbf``."""
    jwks_refresh_seconds: float = 300.0
    """Interval of scheduled JWKS refreshes (an unknown ``kid`` also triggers one)."""
    publish_keys_dir: str | None = None
    """Directory of API keys for backends (a mounted Secret: file name = key name, content = key)."""
    publish_key: str | None = None
    """One API key, named ``default`` (kept for single-backend setups)."""
    allowed_origins: tuple[str, ...] = ()
    """Browser origins besides the gateway's own that may use it (exact, or ``https://*.example.com``); empty:
    the gateway's own origin and localhost."""
    token_cookie: str = "fleetcast_token"
    """Cookie an SSE, history or info request may carry its token in."""
    key_reload_seconds: float = 5.0
    """How often key files are checked for changes (rotation without restart)."""


class Authenticator:
    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self.verifier = TokenVerifier(
            audience=settings.jwt_audience, issuer=settings.jwt_issuer, leeway=settings.jwt_leeway_seconds
        )
        self._publish_keys: dict[str, bytes] = {}
        self._files = FileWatch(
            paths=tuple(p for p in (settings.jwt_secret_file, settings.jwt_public_key_file) if p),
            directories=(settings.publish_keys_dir,) if settings.publish_keys_dir else (),
        )
        self._jwks: dict[str, tuple[object, str]] = {}
        self._jwks_fetched = 0.0
        self._jwks_fetch: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        """Load every configured key (a missing or bad key file stops the pod from starting: fix it first)."""
        await asyncio.to_thread(self._files.changed)  # remember what the files look like now
        await asyncio.to_thread(self._load_files)
        if self.settings.jwks_url:
            self._http = httpx.AsyncClient(timeout=_JWKS_FETCH_SECONDS, follow_redirects=False)
            await self._fetch_jwks()
        self._refresher = asyncio.create_task(self._refresh(), name="auth-key-refresh")

    async def close(self) -> None:
        for task in (self._refresher, self._jwks_fetch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._http is not None:
            await self._http.aclose()

    async def token(self, token: str) -> Principal:
        """The principal of a client token; :class:`~fleetcast.auth.tokens.InvalidToken` otherwise."""
        try:
            return self.verifier.verify(token)
        except UnknownKeyId:
            if not await self._refresh_jwks_for_new_kid():
                raise
        return self.verifier.verify(token)

    async def publisher(self, credential: str) -> Principal:
        """A backend's API key, or a token (whose ``publish`` claim the caller checks)."""
        name = self._key_name(credential)
        if name is not None:
            return Principal("key", key_name=name)
        if credential.count(".") != 2:
            raise Unauthorized("the credential is neither an API key of this gateway nor a token")
        return await self.token(credential)

    def _key_name(self, credential: str) -> str | None:
        given = credential.encode()
        found = None
        for name, key in self._publish_keys.items():
            # Every key is compared, so the time taken says nothing about which one matched.
            if hmac.compare_digest(given, key):
                found = name
        return found

    def _load_files(self) -> None:
        """Read key files and API keys again; on the first call errors propagate, later they are logged and the
        keys in use are kept (a half-written Secret must not lock everyone out)."""
        settings = self.settings
        self._publish_keys = read_publish_keys(settings.publish_keys_dir, settings.publish_key)
        secret = read_secret(settings.jwt_secret_file) if settings.jwt_secret_file else None
        public = read_public_key(settings.jwt_public_key_file) if settings.jwt_public_key_file else None
        self.verifier.keys = KeySet(
            hmac_secret=secret, public_key=public, jwks=self._jwks, jwks_configured=bool(settings.jwks_url)
        )

    async def _refresh(self) -> None:
        settings = self.settings
        period = settings.key_reload_seconds
        if settings.jwks_url:
            period = min(period, settings.jwks_refresh_seconds)
        while True:
            await asyncio.sleep(period)
            try:
                if await asyncio.to_thread(self._files.changed):
                    await asyncio.to_thread(self._load_files)
                    log.info("key files changed: keys reloaded")
            except KeyFileError as exc:
                log.warning("key files not reloaded, keeping the keys in use: %s", exc)
            if settings.jwks_url and time.monotonic() - self._jwks_fetched >= settings.jwks_refresh_seconds:
                await self._fetch_jwks()

    async def _refresh_jwks_for_new_kid(self) -> bool:
        """Fetch the JWKS again for a token whose ``kid`` is unknown, at most every few seconds; concurrent
        callers share one fetch. True if a fetch happened (so verifying again may succeed)."""
        if not self.settings.jwks_url:
            return False
        if self._jwks_fetch is None or self._jwks_fetch.done():
            if time.monotonic() - self._jwks_fetched < min(
                JWKS_MIN_REFRESH_SECONDS, self.settings.jwks_refresh_seconds
            ):
                return False
            self._jwks_fetch = asyncio.create_task(self._fetch_jwks(), name="auth-jwks-fetch")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._jwks_fetch), _JWKS_FETCH_SECONDS + 1)
        return True

    async def _fetch_jwks(self) -> None:
        assert self._http is not None
        assert self.settings.jwks_url is not None
        self._jwks_fetched = time.monotonic()
        try:
            response = await self._http.get(self.settings.jwks_url)
            response.raise_for_status()
            if len(response.content) > MAX_JWKS_BYTES:
                raise KeyFileError("JWKS document too large")
            jwks = parse_jwks(response.content)
        except (httpx.HTTPError, KeyFileError) as exc:
            log.warning("JWKS not refreshed, keeping %d keys: %s", len(self._jwks), type(exc).__name__)
            return
        self._jwks = jwks
        keys = self.verifier.keys
        self.verifier.keys = KeySet(keys.hmac_secret, keys.public_key, jwks, jwks_configured=True)
