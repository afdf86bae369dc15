"""The rebalance planner, without I/O: when a round starts, how many clients each pod sheds, at what pace, and when
a round is over. The operator running it against kmock and Redis is ``tests/operator/test_rebalance.py``."""

from __future__ import annotations

import random
import time

import pytest

from fleetcast.contract.heartbeat import Heartbeat
from fleetcast_operator.gateway.spec import RebalanceSpec
from fleetcast_operator.rebalance.planner import Decision, bounds, plan, pod_rate, progress

SPEC = RebalanceSpec()
NOW = 1_000_000.0


def beat(pod: str, connections: int, **extra: object) -> Heartbeat:
    return Heartbeat(pod=pod, gateway="edge", timestamp=time.time(), connections={"ws": connections}, **extra)  # type: ignore[arg-type]


def decide(
    *beats: Heartbeat,
    spec: RebalanceSpec = SPEC,
    replicas: int | None = None,
    scale_down: bool = False,
    scale_down_pending: bool = False,
    round_in_progress: bool = False,
    last_finished: float | None = None,
    now: float = NOW,
) -> Decision:
    return plan(
        spec,
        beats,
        replicas=len(beats) if replicas is None else replicas,
        scale_down=scale_down,
        scale_down_pending=scale_down_pending,
        round_in_progress=round_in_progress,
        last_finished=last_finished,
        now=now,
    )


def test_after_a_scale_up_the_hot_pod_sheds_what_the_new_pods_need() -> None:
    """300 on one pod, two new empty pods: the mean is 100. A client sent away lands on any of the three, so the
    hot pod sends 300 away to keep 100 (a third come back); at the budget, with the pods' burst left out."""
    decision = decide(beat("a", 300), beat("b", 0), beat("c", 0))
    assert decision.reason == "Rebalancing"
    assert [(s.pod, s.count) for s in decision.sheds] == [("a", 300)]
    (shed,) = decision.sheds
    assert shed.connections_per_second + max(1, shed.connections_per_second / 20) <= SPEC.max_reconnects_per_second
    assert decision.seconds == pytest.approx(300 / shed.connections_per_second)
    assert "a 300 -> sheds 300" in decision.message


def test_expected_result_is_the_mean_when_clients_land_evenly() -> None:
    """Any spread: after every pod above the mean sheds its count and the moved clients land evenly on all pods,
    each pod above the mean holds the mean (the return factor is not capped here: 2 hot of 5)."""
    loads = {"a": 400, "b": 260, "c": 100, "d": 80, "e": 60}
    decision = decide(*(beat(p, n) for p, n in loads.items()))
    moved = sum(s.count for s in decision.sheds)
    mean = sum(loads.values()) / 5
    for shed in decision.sheds:
        assert loads[shed.pod] - shed.count + moved / 5 == pytest.approx(mean, abs=1)
    assert {s.pod for s in decision.sheds} == {"a", "b"}
    shares = sum(s.connections_per_second for s in decision.sheds)
    assert shares <= SPEC.max_reconnects_per_second


def test_the_return_factor_is_capped_at_twice_the_excess() -> None:
    """Two hot pods of three would need three times their excess moved; a round moves at most twice it."""
    decision = decide(beat("a", 130), beat("b", 130), beat("c", 10))  # mean 90: 80 too many on a and b
    assert [(s.pod, s.count) for s in decision.sheds] == [("a", 80), ("b", 80)]


def test_steady_three_pod_spread_within_tolerance_never_sheds() -> None:
    """A steady fleet whose pods stay within 20 % of the mean is left alone, step after step, for two minutes
    of steps (every 5 s), whatever the noise inside the tolerance."""
    rng = random.Random(7)
    for step in range(24):
        loads = [rng.randint(85, 115) for _ in range(3)]
        decision = decide(*(beat(f"p{i}", n) for i, n in enumerate(loads)), now=NOW + 5 * step)
        low, high = bounds(sum(loads) / 3, SPEC.tolerance)
        if all(low <= n <= high for n in loads):
            assert decision.reason == "WithinTolerance", (loads, decision)
            assert not decision.shed


