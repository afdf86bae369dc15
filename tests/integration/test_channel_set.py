"""``fleetcast channel set`` against a real redis-server: it changes the fields given and keeps the rest."""

from __future__ import annotations

import json
import subprocess

from tests.support.processes import PYTHON, RedisServer, declare


def stored(redis: RedisServer, family: str) -> dict[str, object]:
    listed = subprocess.run(
        [PYTHON, "-m", "fleetcast", "channel", "list", "--json", "--redis-url", redis.url],
        check=True, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    specs = {row["family"]: row["spec"] for row in map(json.loads, listed.stdout.splitlines())}
    return specs[family]  # type: ignore[no-any-return]


def test_set_changes_only_the_fields_given(redis: RedisServer) -> None:
    """A second `set` with one flag leaves every other field as the first `set` stored it, fromClients included."""
    declare(
        redis, "chat", "--publish-from-clients", "--anonymous", "--user-scoped", "--slow-consumer", "conflate",
        "--conflate-by", "k", "--transports", "ws", "--max-age", "1h", "--publish-per-second", "5",
        "--idle-ttl", "2h", "--buffer", "50", "--max-message-bytes", "2048",
    )  # fmt: skip
    first = stored(redis, "chat")
    declare(redis, "chat", "--max-events", "10")
    second = stored(redis, "chat")
    assert second == {**first, "history": {**first["history"], "maxEvents": 10}}  # type: ignore[dict-item]
    declare(redis, "chat", "--no-publish-from-clients")
    assert stored(redis, "chat")["publish"] == {"fromClients": False, "anonymous": False}
    assert stored(redis, "chat")["subscribe"] == {"anonymous": True, "userScoped": True}


def test_presence_flags_are_stored_and_listed(redis: RedisServer) -> None:
    """`--presence --join-leave` land in the spec's presence section and in the table's PRESENCE column;
    `--join-leave` without presence is refused with the reason."""
    declare(redis, "room", "--presence", "--join-leave")
    assert stored(redis, "room")["presence"] == {"enabled": True, "joinLeave": True}
    listed = subprocess.run(
        [PYTHON, "-m", "fleetcast", "channel", "list", "--redis-url", redis.url],
        check=True, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    header, row = listed.stdout.splitlines()[:2]
    assert header.split()[-1] == "PRESENCE"
    assert row.split()[-1] == "join-leave"
    refused = subprocess.run(
        [PYTHON, "-m", "fleetcast", "channel", "set", "lonely", "--join-leave", "--redis-url", redis.url],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "joinLeave needs presence.enabled" in refused.stderr
