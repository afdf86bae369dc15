"""Compact JWS tokens read strictly, and HS256/384/512 tokens verified on the connection set-up path.

A gateway verifies one token per connection, and with distinct users every connection brings a new one. PyJWT's
general machinery (options merging, a character-by-character alphabet check in Python, the standard ``json``
module, one function call per claim rule) costs 30-35 us per HS256 token in a loop and about 100 us inside a busy
pod, three times the rest of a connection's token work; the same checks written for the one case a gateway
needs cost 8.6 us (docs/decisions.md, "HMAC tokens"). So this module reads the compact serialization and checks
the registered claims itself, and nothing more:

- the HMAC is PyJWT's own algorithm object (``jwt.get_algorithm_by_name``), compared in constant time there;
- every rule mirrors PyJWT 2.15's for the same fault and raises PyJWT's exception class for it, so one mapping
  turns both paths' refusals into the same client-facing reasons;
- it is never more permissive than PyJWT: ``tests/unit/test_compact_tokens.py`` runs both over a corpus of valid
  and hostile tokens (and thousands of mutations of them) on every ``make test``. Where it is stricter (numeric
  strings or booleans as ``exp``/``nbf``/``iat``, non-finite or out-of-range JSON numbers), the corpus names it.

Asymmetric tokens (RS*, PS*, ES*, EdDSA) are not handled here: their signature check dominates their cost, and
PyJWT verifies them whole.
"""

from __future__ import annotations

import binascii
import re
import time
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
from jwt.exceptions import InvalidJTIError, InvalidSubjectError

_ALPHABET = re.compile(rb"[A-Za-z0-9_-]*")
_BASE64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_CANONICAL_LAST = {
    2: frozenset(_BASE64URL[::16]),  # 2 characters carry 1 byte: the last one's low 4 bits must be 0
    3: frozenset(_BASE64URL[::4]),  # 3 characters carry 2 bytes: the last one's low 2 bits must be 0
}
_SUPPORTED_CRIT = frozenset({"b64"})


@dataclass(frozen=True, slots=True)
class Compact:
    """A token split into its parts: the header parsed, the rest still encoded (nothing is trusted yet)."""

    header: dict[str, Any]
    signing_input: bytes
    payload: bytes
    signature: bytes


def split(token: str) -> Compact:
    """The parts of a compact JWS; ``jwt.DecodeError`` or ``jwt.InvalidTokenError`` for a malformed one."""
    raw = token.encode()
    signing_input, dot, signature = raw.rpartition(b".")
    header_segment, dot2, payload = signing_input.partition(b".")
    if not dot or not dot2:
        raise jwt.DecodeError("Not enough segments")
    try:
        header = orjson.loads(_decode(header_segment, "header"))
    except orjson.JSONDecodeError:
        raise jwt.DecodeError("Invalid header string") from None
    if not isinstance(header, dict):
        raise jwt.DecodeError("Invalid header string: must be a json object")
    _check_header(header)
    return Compact(header, signing_input, payload, _decode(signature, "crypto"))


def verify_hmac(
    compact: Compact,
    alg: str,
    secret: bytes,
    *,
    audience: str | None,
    issuer: str | None,
    leeway: float,
) -> dict[str, Any]:
    """The claims of an HS* token whose header names ``alg`` and whose signature ``secret`` makes, checked as
    PyJWT checks them (``exp``, ``nbf``, ``iat`` with ``leeway``; ``aud`` and ``iss`` when configured; the
    types of ``sub`` and ``jti``). Raises the ``jwt`` exception PyJWT raises for the same fault."""
    header = compact.header
    if header.get("alg") != alg:
        raise jwt.InvalidAlgorithmError("The specified alg value is not allowed")
    if header.get("b64", True) is not True:
        raise jwt.DecodeError("a detached payload (b64: false) is not accepted")
    algorithm = jwt.get_algorithm_by_name(alg)
    if not algorithm.verify(compact.signing_input, algorithm.prepare_key(secret), compact.signature):
        raise jwt.InvalidSignatureError("Signature verification failed")
    try:
        claims = orjson.loads(_decode(compact.payload, "payload"))
    except orjson.JSONDecodeError:
        raise jwt.DecodeError("Invalid payload string") from None
    if not isinstance(claims, dict):
        raise jwt.DecodeError("Invalid payload string: must be a json object")
    _check_claims(claims, audience, issuer, leeway)
    return claims


def _decode(segment: bytes, name: str) -> bytes:
    """One base64url segment, as PyJWT accepts it: optional ``=`` padding only where it completes a quantum,
    the URL-safe alphabet only, and the canonical encoding only (no stray bits in the last character)."""
    stripped = segment.rstrip(b"=")
    padding = len(segment) - len(stripped)
    if padding > 2 or (padding and len(segment) % 4) or _ALPHABET.fullmatch(stripped) is None:
        raise jwt.DecodeError(f"Invalid {name} padding")
    spare = len(stripped) % 4
    if spare == 1 or (spare and stripped[-1] not in _CANONICAL_LAST[spare]):
        raise jwt.DecodeError(f"Invalid {name} padding")
    return binascii.a2b_base64(stripped.translate(_TO_STANDARD) + b"=" * (-spare % 4))


def _check_header(header: dict[str, Any]) -> None:
    if "kid" in header and not isinstance(header["kid"], str):
        raise jwt.InvalidTokenError("Key ID header parameter must be a string")
    if "crit" in header:
        crit = header["crit"]
        if not isinstance(crit, list) or not crit:
            raise jwt.InvalidTokenError("Invalid 'crit' header: must be a non-empty list")
        for extension in crit:
            if not isinstance(extension, str) or extension not in _SUPPORTED_CRIT or extension not in header:
                raise jwt.InvalidTokenError("Unsupported or missing critical extension")


def _check_claims(claims: dict[str, Any], audience: str | None, issuer: str | None, leeway: float) -> None:
    now = time.time()
    if "iat" in claims and _numeric(claims["iat"], jwt.InvalidIssuedAtError) > now + leeway:
        raise jwt.ImmatureSignatureError("The token is not yet valid (iat)")
    if "nbf" in claims and _numeric(claims["nbf"], jwt.DecodeError) > now + leeway:
        raise jwt.ImmatureSignatureError("The token is not yet valid (nbf)")
    if "exp" in claims and _numeric(claims["exp"], jwt.DecodeError) <= now - leeway:
        raise jwt.ExpiredSignatureError("Signature has expired")
    if issuer is not None:
        if "iss" not in claims:
            raise jwt.MissingRequiredClaimError("iss")
        if claims["iss"] != issuer:
            raise jwt.InvalidIssuerError("Invalid issuer")
    if audience is not None:
        aud = claims.get("aud")
        if not aud:
            raise jwt.MissingRequiredClaimError("aud")
        listed = [aud] if isinstance(aud, str) else aud
        if not isinstance(listed, list) or not all(isinstance(entry, str) for entry in listed):
            raise jwt.InvalidAudienceError("Invalid claim format in token")
        if audience not in listed:
            raise jwt.InvalidAudienceError("Audience doesn't match")
    if "sub" in claims and not isinstance(claims["sub"], str):
        raise InvalidSubjectError("Subject must be a string")
    if "jti" in claims and not isinstance(claims["jti"], str):
        raise InvalidJTIError("JWT ID must be a string")


def _numeric(value: Any, error: type[jwt.PyJWTError]) -> int:
    """A NumericDate truncated to whole seconds, as PyJWT compares it; only JSON numbers count (PyJWT also takes
    numeric strings and booleans, which no issuer means)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error("NumericDate claims must be numbers")
    return int(value)
