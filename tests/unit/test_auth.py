"""Access control without I/O: token verification per algorithm, claim patterns, the rules, origins, credentials."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from fleetcast.auth import tokens
from fleetcast.auth.credentials import bearer, cookie, take_query_token
from fleetcast.auth.keys import KeyFileError, parse_jwks, read_publish_keys, read_secret
from fleetcast.auth.origins import OriginPolicy
from fleetcast.auth.principal import ANONYMOUS, BadClaims, Grants, Principal, principal_from_claims
from fleetcast.auth.tokens import InvalidToken, KeySet, TokenExpired, TokenVerifier, UnknownKeyId, algorithms_for
from fleetcast.contract.policy import ChannelPolicy
from fleetcast.errors import Forbidden, Unauthorized
from fleetcast.session.access import Access
from fleetcast.session.policies import PolicyBook
from tests.support.tokens import AUDIENCE, Keys, ec_and_ed_keys, hand_signed, hostile_tokens

SECRET = b"s" * 64


def verifier(**keys: Any) -> TokenVerifier:
    made = TokenVerifier(audience=AUDIENCE)
    made.keys = KeySet(**keys)
    return made


def claims(**extra: Any) -> dict[str, Any]:
    return {"aud": AUDIENCE, "exp": int(time.time()) + 60, **extra}


@pytest.fixture(scope="module")
def keys() -> Any:
    made = Keys()
    yield made
    made.cleanup()


def test_grants_match_exact_family_and_everything() -> None:
    """``chat:room`` matches itself, ``chat:*`` every suffixed chat channel but not bare ``chat``, ``*`` all."""
    grants = Grants.of("channels", ["news", "chat:*"])
    assert grants.allows("news")
    assert grants.allows("chat:room-1")
    assert not grants.allows("chat")
    assert not grants.allows("news:x")
    assert not grants.allows("chatter:x")
    assert Grants.of("channels", ["*"]).allows("anything:at-all")


@pytest.mark.parametrize("value", ["chat:*", ["chat:**"], ["Chat"], [1], ["a:b:c"], ["x"] * 257, [""]])
def test_malformed_claims_are_refused(value: Any) -> None:
    """A claim that is not a short list of valid patterns is refused, naming the claim and not its value."""
    with pytest.raises(BadClaims, match="'channels'"):
        Grants.parse("channels", value)


def test_sub_must_be_a_short_string() -> None:
    """``sub`` is a string of 1 to 128 characters."""
    assert principal_from_claims({"sub": "u1"}).sub == "u1"
    for bad in (1, "", "x" * 129, ["u1"]):
        with pytest.raises(BadClaims, match="'sub'"):
            principal_from_claims({"sub": bad})


def test_every_algorithm_verifies_with_its_own_key_kind(keys: Keys) -> None:
    """HS256/384/512, RS256, PS256, ES256 and EdDSA tokens verify with a key of their kind."""
    rsa_public = keys.rsa_key.public_key()
    for alg in ("HS256", "HS384", "HS512"):
        principal = verifier(hmac_secret=SECRET).verify(jwt.encode(claims(sub="u"), SECRET, alg))
        assert principal.sub == "u"
    for alg in ("RS256", "PS256"):
        assert verifier(public_key=rsa_public).verify(jwt.encode(claims(sub="r"), keys.rsa_key, alg)).sub == "r"
    for alg, (private, _) in ec_and_ed_keys().items():
        token = jwt.encode(claims(sub=alg), private, alg)
        assert verifier(public_key=private.public_key()).verify(token).sub == alg


def test_hostile_tokens_are_refused_with_their_reason(keys: Keys) -> None:
    """Forged, none, HS/RS confusion, expired, immature and wrong-audience tokens each fail with a reason."""
    check = verifier(hmac_secret=keys.secret, public_key=keys.rsa_key.public_key())
    reasons = {}
    for name, token in hostile_tokens(keys, "c").items():
        with pytest.raises(InvalidToken) as refused:
            check.verify(token)
        reasons[name] = (type(refused.value), refused.value.message)
        assert token not in refused.value.message
    assert reasons == {
        "forged signature": (InvalidToken, "token signature does not verify"),
        "alg none": (InvalidToken, "token algorithm 'none' is not accepted here"),
        "HS/RS confusion": (InvalidToken, "token signature does not verify"),
        "expired": (TokenExpired, "token expired"),
        "not yet valid": (InvalidToken, "token is not valid yet"),
        "wrong audience": (InvalidToken, "token audience is not accepted"),
    }


def test_hmac_algorithms_need_a_secret_as_long_as_their_hash() -> None:
    """A 32-byte secret verifies HS256 but not HS512 (RFC 7518 3.2)."""
    short = b"k" * 32
    assert verifier(hmac_secret=short).verify(jwt.encode(claims(), short, "HS256"))
    with pytest.raises(InvalidToken, match="longer shared secret"):
        verifier(hmac_secret=short).verify(hand_signed({"alg": "HS512"}, claims(), short))


def test_hmac_tokens_need_a_secret_and_public_keys_never_serve_as_one(keys: Keys) -> None:
    """With only a public key, an HS256 token signed with that key's PEM is refused before any HMAC runs."""
    pem = keys.public_key_file.read_bytes()
    token = hand_signed({"alg": "HS256"}, claims(), pem)
    with pytest.raises(InvalidToken, match="no shared secret"):
        verifier(public_key=keys.rsa_key.public_key()).verify(token)


