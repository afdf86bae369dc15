"""``--gc-young-threshold`` and the start-up freeze, in a fresh interpreter (they change process-wide state)."""

from __future__ import annotations

import subprocess
import sys

PROBE = (
    "import gc, sys; from fleetcast.server import tune_gc; default = gc.get_threshold(); "
    "tune_gc(int(sys.argv[1])); print(gc.get_freeze_count() > 0, gc.get_threshold() == default, "
    "gc.get_threshold()[0])"
)


def probe(threshold: int) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, str(threshold)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_start_up_objects_are_frozen_and_the_default_threshold_kept() -> None:
    frozen, unchanged, _ = probe(0)
    assert frozen == "True"
    assert unchanged == "True"


def test_the_young_threshold_is_raised_when_asked() -> None:
    frozen, _, young = probe(50_000)
    assert frozen == "True"
    assert young == "50000"
