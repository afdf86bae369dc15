"""JWT verification: one token in, a :class:`~fleetcast.auth.principal.Principal` or a clear refusal out.

PyJWT does the cryptography; the registered claims (``exp``, ``nbf``, ``aud``, ``iss``, with a small leeway) are
checked by PyJWT for asymmetric tokens and, with PyJWT's rules, by :mod:`fleetcast.auth.compact` for HMAC ones
(the connection set-up path: a quarter of the cost). This module decides *which key may verify which algorithm*,
because that is where JWT libraries are misused:

- ``alg: none`` and any algorithm the configured keys cannot verify are refused before any signature check;
- HMAC algorithms (HS256/384/512) are verified only with the configured shared secret, never with a public
  key's bytes, so a token signed with the public key as an HMAC secret (algorithm confusion) fails;
- an asymmetric algorithm is verified only with a key of its own type: RSA for RS*/PS*, the matching curve for
  ES*, Ed25519/Ed448 for EdDSA (from ``--jwt-public-key-file`` or the JWKS entry named by ``kid``).

Verification is synchronous and takes microseconds; callers verify once per connection or request, never per
event. A reconnecting client (after a drain, a network change, an ``EventSource`` retry) presents the token it
had, so the last :data:`VERIFIED_CACHE_SIZE` verified tokens are remembered with their principal until they
expire or the keys change. Where the keys come from, and when they are reloaded, is
:mod:`fleetcast.auth.keys`'s business.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import HMACAlgorithm

from fleetcast.auth.compact import split, verify_hmac
from fleetcast.auth.principal import BadClaims, Principal, principal_from_claims
from fleetcast.errors import Unauthorized

HMAC_ALGORITHMS = {"HS256": 32, "HS384": 48, "HS512": 64}
"""HMAC algorithms, each with the shortest secret it may be verified with (RFC 7518 section 3.2: at least
the hash's output size)."""
MAX_TOKEN_BYTES = 8192
"""Longer strings are refused unread: a token is a few hundred bytes, and parsing costs grow with size."""
MIN_HMAC_SECRET_BYTES = 32
"""The shortest shared secret a gateway starts with (enough for HS256)."""
VERIFIED_CACHE_SIZE = 4096
"""Verified tokens remembered (least recently used out): a few MiB at most, and a reconnect storm after a
drain costs a dictionary lookup per client instead of a signature check."""

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey


class InvalidToken(Unauthorized):
    """The token was not accepted. The message says why in general terms and never repeats the token."""

    code = "invalid_token"


class TokenExpired(InvalidToken):
    code = "token_expired"


class UnknownKeyId(InvalidToken):
    """The token names a ``kid`` the key set does not hold (yet): a JWKS refresh may find it."""


def algorithms_for(key: PublicKey) -> frozenset[str]:
    """The JWS algorithms a public key of this type can verify."""
    if isinstance(key, rsa.RSAPublicKey):
        return frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
    if isinstance(key, ec.EllipticCurvePublicKey):
        curve = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}.get(key.curve.name)
        return frozenset({curve}) if curve else frozenset()
    return frozenset({"EdDSA"})


@dataclass(frozen=True, slots=True)
class KeySet:
    """Every key tokens may be verified with, as loaded at one moment. Replaced whole on reload."""

    hmac_secret: bytes | None = None
    public_key: PublicKey | None = None
    jwks: Mapping[str, tuple[Any, str]] = field(default_factory=dict)
    """``kid`` -> (key, algorithm) from a JWKS document."""
    jwks_configured: bool = False

    @property
    def empty(self) -> bool:
        return self.hmac_secret is None and self.public_key is None and not self.jwks and not self.jwks_configured

    def key_for(self, alg: str, kid: str | None) -> Any:
        """The key that may verify ``alg`` (and ``kid``); :class:`InvalidToken` if none may."""
        if alg in HMAC_ALGORITHMS:
            if self.hmac_secret is None:
                raise InvalidToken(f"token algorithm {alg} is not accepted here (no shared secret is configured)")
            if len(self.hmac_secret) < HMAC_ALGORITHMS[alg]:
                raise InvalidToken(f"token algorithm {alg} needs a longer shared secret than this gateway has")
            return self.hmac_secret
        if kid is not None and kid in self.jwks:
            key, key_alg = self.jwks[kid]
            if key_alg != alg:
                raise InvalidToken(f"token algorithm {alg} does not match its key")
            return key
        if self.public_key is not None and alg in algorithms_for(self.public_key):
            return self.public_key
        if self.jwks_configured and (kid is not None or not self.jwks):
            raise UnknownKeyId("token signing key is not known")
        raise InvalidToken(f"token algorithm {alg[:16]!r} is not accepted here")