def test_an_es256_token_is_not_verified_with_an_rsa_key(keys: Keys) -> None:
    """The algorithm must fit the key's type."""
    private, _ = ec_and_ed_keys()["ES256"]
    with pytest.raises(InvalidToken, match="not accepted"):
        verifier(public_key=keys.rsa_key.public_key()).verify(jwt.encode(claims(), private, "ES256"))
    assert algorithms_for(private.public_key()) == {"ES256"}


def test_jwks_keys_are_chosen_by_kid(keys: Keys) -> None:
    """A JWKS key verifies tokens naming its kid; an unknown kid asks for a refresh (UnknownKeyId)."""
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(keys.rsa_key.public_key(), as_dict=True)
    document = '{"keys": [' + jwt.api_jws.json.dumps({**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}) + "]}"
    check = verifier(jwks=parse_jwks(document.encode()), jwks_configured=True)
    token = jwt.encode(claims(sub="j"), keys.rsa_key, "RS256", headers={"kid": "k1"})
    assert check.verify(token).sub == "j"
    with pytest.raises(UnknownKeyId):
        check.verify(jwt.encode(claims(), keys.rsa_key, "RS256", headers={"kid": "k2"}))
    with pytest.raises(KeyFileError):
        parse_jwks(b"{not json")


def test_garbage_and_oversized_tokens_are_refused() -> None:
    """Not a JWT, a huge string, or no key configured at all: refused with a plain message."""
    with pytest.raises(InvalidToken, match="well-formed"):
        verifier(hmac_secret=SECRET).verify("a.b.c")
    with pytest.raises(InvalidToken, match="longer"):
        verifier(hmac_secret=SECRET).verify("a" * 10_000)
    with pytest.raises(InvalidToken, match="no signing key"):
        TokenVerifier().verify(jwt.encode(claims(), SECRET, "HS256"))


def test_verified_tokens_are_remembered_until_they_expire_or_the_keys_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reconnect with the same token skips the signature check; an expired or re-keyed one is checked again,
    and the memory of verified tokens is bounded."""
    check = verifier(hmac_secret=SECRET)
    checks = []
    real_verify = tokens.verify_hmac
    monkeypatch.setattr(tokens, "verify_hmac", lambda *a, **k: checks.append(1) or real_verify(*a, **k))
    short = jwt.encode(claims(sub="u1", exp=int(time.time()) + 2), SECRET, algorithm="HS256")
    assert check.verify(short).sub == "u1"
    assert check.verify(short).sub == "u1"
    assert len(checks) == 1
    check.leeway = -3  # the token's exp is now in the past as far as the verifier is concerned
    with pytest.raises(TokenExpired):
        check.verify(short)
    check.leeway = 0
    fresh = jwt.encode(claims(sub="u2"), SECRET, algorithm="HS256")
    assert check.verify(fresh).sub == "u2"
    check.keys = KeySet(hmac_secret=b"t" * 64)  # rotation: nothing the old secret verified is trusted any more
    with pytest.raises(InvalidToken, match="signature"):
        check.verify(fresh)
    monkeypatch.setattr(tokens, "VERIFIED_CACHE_SIZE", 8)
    for n in range(20):
        check.verify(jwt.encode(claims(sub=f"u{n}"), b"t" * 64, algorithm="HS256"))
    assert len(check._verified) == 8


def test_the_hmac_key_check_runs_once_per_secret(keys: Keys, tmp_path: Any) -> None:
    """PyJWT's refusal of a public key used as an HMAC secret still holds: per secret, once, and a key file that
    holds a public key is refused when the gateway starts."""
    check = verifier(hmac_secret=SECRET)
    token = jwt.encode(claims(sub="u1"), SECRET, algorithm="HS256")
    assert check.verify(token).sub == "u1"
    pem = keys.public_key_file.read_bytes()
    confused = verifier(hmac_secret=pem)
    with pytest.raises(InvalidToken):
        confused.verify(hand_signed({"alg": "HS256", "typ": "JWT"}, claims(sub="x"), pem))
    (tmp_path / "secret").write_bytes(pem)
    with pytest.raises(KeyFileError, match="public key"):
        read_secret(str(tmp_path / "secret"))


def test_a_malformed_header_is_refused_before_any_key_is_chosen() -> None:
    """The header that chooses the key is read strictly: junk in its base64, or JSON that is not an object."""
    check = verifier(hmac_secret=SECRET)
    token = jwt.encode(claims(sub="u1"), SECRET, algorithm="HS256")
    head, rest = token.split(".", 1)
    for bad in (head[:4] + "!" + head[4:], head[:4] + "\n" + head[4:], "e30", "W10"):
        with pytest.raises(InvalidToken):
            check.verify(f"{bad}.{rest}")


def test_key_files(tmp_path: Any) -> None:
    """A short HMAC secret is refused; API keys are read one per file, skipping hidden and empty files."""
    short = tmp_path / "short"
    short.write_text("too-short\n")
    with pytest.raises(KeyFileError, match="at least 32 bytes"):
        read_secret(str(short))
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    (keys_dir / "billing").write_text("k1\n")
    (keys_dir / "empty").write_text("")
    (keys_dir / "..data").mkdir()
    assert read_publish_keys(str(keys_dir), "single") == {"default": b"single", "billing": b"k1"}


def access(**policy: Any) -> Access:
    return Access(PolicyBook(ChannelPolicy(**policy)))


def token(sub: str | None = None, channels: tuple[str, ...] = (), publish: tuple[str, ...] = ()) -> Principal:
    return Principal("token", sub=sub, subscribe=Grants.of("c", channels), publish=Grants.of("p", publish))


def test_subscribe_rules() -> None:
    """Claims grant; anonymous policies admit everyone; refusals are 401 for nobody and 403 for a token."""
    closed = access()
    assert closed.subscribe(token(channels=("chat:*",)), "chat:1", "ws")
    with pytest.raises(Unauthorized):
        closed.subscribe(ANONYMOUS, "chat:1", "ws")
    with pytest.raises(Forbidden):
        closed.subscribe(token(channels=("chat:2",)), "chat:1", "sse")
    assert access(subscribe_anonymous=True).subscribe(ANONYMOUS, "chat:1", "sse")
    with pytest.raises(Forbidden, match="sse transport"):
        access(subscribe_anonymous=True, transports=("ws",)).subscribe(ANONYMOUS, "chat:1", "sse")


def test_user_scoped_channels() -> None:
    """``family:<sub>`` is its user's; never anonymous, even on an anonymous family; a claim may still grant it."""
    scoped = access(subscribe_user_scoped=True, subscribe_anonymous=True)
    assert scoped.read(token(sub="alice"), "notes:alice")
    with pytest.raises(Forbidden):
        scoped.read(token(sub="bob"), "notes:alice")
    with pytest.raises(Unauthorized):
        scoped.read(ANONYMOUS, "notes:alice")
    assert scoped.read(ANONYMOUS, "notes"), "the bare family follows anonymous"
    assert scoped.read(token(sub="support", channels=("notes:*",)), "notes:alice")


