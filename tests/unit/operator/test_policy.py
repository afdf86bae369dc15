"""The autoscaler policy with a fake clock: HPA semantics, case by case."""

from __future__ import annotations

import pytest

from fleetcast_operator.autoscaler.policy import Load, Recommendation, decide, recommend
from fleetcast_operator.gateway.spec import ScalingRules

RULES = ScalingRules(
    min_replicas=1, max_replicas=10, target_per_pod=5000, down_stabilization=60, up_max_step=4, down_max_step=2
)


def load(connections: int, reporting: int, missing: int = 0) -> Load:
    return Load(connections=connections, reporting=reporting, missing=missing)


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def test_desired_is_ceil_of_connections_over_target() -> None:
    """12,000 connections at 5,000 per pod want 3 pods."""
    assert decide(RULES, 1, load(12_000, 1), (), 0.0).replicas == 3


@pytest.mark.parametrize(("connections", "expected"), [(10_500, 2), (9_500, 2), (11_001, 3), (8_999, 2)])
def test_tolerance_keeps_replicas_within_ten_percent(connections: int, expected: int) -> None:
    """Within 10 % of the target per pod nothing changes; beyond it, the HPA formula applies."""
    assert recommend(RULES, 2, load(connections, 2))[0] == expected


def test_scale_up_is_immediate_but_bounded_by_step() -> None:
    """From 1 pod to a need of 8: at most maxPodsPerStep (4) more per step."""
    assert decide(RULES, 1, load(40_000, 1), (), 0.0).replicas == 5


def test_scale_down_waits_for_the_stabilization_window() -> None:
    """A dip is ignored until every recommendation in the window is lower."""
    clock = FakeClock()
    history: tuple[Recommendation, ...] = (Recommendation(clock.now, 3),)
    for _ in range(5):  # 50 s of low load: the 3 from t=0 is still in the 60 s window
        step = decide(RULES, 3, load(2_000, 3), history, clock.advance(10))
        assert step.replicas == 3
        assert step.recommendation == 1
        history = step.history
    step = decide(RULES, 3, load(2_000, 3), history, clock.advance(11))
    assert step.replicas == 1


def test_scale_down_takes_the_highest_recommendation_in_the_window() -> None:
    """Recommendations 4, 2 within the window: down to 4 only, never to 2."""
    clock = FakeClock()
    history = (Recommendation(clock.now, 4), Recommendation(clock.advance(10), 2))
    assert decide(RULES, 6, load(5_000, 6), history, clock.advance(10)).replicas == 4


def test_scale_down_step_limit() -> None:
    """From 8 to a need of 1: at most maxPodsPerStep (2) fewer per step."""
    rules = ScalingRules(down_stabilization=0, down_max_step=2)
    assert decide(rules, 8, load(100, 8), (), 0.0).replicas == 6


def test_min_and_max_clamp_win_over_steps() -> None:
    """The bounds apply even beyond the step limits: above max drops to max, below min rises to min."""
    rules = ScalingRules(min_replicas=3, max_replicas=5, down_stabilization=0)
    assert decide(rules, 9, load(45_000, 9), (), 0.0).replicas == 5
    assert decide(rules, 1, load(10, 1), (), 0.0).replicas == 3
    assert decide(rules, 4, load(100_000, 4), (), 0.0).replicas == 5


def test_no_heartbeats_decides_nothing_but_clamps() -> None:
    """Without any fresh heartbeat the replicas stay, except to respect min/max."""
    assert decide(RULES, 4, load(0, 0, missing=4), (), 0.0).replicas == 4
    assert decide(ScalingRules(min_replicas=2), 1, load(0, 0, missing=1), (), 0.0).replicas == 2


def test_missing_pods_count_as_empty_when_scaling_up() -> None:
    """2 of 4 pods report 6,000 each: the 2 silent ones count as 0, so 12,000 over 4 pods is 0.6: no scale-up."""
    assert recommend(RULES, 4, load(12_000, 2, missing=2)) == (4, "MissingHeartbeats")


def test_missing_pods_count_as_full_when_scaling_down() -> None:
    """2 of 4 pods report 100 each: the silent ones count as 5,000, so only down to ceil(10,200/5,000) = 3."""
    assert recommend(RULES, 4, load(200, 2, missing=2)) == (3, "ScaleDown")


def test_missing_pods_that_flip_the_direction_change_nothing() -> None:
    """1 of 2 pods reports 4,600 (under target); the silent one at 5,000 makes it 0.96: within tolerance."""
    assert recommend(RULES, 2, load(4_600, 1, missing=1)) == (2, "MissingHeartbeats")


def test_real_overload_scales_up_despite_missing_pods() -> None:
    """1 of 2 pods reports 30,000: even with the silent pod at 0 that is 3x the target: 6 pods."""
    assert recommend(RULES, 2, load(30_000, 1, missing=1)) == (6, "ScaleUp")


def test_scale_up_stabilization_takes_the_lowest_in_its_window() -> None:
    """With a scale-up window, a spike must last: the lowest recommendation in the window wins."""
    rules = ScalingRules(up_stabilization=30, down_stabilization=0)
    clock = FakeClock()
    history = (Recommendation(clock.now, 2),)
    step = decide(rules, 2, load(30_000, 2), history, clock.advance(10))
    assert step.replicas == 2
    step = decide(rules, 2, load(30_000, 2), step.history, clock.advance(25))
    assert step.replicas == 6


def test_history_keeps_only_what_the_windows_need() -> None:
    """Recommendations older than the longest window are dropped, so memory stays bounded."""
    clock = FakeClock()
    history = tuple(Recommendation(clock.now + i, 3) for i in range(100))
    step = decide(RULES, 3, load(15_000, 3), history, clock.advance(200))
    assert all(r.at >= clock.now - 60 for r in step.history)


def test_disabled_autoscaling_holds_min() -> None:
    """With autoscaling off the fleet sits at replicas.min whatever the load."""
    rules = ScalingRules(min_replicas=2, enabled=False)
    assert decide(rules, 5, load(100_000, 5), (), 0.0).replicas == 2
