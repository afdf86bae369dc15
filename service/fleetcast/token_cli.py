"""``fleetcast token``: mint a development token from the gateway's shared secret.

``fleetcast token --sub u1 --channels 'chat:*' --publish chat:room-1 --ttl 1h`` prints an HS256 JWT signed with
the secret in ``--jwt-secret-file`` (or ``FLEETCAST_JWT_SECRET_FILE``), the same file the gateway verifies with.
For development and tests: in production an application's backend mints tokens for its signed-in users with
any JWT library, from the same secret (or its identity provider signs them, verified by public key or JWKS).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

import jwt

from fleetcast.auth.keys import KeyFileError, read_secret
from fleetcast.auth.principal import BadClaims, Grants
from fleetcast.contract.policy import parse_duration


def add_token_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = subparsers.add_parser("token", help="mint a development token (HS256) from the gateway's secret file")
    token.add_argument("--sub", help="the user id (needed for user-scoped channels)")
    token.add_argument("--channels", default="", help="comma-separated channels it may read: chat:room-1, chat:*, *")
    token.add_argument("--publish", default="", help="comma-separated channels it may publish to (same patterns)")
    token.add_argument("--ttl", default="1h", help="lifetime: 90s, 15m, 1h, 7d (%(default)s)")
    token.add_argument("--audience", default=os.environ.get("FLEETCAST_JWT_AUDIENCE"), help="the 'aud' claim")
    token.add_argument("--issuer", default=os.environ.get("FLEETCAST_JWT_ISSUER"), help="the 'iss' claim")
    token.add_argument(
        "--jwt-secret-file",
        default=os.environ.get("FLEETCAST_JWT_SECRET_FILE"),
        required=os.environ.get("FLEETCAST_JWT_SECRET_FILE") is None,
        help="the gateway's secret file (env FLEETCAST_JWT_SECRET_FILE)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        print(mint(args))
    except (KeyFileError, BadClaims, ValueError) as exc:
        print(f"fleetcast token: {exc}", file=sys.stderr)
        return 2
    return 0


def mint(args: argparse.Namespace) -> str:
    channels = _patterns(args.channels)
    publish = _patterns(args.publish)
    Grants.of("channels", channels)  # refuse what the gateway would refuse, here and now
    Grants.of("publish", publish)
    now = int(time.time())
    claims: dict[str, object] = {"iat": now, "exp": now + int(parse_duration(args.ttl)), "jti": uuid.uuid4().hex}
    if args.sub:
        claims["sub"] = args.sub
    if channels:
        claims["channels"] = channels
    if publish:
        claims["publish"] = publish
    if args.audience:
        claims["aud"] = args.audience
    if args.issuer:
        claims["iss"] = args.issuer
    return jwt.encode(claims, read_secret(args.jwt_secret_file), algorithm="HS256")


def _patterns(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]
