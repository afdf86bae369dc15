"""Scale-up with rebalance (issue 17): new pods take load off the hot one, paced, and nobody loses an event.

1. one pod; ``clients`` clients (WS and SSE) arrive at once, three times ``targetConnectionsPerPod``: the
   operator scales to 3;
2. once the new pods are ready, the operator's rebalancer asks the hot pod to shed; the operator is restarted
   while that round runs (``restart``), and the new one completes the round from ``status.rebalance``;
3. within ``BALANCED_WITHIN`` seconds of the new pods being ready every pod holds the mean +- the tolerance;
4. the publishers stop, every client catches up, and every sequence is checked; the reconnects per second are
   compared with the Gateway's budget.

Per-pod counts are sampled from each pod's ``/readyz`` every ``SAMPLE_SECONDS`` for the report and its plot.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from fleetcast.auth.admin_token import generated_path
from fleetcast.contract.commands import ShedCommand
from tests.e2e.cluster import Cluster, Knobs, cluster
from tests.e2e.scenario import Recorder, fresh_heartbeat, open_wave
from tests.e2e.traffic import wait_until
from tests.operator import fleet as redis_side

BALANCED_WITHIN = 30.0
SAMPLE_SECONDS = 0.5
TOLERANCE = 0.2


@dataclass(frozen=True)
class RebalanceScale:
    clients: int = 150
    knobs: Knobs = field(default_factory=lambda: Knobs(target_per_pod=50, rebalance_budget=60.0))
    restart: bool = True
    """Restart the operator while the first round runs."""


@dataclass
class RebalanceReport:
    scale: RebalanceScale
    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    """(seconds since the new pods were ready, connections per pod)."""
    balanced_at: float | None = None
    rounds: list[dict[str, Any]] = field(default_factory=list)
    """``status.rebalance`` of each round seen (its last state)."""
    commands: list[ShedCommand] = field(default_factory=list)
    restarted_in_round: str | None = None
    restarted_at: float | None = None
    """Seconds after the new pods were ready when the operator was restarted."""
    reconnect_rate: float = 0.0
    """Peak reconnects per second while rebalancing, averaged over 2 s windows."""
    reconnect_peak: int = 0
    """Reconnects in the busiest 1 s window."""
    reconnects: int = 0
    """Client reconnects from the new pods being ready to the end."""
    pacing: dict[str, dict[str, float]] = field(default_factory=dict)
    """Each pod's ``GET /internal/shed`` at the end: closes and the most in any one second, as the pod made them."""
    shed_events: list[str] = field(default_factory=list)
    lost: int = 0
    duplicated: int = 0
    delivered: int = 0
    faults: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def budget(self) -> float:
        return self.scale.knobs.rebalance_budget

    def table(self) -> str:
        pods = sorted({pod for _, counts in self.samples for pod in counts})
        short = {pod: pod.rsplit("-", 1)[-1] for pod in pods}
        lines: list[str | None] = ["| s after new pods ready | " + " | ".join(f"pod {short[p]}" for p in pods) + " |"]
        lines.append("| ---: |" + " ---: |" * len(pods))
        last = -10.0
        for t, counts in self.samples:
            if t - last >= 1.0 or t == self.samples[-1][0]:
                lines.append(f"| {t:.1f} | " + " | ".join(str(counts.get(p, "")) for p in pods) + " |")
                last = t
        rounds = "; ".join(
            f"{r['round']}: "
            + ", ".join(f"{p['name']} shed {p['count']} at {p['rate']:g}/s" for p in r["pods"])
            + f" ({r.get('outcome') or r.get('phase')})"
            for r in self.rounds
        )
        lines += [
            "",
            f"- clients: {self.scale.clients} (WS and SSE), target {self.scale.knobs.target_per_pod} per pod, "
            f"tolerance {TOLERANCE:.0%}, budget {self.budget:g} reconnects/s",
            f"- balanced (every pod within the tolerance of the mean) {self.balanced_at:.1f} s after the new pods "
            f"were ready (allowed {BALANCED_WITHIN:g} s)"
            if self.balanced_at is not None
            else "- NOT balanced",
            f"- rounds: {rounds or 'none'}; shed commands sent: {len(self.commands)}",
            f"- operator restarted {self.restarted_at:.1f} s after the new pods were ready, during round "
            f"{self.restarted_in_round}"
            if self.restarted_in_round and self.restarted_at is not None
            else None,
            "- closes by the shedding pods: "
            + ", ".join(
                f"{pod.rsplit('-', 1)[-1]} {p.get('closed', 0):g} at most {p.get('max_per_second', 0):g} in 1 s"
                for pod, p in sorted(self.pacing.items())
            )
            + f" (budget {self.budget:g}/s over all pods)",
            f"- client reconnects after the new pods were ready: {self.reconnects} (one per close, each started "
            f"{self.scale.knobs.reconnect_delay_ms} ms after it); their handshakes as this test process saw them "
            f"complete (its one event loop runs every client and the Service relay): {self.reconnect_rate:g}/s over "
            f"2 s, {self.reconnect_peak} in the busiest 1 s",
            f"- events delivered {self.delivered}, lost {self.lost}, duplicated {self.duplicated}; "
            f"first faults: {self.faults or 'none'}",
            f"- wall time: {self.seconds:.1f} s",
        ]
        return "\n".join(line for line in lines if line is not None)


