"""The settings root: one table of flags covers every field of every section, each default comes from its
section, and the knobs new to the command line reach the parts they configure."""

from __future__ import annotations

import argparse
import dataclasses
import inspect

import pytest

from fleetcast.broker.coalescing import CoalescingBroker
from fleetcast.broker.redis_streams import RedisStreamsBroker
from fleetcast.hub.hub import Hub
from fleetcast.settings import OPTIONS, Settings, add_options, settings_from


def parse(*argv: str) -> Settings:
    parser = argparse.ArgumentParser()
    add_options(parser)
    return settings_from(parser.parse_args(list(argv)))


def test_every_field_of_every_section_has_exactly_one_flag() -> None:
    """A knob added to a section without a flag (or given two) fails here, not in production."""
    fields = {
        (section.name, f.name)
        for section in dataclasses.fields(Settings)
        for f in dataclasses.fields(section.default_factory())  # type: ignore[misc]
    }
    named = [(o.section, o.field) for o in OPTIONS]
    assert sorted(named) == sorted(fields)
    assert len({o.flag for o in OPTIONS}) == len(OPTIONS)


def test_defaults_are_the_sections_defaults() -> None:
    """With no flag and no variable, the parsed settings equal the dataclasses' own defaults."""
    parsed = parse()
    assert dataclasses.replace(parsed, server=Settings().server) == Settings()
    assert parsed.server.port == Settings().server.port


def test_new_knobs_are_reachable_by_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replay page, coalescer limit, hub grace and Redis timeouts: a flag each, and FLEETCAST_<FLAG>."""
    monkeypatch.setenv("FLEETCAST_REPLAY_PAGE", "50")
    monkeypatch.setenv("FLEETCAST_REDIS_TIMEOUT", "0.5")
    settings = parse("--read-concurrency", "4", "--unwatch-grace-seconds", "1.5", "--replay-buffer", "99")
    assert settings.session.replay_page == 50
    assert settings.session.replay_pending_max == 99
    assert settings.broker.redis_timeout == 0.5
    assert settings.broker.read_concurrency == 4
    assert settings.broker.unwatch_grace_seconds == 1.5


def test_publish_burst_follows_the_rate_unless_given() -> None:
    """Unset, the per-connection publish burst is twice the rate (at least 1), as before the settings root."""
    assert parse("--ws-publish-rate", "5").session.publish_burst == 10.0
    assert parse("--ws-publish-rate", "0.1").session.publish_burst == 1.0
    assert parse("--ws-publish-rate", "5", "--ws-publish-burst", "7").session.publish_burst == 7.0
    assert parse().session.publish_burst == Settings().session.publish_burst


def test_optional_text_and_never_values() -> None:
    """An empty optional text means unset; an idle TTL of 0 means never; origins are a comma list."""
    settings = parse("--admin-token-file", "", "--idle-channel-ttl", "0", "--allowed-origins", "https://a, https://b")
    assert settings.admin.token_file is None
    assert settings.broker.idle_channel_ttl is None
    assert settings.auth.allowed_origins == ("https://a", "https://b")


@pytest.mark.parametrize(
    ("target", "parameter", "section", "field"),
    [
        (Hub.__init__, "unwatch_grace_seconds", "broker", "unwatch_grace_seconds"),
        (CoalescingBroker.__init__, "max_concurrent_reads", "broker", "read_concurrency"),
        (CoalescingBroker.__init__, "wait_timeout", "broker", "read_wait_timeout"),
        (RedisStreamsBroker.__init__, "timeout", "broker", "redis_timeout"),
        (RedisStreamsBroker.__init__, "max_connections", "broker", "redis_max_connections"),
        (RedisStreamsBroker.__init__, "read_count", "broker", "redis_read_count"),
    ],
)
def test_constructor_defaults_for_tests_agree_with_the_settings(
    target: object, parameter: str, section: str, field: str
) -> None:
    """Constructors keep a keyword default for tests and tools; the pod passes the setting. They must agree."""
    default = inspect.signature(target).parameters[parameter].default  # type: ignore[arg-type]
    assert default == getattr(getattr(Settings(), section), field)