def test_publish_rules() -> None:
    """Keys publish over HTTP only; clients over WS need fromClients and a claim (or anonymous publishing)."""
    closed = access()
    key = Principal("key", key_name="backend")
    assert closed.publish(key, "chat:1", "http")
    with pytest.raises(Forbidden, match="over HTTP"):
        closed.publish(key, "chat:1", "ws")
    assert closed.publish(token(publish=("chat:1",)), "chat:1", "http"), "a backend's token with a publish claim"
    with pytest.raises(Forbidden, match="clients may not publish"):
        closed.publish(token(publish=("chat:1",)), "chat:1", "ws")
    clients = access(publish_from_clients=True)
    assert clients.publish(token(publish=("chat:*",)), "chat:1", "ws")
    with pytest.raises(Unauthorized):
        clients.publish(ANONYMOUS, "chat:1", "ws")
    with pytest.raises(Forbidden):
        clients.publish(token(channels=("chat:*",)), "chat:1", "ws")
    assert access(publish_from_clients=True, publish_anonymous=True).publish(ANONYMOUS, "chat:1", "ws")


def test_origins() -> None:
    """Own origin always; listed exact and wildcard origins; localhost only when nothing is listed."""
    default = OriginPolicy()
    assert default.allows("http://localhost:3000", "gw:8000")
    assert default.allows("https://rt.example.com", "rt.example.com")
    assert default.allows("https://rt.example.com:443", "rt.example.com")
    assert not default.allows("https://evil.example", "rt.example.com")
    assert not default.allows("null", "rt.example.com")
    listed = OriginPolicy(["https://app.example.com", "https://*.example.org"])
    assert listed.allows("https://app.example.com", "gw")
    assert listed.allows("https://a.b.example.org", "gw")
    assert not listed.allows("https://example.org", "gw")
    assert not listed.allows("http://a.example.org", "gw")
    assert not listed.allows("https://a.example.org.evil.com", "gw")
    assert not listed.allows("http://localhost:3000", "gw")
    with pytest.raises(ValueError, match="not an origin"):
        OriginPolicy(["example.com"])


def test_credentials_in_requests() -> None:
    """One bearer parser; cookies by name; ``?token=`` taken out of the query string."""
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None
    assert bearer("Bearer") is None
    assert cookie("a=1; fleetcast_token=t.k.n", "fleetcast_token") == "t.k.n"
    assert cookie('bad"cookie', "fleetcast_token") is None
    assert take_query_token(b"lastEventId=1-0&token=abc") == (b"lastEventId=1-0", "abc")
    assert take_query_token(b"since=0-0") == (b"since=0-0", None)