async def pod_counts(box: Cluster, http: httpx.AsyncClient) -> dict[str, int]:
    counts: dict[str, int] = {}
    for run in box.replicas.serving:
        try:
            answer = (await http.get(f"{run.url}/readyz")).json()
        except (httpx.HTTPError, ValueError):
            continue
        counts[run.name] = sum(answer.get("connections", {}).values())
    return counts


def balanced(counts: dict[str, int], total: int) -> bool:
    mean = total / 3
    return len(counts) == 3 and all(mean * (1 - TOLERANCE) <= n <= mean * (1 + TOLERANCE) for n in counts.values())


async def shed_pacing(box: Cluster, http: httpx.AsyncClient) -> dict[str, dict[str, float]]:
    """Each serving pod's shed record (``closed`` over its life, the last shed's pacing), with its admin token."""
    found: dict[str, dict[str, float]] = {}
    for run in box.replicas.serving:
        try:
            token = generated_path(run.process.admin_port).read_text().strip()
            answer = await http.get(
                f"{run.process.admin_url}/internal/shed", headers={"Authorization": f"Bearer {token}"}
            )
            status = answer.json()
        except (httpx.HTTPError, ValueError, OSError):
            continue
        found[run.name] = {"closed": float(status["closed"]), **status["pacing"]}
    return found


async def shed_commands(box: Cluster) -> list[ShedCommand]:
    client = redis_side.connect(box.redis.url)
    try:
        return await redis_side.shed_commands(client, "edge")
    finally:
        await client.aclose()


async def run_rebalance(scale: RebalanceScale) -> RebalanceReport:
    knobs = scale.knobs
    report = RebalanceReport(scale)
    started = time.monotonic()
    async with cluster(knobs) as box, httpx.AsyncClient(timeout=2.0) as http:
        rec = Recorder(box)
        rec.phase("one pod")
        samples: list[tuple[float, dict[str, int]]] = []

        async def sample_forever() -> None:
            # Its own task, so the record has no hole while the test waits (the operator's restart takes seconds).
            while True:
                samples.append((time.monotonic(), await pod_counts(box, http)))
                await asyncio.sleep(SAMPLE_SECONDS)

        await fresh_heartbeat(box)
        clients = open_wave(box, scale.clients)
        await wait_until(lambda: all(c.client.stats.connects for c in clients), timeout=30, what="clients connected")
        sampler = asyncio.create_task(sample_forever(), name="per-pod counts")
        try:
            await box.at_replicas(3, timeout=60, what="scale-up to 3 with every pod ready")
            ready_at = time.monotonic()
            reconnects_before = box.fleet.reconnects
            rec.phase("rebalance")

            seen: dict[str, dict[str, Any]] = {}

            def note_round() -> dict[str, Any] | None:
                plan = box.gateway_status().get("rebalance")
                if plan:
                    seen[plan["round"]] = plan
                return plan

            def settled_and_balanced() -> bool:
                plan = note_round()
                latest = samples[-1] if samples else (0.0, {})
                fresh = latest[0] > time.monotonic() - 2 * SAMPLE_SECONDS
                finished = plan is not None and plan.get("phase") == "Finished"
                return finished and fresh and balanced(latest[1], scale.clients)

            if scale.restart:
                await wait_until(
                    lambda: (note_round() or {}).get("phase") == "Shedding", timeout=20, what="a round shedding"
                )
                report.restarted_in_round = (note_round() or {}).get("round")
                report.restarted_at = time.monotonic() - ready_at
                await box.restart_operator()
            await wait_until(settled_and_balanced, timeout=BALANCED_WITHIN, what="every pod within tolerance", step=0.1)
            report.balanced_at = time.monotonic() - ready_at
            await asyncio.sleep(6 * SAMPLE_SECONDS)  # a few more samples: it stays balanced
            note_round()
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
        report.samples = [(t - ready_at, counts) for t, counts in samples if t >= ready_at - 3.0]
        rec.phase("settle")
        await box.stop_publishing()
        await wait_until(lambda: not box.fleet.behind(), timeout=30, what="everyone caught up")

        await rec.stop()
        report.reconnect_rate = rec.rate("rebalance", window=2.0)
        report.reconnect_peak = rec._peak(ready_at, time.monotonic())
        report.rounds = list(seen.values())
        report.reconnects = box.fleet.reconnects - reconnects_before
        report.pacing = await shed_pacing(box, http)
        report.commands = await shed_commands(box)
        report.delivered, report.lost, report.duplicated = box.fleet.counts()
        report.faults = box.fleet.faults()
    report.seconds = time.monotonic() - started
    return report


