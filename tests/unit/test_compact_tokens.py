"""The HMAC token path against PyJWT: on every token, valid or hostile, it is never more permissive.

``fleetcast.auth.compact`` checks HS256/384/512 tokens without PyJWT's general machinery (connection set-up cost,
docs/decisions.md). These tests run it and ``jwt.decode`` side by side over a named corpus and thousands of
seeded mutations: whatever it accepts PyJWT accepts with the same claims, whatever PyJWT refuses it refuses, and
the cases where it is stricter are exactly the ones listed. A PyJWT upgrade that changes a rule fails here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from fleetcast.auth.compact import split, verify_hmac

SECRET = b"k" * 64
OTHER = b"o" * 64
AUDIENCE = "fleetcast-tests"
ISSUER = "https://issuer.example"
LEEWAY = 5.0
HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}

Outcome = tuple[str, Any]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(header: dict[str, Any] | bytes, payload: dict[str, Any] | Any, secret: bytes = SECRET) -> str:
    """A compact JWS over exactly these header and payload bytes (dicts are JSON-encoded)."""
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = b64(head) + "." + b64(body)
    alg = header.get("alg", "HS256") if isinstance(header, dict) else "HS256"
    digest = hmac.new(secret, signing_input.encode(), HASHES.get(alg, hashlib.sha256)).digest()
    return signing_input + "." + b64(digest)


def ours(token: str, alg: str, audience: str | None, issuer: str | None) -> Outcome:
    try:
        return "accepted", verify_hmac(split(token), alg, SECRET, audience=audience, issuer=issuer, leeway=LEEWAY)
    except jwt.PyJWTError as exc:
        return "refused", type(exc)


def pyjwts(token: str, alg: str, audience: str | None, issuer: str | None) -> Outcome:
    try:
        claims = jwt.decode(
            token,
            SECRET,
            algorithms=[alg],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY,
            options={"verify_aud": audience is not None},
        )
    except jwt.PyJWTError as exc:
        return "refused", type(exc)
    return "accepted", claims


def corpus() -> dict[str, str]:
    """Named tokens, one fault (or none) each."""
    now = int(time.time())
    good = {"sub": "u1", "aud": AUDIENCE, "iss": ISSUER, "exp": now + 600, "channels": ["chat:*"]}
    hs256 = {"alg": "HS256", "typ": "JWT"}
    token = sign(hs256, good)
    head, body, signature = token.split(".")
    cases: dict[str, str] = {
        "valid": token,
        "valid HS384": sign({"alg": "HS384"}, good),
        "valid HS512": sign({"alg": "HS512"}, good),
        "valid, no exp": sign(hs256, {k: v for k, v in good.items() if k != "exp"}),
        "valid, float exp": sign(hs256, {**good, "exp": now + 600.5}),
        "valid, exp within leeway": sign(hs256, {**good, "exp": now - 2}),
        "valid, nbf within leeway": sign(hs256, {**good, "nbf": now + 2}),
        "valid, iat past": sign(hs256, {**good, "iat": now - 100}),
        "valid, aud list": sign(hs256, {**good, "aud": ["other", AUDIENCE]}),
        "valid, kid": sign({**hs256, "kid": "k1"}, good),
        "valid, crit b64 true": sign({**hs256, "b64": True, "crit": ["b64"]}, good),
        "valid, jti": sign(hs256, {**good, "jti": "j1"}),
        "valid, duplicate claim keys": sign(
            hs256, f'{{"sub":"a","sub":"u1","aud":"{AUDIENCE}","iss":"{ISSUER}"}}'.encode()
        ),
        "padded segments": f"{head}{'=' * (-len(head) % 4)}.{body}{'=' * (-len(body) % 4)}.{signature}"
        + "=" * (-len(signature) % 4),
        "expired": sign(hs256, {**good, "exp": now - 100}),
        "not yet valid": sign(hs256, {**good, "nbf": now + 100}),
        "issued in the future": sign(hs256, {**good, "iat": now + 100}),
        "exp not a number": sign(hs256, {**good, "exp": [1]}),
        "exp null": sign(hs256, {**good, "exp": None}),
        "nbf not a number": sign(hs256, {**good, "nbf": {"a": 1}}),
        "iat not a number": sign(hs256, {**good, "iat": "soon"}),
        "wrong audience": sign(hs256, {**good, "aud": "other"}),
        "audience list without ours": sign(hs256, {**good, "aud": ["a", "b"]}),
        "audience list with a number": sign(hs256, {**good, "aud": [AUDIENCE, 3]}),
        "audience a number": sign(hs256, {**good, "aud": 3}),
        "audience empty": sign(hs256, {**good, "aud": ""}),
        "no audience": sign(hs256, {k: v for k, v in good.items() if k != "aud"}),
        "wrong issuer": sign(hs256, {**good, "iss": "https://evil.example"}),
        "issuer a number": sign(hs256, {**good, "iss": 7}),
        "no issuer": sign(hs256, {k: v for k, v in good.items() if k != "iss"}),
        "sub a number": sign(hs256, {**good, "sub": 5}),
        "jti a number": sign(hs256, {**good, "jti": 5}),
        "payload a list": sign(hs256, [good]),
        "payload a string": sign(hs256, "hello"),
        "payload not json": sign(hs256, b"{not json"),
        "payload empty": sign(hs256, b""),
        "header a list": sign(b'["HS256"]', good),
        "header not json": sign(b"{alg:HS256}", good),
        "kid a number": sign({**hs256, "kid": 7}, good),
        "crit unknown": sign({**hs256, "crit": ["exp"], "exp": 1}, good),
        "crit empty": sign({**hs256, "crit": []}, good),
        "crit not a list": sign({**hs256, "crit": "b64"}, good),
        "crit names a missing header": sign({**hs256, "crit": ["b64"]}, good),
        "b64 false": sign({**hs256, "b64": False, "crit": ["b64"]}, good),
        "header names another algorithm": sign({"alg": "HS512"}, good),
        "alg none": f"{b64(json.dumps({'alg': 'none'}).encode())}.{body}.",
        "signed with another secret": sign(hs256, good, OTHER),
        "signature truncated": token[:-4],
        "signature empty": f"{head}.{body}.",
        "payload swapped": f"{head}.{b64(json.dumps({**good, 'sub': 'admin'}).encode())}.{signature}",
        "two segments": f"{head}.{body}",
        "four segments": f"{token}.{signature}",
        "empty": "",
        "dots only": "..",
        "junk in header": f"{head[:3]}!{head[3:]}.{body}.{signature}",
        "standard base64 characters": token.replace("-", "+").replace("_", "/"),
        "space in signature": f"{head}.{body}. {signature}",
        "newline in payload": f"{head}.{body[:5]}\n{body[5:]}.{signature}",
        "non-ascii": f"{head}.{body}.{signature[:-1]}\u00e9",
        "too much padding": f"{head}===.{body}.{signature}",
        "padding where none belongs": f"{head}.{body}.{signature}A=",
        "non-canonical last character": f"{head}.{body}.{signature[:-1]}{_sibling(signature[-1])}",
        "length 1 mod 4": f"{head}.{body}.{signature}A",
    }
    # Numeric strings and booleans as dates: PyJWT takes them (``int("...")``, ``int(True)``); no issuer means them.
    cases["exp a numeric string"] = sign(hs256, {**good, "exp": str(now + 600)})
    cases["nbf a boolean"] = sign(hs256, {**good, "nbf": True})
    return cases


STRICTER = {"exp a numeric string", "nbf a boolean"}
"""Tokens PyJWT accepts and the HMAC path refuses, on purpose (see ``fleetcast.auth.compact._numeric``)."""


def _sibling(char: str) -> str:
    """Another base64url character that decodes to the same bytes when it ends a segment with spare bits."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    index = alphabet.index(char)
    return alphabet[index ^ 1]


