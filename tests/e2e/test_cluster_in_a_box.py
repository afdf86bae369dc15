"""Issue 8, the headline test: the fleet breathes with its load and no client loses or repeats an event.

``make test`` runs the bounded scenario; ``make e2e`` sets ``FLEETCAST_E2E=full`` for the larger one and
``FLEETCAST_E2E_PROOF`` to the file the summary goes to (``docs/proof.md``).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from fleetcast.client import Event
from tests.e2e.cluster import Knobs, cluster
from tests.e2e.rebalance import RebalanceReport, RebalanceScale, plot_svg, run_rebalance, verify_rebalance
from tests.e2e.scenario import Scale, run, verify
from tests.e2e.traffic import DeliveryBroken, FleetClient, wait_until

pytestmark = pytest.mark.browser

FULL = os.environ.get("FLEETCAST_E2E") == "full"
BOUNDED = Scale()
LARGER = Scale(wave1=280, wave2=70, knobs=Knobs(target_per_pod=100, drain_rate=12.0, channels=8, rebalance=False))
REBALANCE_BOUNDED = RebalanceScale()
REBALANCE_LARGER = RebalanceScale(clients=300, knobs=Knobs(target_per_pod=100, rebalance_budget=100.0, channels=8))
REBALANCE_SECTION = "\n## Scale-up with rebalance\n"


@pytest.mark.timeout(420 if FULL else 240)
async def test_scale_up_drain_down_pod_kill_and_redis_restart_lose_nothing() -> None:
    """1 pod; clients at 3x the per-pod target: 3 pods; they leave: 2 pods drain at the Gateway's pace and go;
    kill -9 of the last pod; Redis restarts. Every WS, SSE and Chromium client gets every event exactly once."""
    scale = LARGER if FULL else BOUNDED
    report = await run(scale)
    table = report.table()
    print(f"\n{table}")
    proof = os.environ.get("FLEETCAST_E2E_PROOF")
    if proof:
        await asyncio.to_thread(Path(proof).write_text, proof_page(table))
    verify(report)


@pytest.mark.timeout(300 if FULL else 180)
async def test_scale_up_rebalances_the_new_pods_without_loss() -> None:
    """Issue 17: 1 pod with 3x the per-pod target (WS and SSE): 3 pods; the operator makes the hot pod shed, and
    is restarted mid-round: within 30 s of the new pods being ready every pod holds the mean +- 20 %, every
    client's sequence is exact, the reconnects stay within the budget, and the round completes once."""
    report = await run_rebalance(REBALANCE_LARGER if FULL else REBALANCE_BOUNDED)
    table = report.table()
    print(f"\n{table}")
    proof = os.environ.get("FLEETCAST_E2E_PROOF")
    if proof:
        await asyncio.to_thread(write_rebalance_proof, Path(proof), report, table)
    verify_rebalance(report)


def write_rebalance_proof(proof: Path, report: RebalanceReport, table: str) -> None:
    """Add (or replace) the rebalance section of the proof page, and its plot next to it."""
    plot = proof.parent / "rebalance.svg"
    plot.write_text(plot_svg(report))
    page = proof.read_text() if proof.exists() else ""
    page = page.split(REBALANCE_SECTION, 1)[0].rstrip("\n") + "\n"
    page += f"""{REBALANCE_SECTION}
Written by the same run (`test_scale_up_rebalances_the_new_pods_without_loss`): one pod holds all the clients
(WS and SSE), the Gateway scales to 3, and the operator's rebalancer asks the hot pod to shed, paced within the
Gateway's reconnect budget; the operator is restarted while that round runs. Per-pod connections over time
(from each pod's `/readyz`, sampled every 0.5 s), the grey band is the mean +- the tolerance, the dashed lines
mark the new pods' readiness, the operator's restart and the moment every pod was within the band:

![per-pod connections after a scale-up](rebalance.svg)

{table}
"""
    proof.write_text(page)


class FaultyResume:
    """A client-side fault: after the client's first reconnect, drop (or repeat) the first event of the resume."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.entry: FleetClient | None = None
        self.hit: int | None = None

    def __call__(self, event: Event) -> list[Event]:
        if self.hit is None and self.entry is not None and self.entry.client.stats.reconnects >= 1:
            self.hit = int(event.data["n"])
            return [] if self.mode == "drop" else [event, event]
        return [event]


@pytest.mark.timeout(90)
async def test_the_harness_names_the_first_missing_and_duplicated_event() -> None:
    """Two clients whose resume is broken on purpose (one drops, one repeats an event after a pod kill): the
    check fails and names each client's first missing and duplicated event."""
    knobs = Knobs()
    async with cluster(knobs) as box:
        channel = knobs.channel_names[0]
        good = [box.fleet.open("sse", [channel]), box.fleet.open("ws", [channel])]
        taps = {mode: FaultyResume(mode) for mode in ("drop", "repeat")}
        faulty = {}
        for mode, transport in (("drop", "sse"), ("repeat", "ws")):
            faulty[mode] = taps[mode].entry = box.fleet.open(transport, [channel], tap=taps[mode])
        await wait_until(lambda: all(c.client.stats.connects for c in box.fleet.clients), timeout=20, what="connected")
        await wait_until(lambda: box.ledger.published(channel) > 10, timeout=20, what="events flowing")
        (pod,) = box.replicas.serving
        box.replicas.kill(pod.name)
        await wait_until(lambda: all(t.hit is not None for t in taps.values()), timeout=40, what="faults injected")
        # Publish past the faults before stopping: if the dropped event were the last one published, the dropping
        # client could never catch up, and the test would time out instead of naming the fault.
        last_fault = max(t.hit or 0 for t in taps.values())
        await wait_until(
            lambda: box.ledger.published(channel) > last_fault + 2, timeout=20, what="events past the faults"
        )
        await box.stop_publishing()
        try:
            await wait_until(lambda: not box.fleet.behind(), timeout=30, what="caught up")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; behind: {box.fleet.behind()[:10]}") from None
        with pytest.raises(DeliveryBroken) as broken:
            box.fleet.check()
    message = str(broken.value)
    print(message)
    drop, repeat = taps["drop"].hit, taps["repeat"].hit
    assert f"client {faulty['drop'].name} (sse) on {channel}: first missing event n={drop} " in message
    assert f"client {faulty['repeat'].name} (ws) on {channel}: first duplicated event n={repeat} " in message
    assert all(c.name not in message for c in good), message


def proof_page(table: str) -> str:
    return f"""# Proof: the fleet scales, drains, loses a pod and its Redis, and no client loses an event

Written by `make e2e` (`tests/e2e/test_cluster_in_a_box.py` with `FLEETCAST_E2E=full`); `make test` runs a
smaller version of the same scenario. What is real: `redis-server` with AOF, the operator (kopf), `fleetcast
serve` pod processes, `fleetcast.client` WS and SSE clients, headless Chromium with a native `EventSource`.
What is emulated: the Kubernetes API (kmock), the ReplicaSet controller and kubelet (a test-only fake that
runs the Deployment's pods as processes, preStop and SIGTERM included), and the Service (a loopback TCP relay
spreading new connections over ready pods). Scenario (rebalance off, see the next section for it): 1 pod;
clients ramp to 3x the per-pod target; wave 2 and the browser spread over 3 pods; wave 1 leaves, the operator
drains 2 pods and scales to 1; kill -9 of that pod under load; Redis restarts; publishing never stops until the
final check.

{table}
"""
