"""Key material and tokens for tests: real keys written to files the pods read, tokens signed with PyJWT.

The hostile tokens (``alg: none``, HS256 signed with the RSA public key as its secret) are built by hand,
because a careful library refuses to make them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

AUDIENCE = "fleetcast-tests"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _pem(key: Any) -> bytes:
    return bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


@dataclass
class Keys:
    """A directory with an HMAC secret, an RSA public key and a publish-keys directory, for ``fleetcast serve``."""

    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fleetcast-keys-")))
    secret: bytes = field(default_factory=lambda: secrets.token_urlsafe(48).encode())
    rsa_key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))

    def __post_init__(self) -> None:
        self.secret_file.write_bytes(self.secret + b"\n")
        self.public_key_file.write_bytes(_pem(self.rsa_key))
        self.publish_keys_dir.mkdir()
        (self.publish_keys_dir / "backend").write_text("key-" + secrets.token_hex(16))

    @property
    def secret_file(self) -> Path:
        return self.directory / "jwt-secret"

    @property
    def public_key_file(self) -> Path:
        return self.directory / "jwt-public.pem"

    @property
    def publish_keys_dir(self) -> Path:
        return self.directory / "publish-keys"

    @property
    def api_key(self) -> str:
        return (self.publish_keys_dir / "backend").read_text()

    def pod_args(self, *, audience: str | None = AUDIENCE) -> list[str]:
        args = [
            "--no-anonymous",
            "--jwt-secret-file", str(self.secret_file),
            "--jwt-public-key-file", str(self.public_key_file),
            "--publish-keys-dir", str(self.publish_keys_dir),
        ]  # fmt: skip
        return [*args, "--jwt-audience", audience] if audience else args

    def hs256(self, ttl: float = 600, **claims: Any) -> str:
        """A valid HS256 token (``aud`` set) with ``claims``; ``exp`` from ``ttl`` unless given."""
        return jwt.encode(self._claims(ttl, claims), self.secret, algorithm="HS256")

    def rs256(self, ttl: float = 600, **claims: Any) -> str:
        return jwt.encode(self._claims(ttl, claims), self.rsa_key, algorithm="RS256")

    def _claims(self, ttl: float, claims: dict[str, Any]) -> dict[str, Any]:
        now = int(time.time())
        return {"aud": AUDIENCE, "iat": now, "exp": now + int(ttl), **claims}

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def hand_signed(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A JWS built by hand: HS256 over ``secret``, or no signature at all when ``secret`` is None."""
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    if secret is None:
        return signing_input + "."
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


def hostile_tokens(keys: Keys, channel: str) -> dict[str, str]:
    """Every token an attacker might try on ``channel``, by name; each must be refused."""
    now = int(time.time())
    grants = {"sub": "mallory", "channels": [channel], "publish": [channel], "aud": AUDIENCE}
    other_secret = secrets.token_urlsafe(48).encode()
    return {
        "forged signature": jwt.encode({**grants, "exp": now + 600}, other_secret, algorithm="HS256"),
        "alg none": hand_signed({"alg": "none", "typ": "JWT"}, {**grants, "exp": now + 600}, None),
        "HS/RS confusion": hand_signed(
            {"alg": "HS256", "typ": "JWT"}, {**grants, "exp": now + 600}, keys.public_key_file.read_bytes()
        ),
        "expired": keys.hs256(ttl=-120, **{k: v for k, v in grants.items() if k != "aud"}),
        "not yet valid": keys.hs256(nbf=now + 600, **{k: v for k, v in grants.items() if k != "aud"}),
        "wrong audience": jwt.encode({**grants, "aud": "someone-else", "exp": now + 600}, keys.secret, "HS256"),
    }


def ec_and_ed_keys() -> dict[str, tuple[Any, bytes]]:
    """Private keys with their PEM public keys, for the asymmetric algorithms besides RS256."""
    p256 = ec.generate_private_key(ec.SECP256R1())
    ed = ed25519.Ed25519PrivateKey.generate()
    return {"ES256": (p256, _pem(p256)), "EdDSA": (ed, _pem(ed))}