def header_alg(token: str) -> str:
    try:
        alg = split(token).header.get("alg")
    except jwt.PyJWTError:
        return "HS256"
    return alg if alg in HASHES else "HS256"


def compare(token: str, alg: str, audience: str | None, issuer: str | None) -> tuple[Outcome, Outcome]:
    return ours(token, alg, audience, issuer), pyjwts(token, alg, audience, issuer)


CONFIGURATIONS = [(None, None), (AUDIENCE, ISSUER)]


@pytest.mark.parametrize(("audience", "issuer"), CONFIGURATIONS)
def test_every_named_token_gets_pyjwts_verdict(audience: str | None, issuer: str | None) -> None:
    """Same verdict as PyJWT on every named token, same claims when accepted, and where both refuse, the same
    reason unless one of them refused the signature (PyJWT decodes the payload before it checks the signature,
    the HMAC path after: a forged token with a malformed payload gets a different, equally final, reason)."""
    stricter, different = set(), {}
    for name, token in corpus().items():
        alg = "HS256" if name == "header names another algorithm" else header_alg(token)
        (verdict, detail), (expected, expected_detail) = compare(token, alg, audience, issuer)
        if verdict == "accepted":
            assert (expected, detail) == ("accepted", expected_detail), name
        elif expected == "accepted":
            stricter.add(name)
        elif detail is not expected_detail and jwt.InvalidSignatureError not in (detail, expected_detail):
            different[name] = (detail.__name__, expected_detail.__name__)
    assert stricter == STRICTER
    assert different == _REASONS_THAT_DIFFER


