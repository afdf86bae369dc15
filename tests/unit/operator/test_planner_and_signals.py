"""Drain planning, drain completion, heartbeat parsing and channel status arithmetic."""

from __future__ import annotations

import json

from fleetcast.contract.heartbeat import Heartbeat
from fleetcast_operator.autoscaler.signals import read_fleet
from fleetcast_operator.channels.status import Sample, events_per_second, latest_of
from fleetcast_operator.drain.planner import pick_pods, progress

NOW = 10_000.0


def hb(pod: str, conns: int, *, draining: bool = False, at: float = NOW, remaining: int = 0) -> Heartbeat:
    return Heartbeat(
        pod=pod, gateway="edge", timestamp=at, connections={"ws": conns}, draining=draining, remaining=remaining
    )


def test_pick_emptiest_non_draining_pods_by_name_on_ties() -> None:
    """Fewest connections first; draining pods are never picked; equal counts go by name."""
    fleet = [hb("c", 10), hb("a", 10), hb("b", 500), hb("d", 0, draining=True)]
    assert pick_pods(fleet, 2) == ["a", "c"]
    assert pick_pods(fleet, 10) == ["a", "c", "b"]
    assert pick_pods(fleet, 0) == []


def test_drain_done_when_all_empty_or_gone() -> None:
    """A pod is done when it reports draining with nothing left, or has left the registry."""
    beats = {"a": hb("a", 0, draining=True), "b": hb("b", 3, draining=True, remaining=3)}
    state = progress(["a", "b", "c"], beats, deadline=NOW + 10, now=NOW)
    assert not state.done
    assert state.waiting == ("b",)
    assert set(state.empty) == {"a", "c"}
    beats["b"] = hb("b", 0, draining=True)
    assert progress(["a", "b"], beats, deadline=NOW + 10, now=NOW).done


def test_drain_done_at_the_deadline() -> None:
    """A pod that never empties does not hold the scale-down past the deadline."""
    beats = {"a": hb("a", 7, draining=True, remaining=7)}
    state = progress(["a"], beats, deadline=NOW, now=NOW)
    assert state.done
    assert state.timed_out


def test_not_yet_draining_pod_is_not_empty() -> None:
    """Zero connections before the drain command arrived is not 'drained'."""
    assert not progress(["a"], {"a": hb("a", 0)}, deadline=NOW + 5, now=NOW).done


def test_read_fleet_sorts_fresh_stale_and_unreadable() -> None:
    """Stale records (older than the contract's bound), other gateways' and garbage are set aside."""
    raw = {
        "a": hb("a", 5).to_json(),
        "b": hb("b", 7, at=NOW - 60).to_json(),
        "c": "not json",
        "d": json.dumps({"schema": 99}),
        "e": Heartbeat(pod="e", gateway="other", timestamp=NOW).to_json(),
        "f": hb("f", 9, draining=True).to_json(),
    }
    view = read_fleet(raw, gateway="edge", now=NOW)
    assert [h.pod for h in view.fresh] == ["a", "f"]
    assert view.stale == ("b",)
    assert set(view.unreadable) == {"c", "d", "e"}
    assert view.connections == 14
    assert view.load(current_replicas=3).reporting == 1
    assert view.load(current_replicas=3).missing == 2
    assert [line["name"] for line in view.summary()] == ["f", "a", "b"]


def test_events_per_second_from_entries_added() -> None:
    """Rate from the counter's growth; nothing on the first sample or after a reset."""
    assert events_per_second(None, Sample(10.0, 100)) is None
    assert events_per_second(Sample(10.0, 100), Sample(12.0, 150)) == 25.0
    assert events_per_second(Sample(10.0, 100), Sample(12.0, 5)) is None


def test_latest_id_compares_numerically() -> None:
    """'9-0' is older than '10-0' although it sorts after it as text; '0-0' means an empty stream."""
    assert latest_of(["9-0", "10-0", "0-0"]) == "10-0"
    assert latest_of(["0-0"]) is None
