"""The admin token file: generated private and fresh, read strictly (issue 13)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fleetcast.auth.admin_token import AdminTokenError, generate, read


def test_generated_token_is_private_fresh_and_never_written_through_a_link(tmp_path: Path) -> None:
    """The file is mode 0600 and holds a new random token each start; a symbolic link planted at its path is
    replaced, and the file it pointed at is left untouched."""
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    path = tmp_path / "fleetcast-admin-9090.token"
    path.symlink_to(victim)
    first = generate(path)
    assert not path.is_symlink()
    assert victim.read_text() == "keep me"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read(path) == first
    assert len(first) >= 40
    assert generate(path) != first


def test_reading_a_token_file_strips_and_refuses_missing_or_empty(tmp_path: Path) -> None:
    """A trailing newline does not count; a missing or empty file is an error that names the file."""
    given = tmp_path / "token"
    given.write_text("  s3cret\n")
    assert read(given) == "s3cret"
    given.write_text("\n")
    with pytest.raises(AdminTokenError, match=str(given)):
        read(given)
    with pytest.raises(AdminTokenError, match="missing"):
        read(tmp_path / "missing")
