"""Where credentials come from: key files, a JWKS URL, a directory of API keys; read again when they change.

On Kubernetes the files are Secrets mounted as volumes: the kubelet replaces their content when the Secret is
edited, so rotating a key is editing a Secret, with no restart. :class:`FileWatch` notices a change by the files'
names, sizes and modification times (cheap ``stat`` calls, made off the event loop by the caller).

A JWKS document (``--jwks-url``) is fetched at start, refreshed on a schedule, and again (at most every
:data:`JWKS_MIN_REFRESH_SECONDS`) when a token names a ``kid`` it does not hold, which is how a key rotated
by the identity provider is picked up without a restart. A failed fetch keeps the keys already loaded.

Nothing here logs a key or a token.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import HMACAlgorithm

from fleetcast.auth.tokens import HMAC_ALGORITHMS, MIN_HMAC_SECRET_BYTES, PublicKey

JWKS_MIN_REFRESH_SECONDS = 10.0
MAX_KEY_FILE_BYTES = 64 * 1024
MAX_JWKS_BYTES = 1024 * 1024


class KeyFileError(ValueError):
    """A key file or JWKS document that cannot be used; the message names the file, never its content."""


def read_secret(path: str) -> bytes:
    """An HMAC secret from a file (surrounding whitespace removed: ``echo secret > file`` adds a newline)."""
    secret = _read(path).strip()
    if len(secret) < MIN_HMAC_SECRET_BYTES:
        raise KeyFileError(f"{path}: an HMAC secret must be at least {MIN_HMAC_SECRET_BYTES} bytes")
    try:
        HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)
    except jwt.InvalidKeyError:
        raise KeyFileError(f"{path}: holds a public key or certificate, not a shared secret") from None
    return secret


def read_public_key(path: str) -> PublicKey:
    """A PEM public key (RSA, EC P-256/384/521, Ed25519 or Ed448)."""
    try:
        key = load_pem_public_key(_read(path))
    except ValueError:
        raise KeyFileError(f"{path}: not a PEM public key") from None
    if not isinstance(key, PublicKey):
        raise KeyFileError(f"{path}: {type(key).__name__} keys cannot verify tokens")
    return key


def parse_jwks(document: bytes) -> dict[str, tuple[Any, str]]:
    """``kid`` -> (key, algorithm) for every signing key of a JWKS document that names its ``kid``."""
    if len(document) > MAX_JWKS_BYTES:
        raise KeyFileError(f"JWKS document is larger than {MAX_JWKS_BYTES} bytes")
    try:
        key_set = jwt.PyJWKSet.from_json(document.decode())
    except (ValueError, jwt.PyJWKError, jwt.PyJWKSetError) as exc:
        raise KeyFileError(f"JWKS document is not usable: {type(exc).__name__}") from None
    keys: dict[str, tuple[Any, str]] = {}
    for jwk in key_set.keys:
        if jwk.key_id and jwk.public_key_use in (None, "sig") and jwk.algorithm_name not in HMAC_ALGORITHMS:
            keys[jwk.key_id] = (jwk.key, jwk.algorithm_name)
    return keys


def read_publish_keys(directory: str | None, single: str | None) -> dict[str, bytes]:
    """Named API keys: every regular file of ``directory`` (a mounted Secret: file name = key name), and
    ``single`` (``--publish-key``) under the name ``default``. Empty files are ignored."""
    keys: dict[str, bytes] = {}
    if single:
        keys["default"] = single.encode()
    if directory:
        for entry in sorted(_key_files(directory)):
            value = _read(str(entry)).strip()
            if value:
                keys[entry.name] = value
    return keys


@dataclass
class FileWatch:
    """Remembers what a set of files looked like, to tell when any of them changed."""

    paths: tuple[str, ...]
    directories: tuple[str, ...] = ()
    _seen: tuple[tuple[str, int, int], ...] | None = field(default=None, init=False)

    def changed(self) -> bool:
        """True on the first call and whenever a file appeared, vanished, or changed size or time."""
        files = [Path(p) for p in self.paths]
        for directory in self.directories:
            files.extend(_key_files(directory))
        now = tuple(sorted(_stamp(f) for f in files))
        if now == self._seen:
            return False
        self._seen = now
        return True


def _stamp(path: Path) -> tuple[str, int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (str(path), -1, -1)
    return (str(path), stat.st_size, stat.st_mtime_ns)


def _key_files(directory: str) -> list[Path]:
    """Regular files (symlinks followed) of a directory, skipping the kubelet's ``..data`` bookkeeping."""
    try:
        entries = list(Path(directory).iterdir())
    except OSError as exc:
        raise KeyFileError(f"{directory}: cannot list API keys ({exc.strerror})") from None
    return [e for e in entries if not e.name.startswith(".") and e.is_file()]


def _read(path: str) -> bytes:
    try:
        size = os.stat(path).st_size
        if size > MAX_KEY_FILE_BYTES:
            raise KeyFileError(f"{path}: larger than {MAX_KEY_FILE_BYTES} bytes; not a key file")
        with open(path, "rb") as file:
            return file.read(MAX_KEY_FILE_BYTES)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read ({exc.strerror})") from None
