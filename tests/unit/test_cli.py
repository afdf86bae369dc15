"""The command line: every `serve` flag also reads FLEETCAST_<NAME>, and a bad value is named, not a traceback."""

from __future__ import annotations

import argparse

import pytest

from fleetcast import __version__
from fleetcast.__main__ import _add_serve, main, settings_from
from fleetcast.contract.redis_url import seed_nodes


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    _add_serve(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_flags_default_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """FLEETCAST_PORT, FLEETCAST_DRAIN_RATE and FLEETCAST_STRICT_CHANNELS set the defaults; flags still win."""
    monkeypatch.setenv("FLEETCAST_PORT", "9001")
    monkeypatch.setenv("FLEETCAST_DRAIN_RATE", "12.5")
    monkeypatch.setenv("FLEETCAST_STRICT_CHANNELS", "true")
    settings = settings_from(parse())
    assert (settings.server.port, settings.drain.rate, settings.broker.strict_channels) == (9001, 12.5, True)
    assert settings_from(parse("--port", "9002")).server.port == 9002


def test_malformed_environment_value_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A value that is not a number stops the command with the variable's name."""
    monkeypatch.setenv("FLEETCAST_MAX_CONNECTIONS", "lots")
    with pytest.raises(SystemExit):
        parse()
    assert "FLEETCAST_MAX_CONNECTIONS='lots' is not a valid int" in capsys.readouterr().err


def test_redis_mode_and_wait_replicas(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """--redis-mode takes standalone or cluster (default standalone), --redis-wait-replicas 0 or more; a bad value
    is named."""
    settings = settings_from(parse())
    assert (settings.broker.redis_mode, settings.broker.redis_wait_replicas) == ("standalone", 0)
    monkeypatch.setenv("FLEETCAST_REDIS_MODE", "Cluster")
    settings = settings_from(parse("--redis-wait-replicas", "1"))
    assert (settings.broker.redis_mode, settings.broker.redis_wait_replicas) == ("cluster", 1)
    monkeypatch.setenv("FLEETCAST_REDIS_MODE", "sentinel")
    with pytest.raises(SystemExit):
        parse()
    assert "FLEETCAST_REDIS_MODE='sentinel' is not a valid redis_mode" in capsys.readouterr().err
    monkeypatch.delenv("FLEETCAST_REDIS_MODE")
    with pytest.raises(SystemExit):
        parse("--redis-wait-replicas", "-1")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--redis-mode", "cluster"], "needs --redis-url"),
        (["--redis-mode", "cluster", "--redis-url", "redis://a:1,b"], "seed 'b' of the Redis URL is not host:port"),
        (["--redis-mode", "cluster", "--redis-url", "redis://a:1/3"], "only database 0"),
        (["--redis-mode", "cluster", "--redis-url", "http://a:1"], "starts with redis://"),
    ],
)
def test_a_bad_cluster_url_stops_the_pod_with_a_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """serve refuses a cluster mode without a usable seed list before it starts anything."""
    with pytest.raises(SystemExit):
        main(["serve", "--admin-port", "0", *argv])
    assert message in capsys.readouterr().err


def test_seed_nodes_keep_credentials_and_options() -> None:
    """The seed list splits into a one-node URL (credentials, TLS, options shared by all) and every host:port."""
    first, seeds = seed_nodes("rediss://user:p%40ss@10.0.0.1:7000, r2.internal:7001,[fd00::3]:7002?ssl_cert_reqs=none")
    assert first == "rediss://user:p%40ss@10.0.0.1:7000?ssl_cert_reqs=none"
    assert seeds == [("10.0.0.1", 7000), ("r2.internal", 7001), ("fd00::3", 7002)]
    assert seed_nodes("redis://[fd00::3]:7002")[0] == "redis://[fd00::3]:7002"


def test_admin_port_takes_off_and_refuses_a_bad_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """FLEETCAST_ADMIN_PORT=off turns the admin listener off (port 0); an out-of-range port is named."""
    assert settings_from(parse()).admin.port == 9090
    monkeypatch.setenv("FLEETCAST_ADMIN_PORT", "off")
    assert settings_from(parse()).admin.port == 0
    assert settings_from(parse("--admin-port", "9091")).admin.port == 9091
    monkeypatch.setenv("FLEETCAST_ADMIN_PORT", "70000")
    with pytest.raises(SystemExit):
        parse()
    assert "FLEETCAST_ADMIN_PORT='70000' is not a valid port" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`fleetcast --version` prints the package's version and exits 0."""
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"fleetcast {__version__}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["publish", "Not A Channel", "{}"], "is not a channel name"),
        (["publish", "chat:a", "{text: hi}"], "the event's data is not JSON"),
        (["publish", "chat:a", "{}", "--key", "k", "--token", "t"], "not both"),
        (["tail", "chat:a", "--since", "yesterday"], "yesterday"),
    ],
)
def test_bad_input_is_refused_before_any_request(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Malformed channel names, data and ids stop publish and tail with status 2 and a sentence, no traceback."""
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--url", "http://127.0.0.1:9"])  # nothing may be sent: port 9 would refuse anyway
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