def test_a_few_clients_are_not_chased_around() -> None:
    """2 clients on 3 pods can never be within 20 % of 0.67 each: whole numbers decide, so nothing moves."""
    decision = decide(beat("a", 1), beat("b", 1), beat("c", 0))
    assert decision.reason == "WithinTolerance"
    assert bounds(2 / 3, 0.2) == (0, 1)


@pytest.mark.parametrize(
    ("kwargs", "beats", "reason"),
    [
        ({"spec": RebalanceSpec(enabled=False)}, None, "Disabled"),
        ({"scale_down": True}, None, "ScaleDownInProgress"),
        ({"scale_down_pending": True}, None, "ScaleDownPending"),
        ({}, [beat("a", 300), beat("b", 0), beat("c", 0, draining=True, remaining=0)], "PodDraining"),
        ({"replicas": 3}, [beat("a", 300), beat("b", 0)], "NotSettled"),
        ({}, [beat("a", 300), beat("b", 0), beat("c", 0, ready=False)], "NotSettled"),
        ({}, [beat("a", 300, shedding=True, shed_remaining=5), beat("b", 0), beat("c", 0)], "PodShedding"),
        ({"round_in_progress": True}, None, "RoundInProgress"),
        ({"last_finished": NOW - 10}, None, "CoolingDown"),
    ],
)
def test_never_during_a_drain_a_start_a_round_or_the_cool_down(
    kwargs: dict[str, object], beats: list[Heartbeat] | None, reason: str
) -> None:
    """A spread far outside tolerance, but a scale-down drains or waits out its window, a pod drains, a new pod
    is not ready yet, a pod still sheds, a round runs, or the last one ended 10 s ago (cool-down 15 s): no shed,
    and the reason says why."""
    decision = decide(*(beats or [beat("a", 300), beat("b", 0), beat("c", 0)]), **kwargs)  # type: ignore[arg-type]
    assert decision.reason == reason
    assert not decision.shed


def test_the_cool_down_ends() -> None:
    decision = decide(beat("a", 300), beat("b", 0), beat("c", 0), last_finished=NOW - 16)
    assert decision.reason == "Rebalancing"


def test_a_round_moves_at_most_ten_seconds_of_the_budget() -> None:
    spec = RebalanceSpec(max_reconnects_per_second=10)
    decision = decide(beat("a", 3000), beat("b", 0), beat("c", 0), spec=spec)
    assert sum(s.count for s in decision.sheds) == 100


def test_pod_rate_leaves_room_for_the_bucket() -> None:
    for share in (2.0, 5.0, 19.0, 20.0, 100.0, 1000.0):
        rate = pod_rate(share)
        assert rate > 0
        assert rate + max(1.0, rate / 20) <= share + 1e-9


def test_progress_waits_for_every_pod_to_report_the_round_done() -> None:
    heartbeats = {
        "a": beat("a", 120, shed_round="r1"),  # took it and is done
        "b": beat("b", 200, shedding=True, shed_remaining=40, shed_round="r1"),
        "c": beat("c", 90, shed_round="r0"),  # has not taken it yet
        "d": beat("d", 10, draining=True),  # drains: its shed was cut short
    }
    state = progress("r1", ["a", "b", "c", "d", "gone"], heartbeats, deadline=NOW + 5, now=NOW)
    assert (state.done, state.finished, state.waiting) == (False, ("a", "d", "gone"), ("b", "c"))
    late = progress("r1", ["a", "b", "c"], heartbeats, deadline=NOW + 5, now=NOW + 5)
    assert (late.done, late.timed_out) == (True, True)
    heartbeats["b"] = beat("b", 120, shed_round="r1")
    heartbeats["c"] = beat("c", 90, shed_round="r1")
    assert progress("r1", ["a", "b", "c"], heartbeats, deadline=NOW + 5, now=NOW).done
