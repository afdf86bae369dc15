"""The pod/operator contract: policies and heartbeats round-trip, bad specs are named."""

from __future__ import annotations

import pytest

from fleetcast.contract.commands import DrainCommand, ShedCommand, parse
from fleetcast.contract.heartbeat import Heartbeat
from fleetcast.contract.policy import ChannelPolicy, parse_duration


@pytest.mark.parametrize(
    "policy",
    [
        ChannelPolicy(),
        ChannelPolicy(history_max_events=None, history_max_age=3600.0),
        ChannelPolicy(transports=("sse",), slow_consumer="conflate", conflate_by="team", publish_per_second=2.5),
        ChannelPolicy(max_subscribers_per_pod=3),
    ],
)
def test_policy_round_trips_through_its_stored_json(policy: ChannelPolicy) -> None:
    """What the operator writes is what the pods read, "no count limit" included."""
    assert ChannelPolicy.from_json(policy.to_json()) == policy


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"transports": ["carrier-pigeon"]}, "transports"),
        ({"history": {"maxEvents": -1}}, "history.maxEvents"),
        ({"history": {"maxAge": "soon"}}, "duration"),
        ({"limits": {"maxMessageBytes": 10**9}}, "limits.maxMessageBytes"),
        ({"slowConsumer": {"policy": "ignore"}}, "slowConsumer.policy"),
        ({"publish": {"fromClients": "yes"}}, "fromClients"),
        ({"limits": {"maxSubscribersPerPod": 0}}, "limits.maxSubscribersPerPod"),
        ({"limits": {"maxSubscribersPerPod": True}}, "limits.maxSubscribersPerPod"),
    ],
)
def test_bad_specs_name_the_field(spec: dict[str, object], field: str) -> None:
    """A bad Channel spec is refused with a message that names the field."""
    with pytest.raises(ValueError, match=field):
        ChannelPolicy.from_spec(spec)


def test_empty_spec_is_the_default_policy() -> None:
    """`spec: {}` is a valid Channel."""
    assert ChannelPolicy.from_spec({}) == ChannelPolicy()


def test_durations() -> None:
    """Channel maxAge durations read as Kubernetes users write them."""
    assert parse_duration("1h30m") == 5400
    assert parse_duration("7d") == 7 * 86400


def test_heartbeat_and_command_round_trip() -> None:
    """Heartbeats and drain commands survive their wire forms; junk is refused."""
    beat = Heartbeat(pod="p", gateway="g", timestamp=1.5, connections={"ws": 2}, draining=True, remaining=2)
    assert Heartbeat.from_json(beat.to_json()) == beat
    with pytest.raises(ValueError, match="heartbeat"):
        Heartbeat.from_json('{"schema": 99}')
    command = DrainCommand(pod="p", connections_per_second=50.0, exit=True)
    assert DrainCommand.from_fields(command.to_fields()) == command
    shed = ShedCommand(pod="p", count=30, round="r1", connections_per_second=25.0)
    assert parse(shed.to_fields()) == shed
    assert parse(ShedCommand(pod="p", count=3).to_fields()) == ShedCommand(pod="p", count=3)
    assert parse({"cmd": "rebalance-v2", "pod": "p"}) is None  # newer than this pod: ignored
    for junk in ({"cmd": "shed", "pod": "p"}, {"cmd": "shed", "pod": "p", "count": "-1"},
                 {"cmd": "shed", "pod": "p", "count": "1", "rate": "nan"}):  # fmt: skip
        with pytest.raises(ValueError, match="a shed needs"):
            parse(junk)
    shedding = Heartbeat(pod="p", gateway="g", timestamp=2.0, shedding=True, shed_remaining=4, shed_round="r1")
    assert Heartbeat.from_json(shedding.to_json()) == shedding
