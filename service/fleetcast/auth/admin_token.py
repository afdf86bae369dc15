"""The admin token: the one credential of the admin listener (``/internal/*``).

Either a file the operator of the pod provides (``--admin-token-file``, a mounted Secret), read once at start-up,
or, when none is given, a random token the pod makes at start-up and writes to a file only its own user can
read, at a path derived from the admin port, in the temporary directory (a pod's ``/tmp`` emptyDir). The
``preStop`` hook (``fleetcast drain``) runs in the same container, so it finds the file; a sidecar that shares
the pod's network but not its filesystem does not, which is the point: coming over loopback grants nothing.

Standard library only: ``fleetcast drain`` imports it in the few seconds a ``preStop`` hook has.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path


class AdminTokenError(ValueError):
    """The admin token file is missing, unreadable or empty; the message names the file."""


def generated_path(admin_port: int) -> Path:
    """Where a pod whose admin listener is on ``admin_port`` writes the token it generates."""
    return Path(tempfile.gettempdir()) / f"fleetcast-admin-{admin_port}.token"


def read(path: str | os.PathLike[str]) -> str:
    """The token in ``path`` (surrounding whitespace stripped, so a trailing newline does not matter)."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise AdminTokenError(f"cannot read the admin token file {path}: {exc}") from exc
    if not token:
        raise AdminTokenError(f"the admin token file {path} is empty")
    return token


def generate(path: Path) -> str:
    """Make a random token and write it to ``path`` with mode 0600, replacing a file left by an earlier run.

    The file is created anew (``O_EXCL``, never through a symbolic link), so a file someone else planted there
    is never written to or trusted; if it cannot be removed, start-up fails with its name.
    """
    token = secrets.token_urlsafe(32)
    try:
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as exc:
        raise AdminTokenError(f"cannot write the admin token file {path}: {exc}") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(token + "\n")
    return token