def verify_rebalance(report: RebalanceReport) -> None:
    """Acceptance 1 and 2 of issue 17."""
    assert not report.faults, report.faults
    assert (report.lost, report.duplicated) == (0, 0), (report.lost, report.duplicated)
    assert report.balanced_at is not None
    assert report.balanced_at <= BALANCED_WITHIN
    assert report.rounds, "no rebalance round"
    # Reconnects per second within the budget, where the fleet controls them: the pods close at most the budget in
    # any second, together (each pod's busiest second, summed, bounds it), and every close is exactly one
    # reconnect, started exactly 100 ms later (``reconnect_delay_ms`` 100 is the jitter's floor), with no retry
    # or backoff on top. When the reconnects *complete* is reported, not asserted: 300 clients in this one test
    # process complete their handshakes in clumps its event loop makes (docs/decisions.md, Rebalance).
    closes = sum(p.get("max_per_second", 0.0) for p in report.pacing.values())
    assert closes <= report.budget, report.pacing
    closed = sum(int(p.get("closed", 0)) for p in report.pacing.values())
    assert report.reconnects == closed, f"{report.reconnects} client reconnects for {closed} closes"
    # Each round commands each of its pods once, across the restart too.
    sent = [(c.round, c.pod) for c in report.commands]
    assert len(sent) == len(set(sent)), sent
    for plan in report.rounds:
        assert plan["phase"] == "Finished", plan
        assert sorted((plan["round"], p["name"]) for p in plan["pods"]) == sorted(
            (r, p) for r, p in sent if r == plan["round"]
        )
    if report.scale.restart:
        assert report.restarted_in_round in {plan["round"] for plan in report.rounds}


def plot_svg(report: RebalanceReport, width: int = 640, height: int = 300) -> str:
    """Per-pod connections over time as a small SVG line chart, with the tolerance band around the mean."""
    pods = sorted({pod for _, counts in report.samples for pod in counts})
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    t_min = min((t for t, _ in report.samples), default=0.0)
    t_max = max((t for t, _ in report.samples), default=1.0)
    span = (t_max - t_min) or 1.0
    y_max = max((n for _, counts in report.samples for n in counts.values()), default=1) or 1
    left, right, top, bottom = 50, 20, 20, 40
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(t: float) -> float:
        return left + plot_w * (t - t_min) / span

    def y(n: float) -> float:
        return top + plot_h * (1 - n / y_max)

    mean = report.scale.clients / 3
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="11">',
        f'<rect x="{left}" y="{y(mean * (1 + TOLERANCE)):.1f}" width="{plot_w}" '
        f'height="{y(mean * (1 - TOLERANCE)) - y(mean * (1 + TOLERANCE)):.1f}" fill="#eee"/>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#333"/>',
        f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle">seconds after the new pods were ready'
        "</text>",
        f'<text x="12" y="{top + plot_h / 2}" transform="rotate(-90 12 {top + plot_h / 2})" text-anchor="middle">'
        "connections per pod</text>",
        f'<text x="{left - 6}" y="{y(0) + 4:.1f}" text-anchor="end">0</text>',
        f'<text x="{left - 6}" y="{y(y_max) + 4:.1f}" text-anchor="end">{y_max}</text>',
        f'<text x="{left + plot_w - 4}" y="{y(mean * (1 + TOLERANCE)) - 4:.1f}" text-anchor="end" fill="#777">'
        f"mean +- {TOLERANCE:.0%}</text>",
    ]
    for i, pod in enumerate(pods):
        points = " ".join(f"{x(t):.1f},{y(counts[pod]):.1f}" for t, counts in report.samples if pod in counts)
        colour = colours[i % len(colours)]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        parts.append(
            f'<text x="{left + plot_w - 4}" y="{top + 12 + 14 * i}" text-anchor="end" fill="{colour}">{pod}</text>'
        )
    parts.append(f'<text x="{left - 6}" y="{y(mean) + 4:.1f}" text-anchor="end">{mean:.0f}</text>')
    for second in range(math.ceil(t_min), int(t_max) + 1):
        parts.append(f'<text x="{x(second):.1f}" y="{top + plot_h + 14}" text-anchor="middle">{second}</text>')
    marks = [
        (0.0, "new pods ready", "#555", "2 2"),
        (report.restarted_at, "operator restarted", "#e08", "1 3"),
        (report.balanced_at, "balanced", "#999", "4 3"),
    ]
    for i, (at, label, colour, dash) in enumerate(marks):
        if at is None:
            continue
        mx = x(at)
        parts.append(f'<line x1="{mx:.1f}" y1="{top}" x2="{mx:.1f}" y2="{top + plot_h}" stroke="{colour}" '
                     f'stroke-dasharray="{dash}"/>')  # fmt: skip
        parts.append(f'<text x="{mx + 4:.1f}" y="{top + plot_h - 6 - 14 * i}" fill="{colour}">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