class _HmacKeyCheckedOnce(HMACAlgorithm):
    """PyJWT's HMAC algorithm, whose check of the key (not a PEM, SSH or DER public key, not a JWK: PyJWT's own
    defence against algorithm confusion) runs once per secret instead of once per token. A gateway's secret is
    one ``bytes`` object for as long as it is configured; the check costs 12-19 us, a third of a verification."""

    def __init__(self, hash_alg: Any) -> None:
        super().__init__(hash_alg)
        self._checked: bytes | None = None

    def prepare_key(self, key: str | bytes) -> bytes:
        if key is self._checked:
            return key
        prepared = super().prepare_key(key)
        if isinstance(key, bytes):
            self._checked = key
        return prepared


def _check_hmac_keys_once() -> None:
    """Install :class:`_HmacKeyCheckedOnce` for HS256/384/512 in PyJWT's registry (public API; idempotent)."""
    for name, hash_alg in (
        ("HS256", HMACAlgorithm.SHA256),
        ("HS384", HMACAlgorithm.SHA384),
        ("HS512", HMACAlgorithm.SHA512),
    ):
        if not isinstance(jwt.get_algorithm_by_name(name), _HmacKeyCheckedOnce):
            jwt.unregister_algorithm(name)
            jwt.register_algorithm(name, _HmacKeyCheckedOnce(hash_alg))


class TokenVerifier:
    def __init__(
        self,
        *,
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 5.0,
    ) -> None:
        self.keys = KeySet()
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway
        self._verified: OrderedDict[str, Principal] = OrderedDict()
        self._verified_with: KeySet | None = None
        _check_hmac_keys_once()

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; :class:`InvalidToken` (a 401 / close 4001) otherwise."""
        keys = self.keys
        if keys is not self._verified_with:
            # New keys (a rotation, a JWKS refresh): what the old ones verified is verified again.
            self._verified.clear()
            self._verified_with = keys
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at is not None and known.expires_at + self.leeway <= time.time():
                del self._verified[token]
                raise TokenExpired("token expired")
            self._verified.move_to_end(token)
            return known
        principal = self._verify(token, keys)
        self._verified[token] = principal
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    def _verify(self, token: str, keys: KeySet) -> Principal:
        if keys.empty:
            raise InvalidToken("this gateway accepts no tokens: no signing key is configured")
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken(f"token is longer than {MAX_TOKEN_BYTES} bytes")
        try:
            compact = split(token)
        except jwt.PyJWTError:
            raise InvalidToken("token is not a well-formed JWT") from None
        alg, kid = compact.header.get("alg"), compact.header.get("kid")
        if not isinstance(alg, str):
            raise InvalidToken("token header is malformed")
        key = keys.key_for(alg, kid)
        try:
            if alg in HMAC_ALGORITHMS:
                claims = verify_hmac(compact, alg, key, audience=self.audience, issuer=self.issuer, leeway=self.leeway)
            else:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=self.leeway,
                    options={"verify_aud": self.audience is not None},
                )
        except jwt.ExpiredSignatureError:
            raise TokenExpired("token expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("token audience is not accepted") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("token issuer is not accepted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("token signature does not verify") from None
        except jwt.PyJWTError:  # InvalidTokenError, and InvalidKeyError for a key PyJWT will not use as given
            raise InvalidToken("token rejected") from None
        try:
            return principal_from_claims(claims)
        except BadClaims as exc:
            raise InvalidToken(f"token rejected: {exc}") from None