_REASONS_THAT_DIFFER: dict[str, tuple[str, str]] = {}
"""Named tokens both refuse for different reasons (none: a reason changing in PyJWT shows up here)."""


@pytest.mark.parametrize(("audience", "issuer"), CONFIGURATIONS)
def test_mutated_tokens_are_never_accepted_where_pyjwt_refuses(audience: str | None, issuer: str | None) -> None:
    """Thousands of seeded one-character edits of valid tokens: never accepted where PyJWT refuses, and every
    acceptance carries PyJWT's claims."""
    rng = random.Random(20261202)
    valid = [token for name, token in corpus().items() if name.startswith("valid")]
    characters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=.+/ !\n"
    edits: list[Callable[[str, int], str]] = [
        lambda t, i: t[:i] + rng.choice(characters) + t[i + 1 :],
        lambda t, i: t[:i] + rng.choice(characters) + t[i:],
        lambda t, i: t[:i] + t[i + 1 :],
    ]
    accepted = 0
    for _ in range(3000):
        original = rng.choice(valid)
        token = rng.choice(edits)(original, rng.randrange(len(original)))
        (verdict, detail), (expected, expected_detail) = compare(token, header_alg(original), audience, issuer)
        if verdict == "accepted":
            accepted += 1
            assert (expected, detail) == ("accepted", expected_detail), token
        if expected == "refused":
            assert verdict == "refused", token
    assert accepted < 3000 // 10  # almost every edit breaks the signature; the few that survive are padding


def test_the_signature_is_checked_before_the_payload_is_read() -> None:
    """A forged token with a malformed payload is refused for its signature: nothing unverified is parsed."""
    header = b64(json.dumps({"alg": "HS256"}).encode())
    forged = f"{header}.{b64(b'{not json')}.{b64(b'x' * 32)}"
    assert ours(forged, "HS256", None, None) == ("refused", jwt.InvalidSignatureError)


@pytest.mark.parametrize("alg", ["HS256", "HS512"])
def test_only_the_canonical_last_character_of_a_segment_is_accepted(alg: str) -> None:
    """Every character in the last place of the signature (HS256: 2 spare bits, HS512: 4): only the one the
    signer wrote is accepted; the others either change the bytes or only the spare bits, and both are refused."""
    token = sign({"alg": alg}, {"sub": "u1"})
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    verdicts = {}
    for last in alphabet:
        variant = token[:-1] + last
        (verdict, _), (expected, _) = compare(variant, alg, None, None)
        assert verdict == expected, last
        verdicts[last] = verdict
    assert [last for last, verdict in verdicts.items() if verdict == "accepted"] == [token[-1]]
