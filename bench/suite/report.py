"""A run's JSON as a Markdown table (fleetcast / peer ratios, min-median-max over repetitions, the goals) and as
PNG plots. Pure reading of the results file; ``python -m bench.suite --report FILE`` regenerates both.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PEER = "socketio"


@dataclass(frozen=True)
class Row:
    workload: str
    metric: str
    key: str
    unit: str
    goal: str = ""
    peer_workload: str | None = None
    """Compare with the peer's runs of another workload (W1s over SSE against the peer's W1)."""
    check: Callable[[float, float | None], bool] | None = None
    """(fleetcast median, peer median) -> goal met."""
    ratio: bool = True
    """False where a ratio means nothing (a drift near zero)."""


ROWS = [
    Row("W1", "deliveries / server CPU-s, 1 ch -> 5,000 WS", "deliveries_per_cpu_s", "", ">= 5x",
        check=lambda f, p: p is not None and f >= 5 * p),
    Row("W1", "p50 latency at saturation (200 probes)", "p50_ms", " ms"),
    Row("W1s", "deliveries / server CPU-s, 1 ch -> 5,000 SSE (peer: its WS W1)", "deliveries_per_cpu_s", "",
        peer_workload="W1"),
    Row("W2", "deliveries / server CPU-s, 1,000 ch x 5 WS", "deliveries_per_cpu_s", "", ">= 2x",
        check=lambda f, p: p is not None and f >= 2 * p),
    Row("W3", "publish -> deliver p50, 2 pods via Redis, 20 ev/s", "p50_ms", " ms"),
    Row("W3", "publish -> deliver p99, 2 pods via Redis, 20 ev/s", "p99_ms", " ms", "<= 0.8x and <= 30 ms",
        check=lambda f, p: p is not None and f <= 0.8 * p and f <= 30),
    Row("W4", "resume burst: all caught up (fleetcast SSE; peer WS recovery)", "caught_up_s", " s", "<= 3 s",
        check=lambda f, p: f <= 3),
    Row("W4", "resume burst: deliveries out of order (fleetcast SSE; peer WS)", "duplicates", ""),
    Row("W4ws", "resume burst: all caught up (fleetcast WS `since`)", "caught_up_s", " s", peer_workload="W4"),
    Row("W5", "idle memory per WS connection", "kib_per_connection", " KiB", "<= 20 KiB",
        check=lambda f, p: f <= 20),
    Row("W5s", "idle memory per SSE connection (peer: its WS W5)", "kib_per_connection", " KiB",
        peer_workload="W5"),
    Row("W6", "drain 5,000 WS: seconds (configured 5.5 s)", "drain_s", " s"),
    Row("W6", "drain 5,000 WS: events lost (gaps + never received)", "lost", "", "0", check=lambda f, p: f == 0),
    Row("W6l", "drain 5,000 WS at 10 ev/s: seconds (configured 5.5 s)", "drain_s", " s"),
    Row("W6l", "drain 5,000 WS at 10 ev/s: events lost", "lost", "", "0", check=lambda f, p: f == 0),
    Row("W7", "soak 10,000 conns: RSS drift", "rss_drift_mib", " MiB", ratio=False),
    Row("W7", "soak 10,000 conns: RSS at the end", "rss_end_mib", " MiB"),
]  # fmt: skip


def values(runs: list[dict[str, Any]], workload: str, server: str, key: str) -> list[float]:
    return [float(r["result"][key]) for r in runs if r["workload"] == workload and r["server"] == server
            and "result" in r and r["result"].get(key) is not None]  # fmt: skip


def fmt(x: float, unit: str) -> str:
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def spread(xs: list[float], unit: str) -> str:
    if not xs:
        return "-"
    if len(xs) == 1:
        return fmt(xs[0], unit) + unit
    return f"{fmt(min(xs), unit)} / **{fmt(statistics.median(xs), unit)}** / {fmt(max(xs), unit)}{unit}"


def table(data: dict[str, Any]) -> str:
    runs = data["runs"]
    lines = [
        "| workload | metric | fleetcast min / **median** / max | Socket.IO min / **median** / max "
        "| fleetcast / peer | goal | met |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for row in ROWS:
        mine = values(runs, row.workload, "fleetcast", row.key)
        if not mine:
            continue
        theirs = values(runs, row.peer_workload or row.workload, PEER, row.key)
        f = statistics.median(mine)
        p = statistics.median(theirs) if theirs else None
        ratio = f"{f / p:.2f}x" if p and row.ratio else "-"
        met = "" if row.check is None else ("yes" if row.check(f, p) else "**no**")
        lines.append(
            f"| {row.workload} | {row.metric} | {spread(mine, row.unit)} | {spread(theirs, row.unit)} "
            f"| {ratio} | {row.goal} | {met} |"
        )
    failures = [r for r in runs if "error" in r]
    for r in failures:
        lines.append(f"\nFailed: {r['workload']} on {r['server']} (rep {r['rep']}): {r['error']}")
    return "\n".join(lines)


def plots(data: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    runs = data["runs"]
    colors = {"fleetcast": "#1f6feb", PEER: "#d1495b"}
    written = []

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (workload, key, title) in zip(
        axes,
        [
            ("W1", "deliveries_per_cpu_s", "W1 fan-out: deliveries / server CPU-s"),
            ("W2", "deliveries_per_cpu_s", "W2 1,000 ch x 5: deliveries / server CPU-s"),
            ("W5", "kib_per_connection", "W5 idle KiB per connection"),
        ],
        strict=True,
    ):
        for i, server in enumerate(("fleetcast", PEER)):
            xs = values(runs, workload, server, key)
            if xs:
                ax.bar(i, statistics.median(xs), color=colors[server], label=server)
                ax.scatter([i] * len(xs), xs, color="black", s=10, zorder=3)
        ax.set_xticks([0, 1], ["fleetcast", "Socket.IO"])
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    written.append(out / "throughput-memory.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for server in ("fleetcast", PEER):
        for r in runs:
            if r["workload"] == "W3" and r["server"] == server and "result" in r:
                qs = r["result"]["latency_quantiles_ms"]
                ax.plot(qs, [i / len(qs) for i in range(len(qs))], color=colors[server], alpha=0.8,
                        label=f"{server} rep {r['rep']}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("publish -> deliver latency, ms (log)")
    ax.set_ylabel("fraction of deliveries")
    ax.set_title("W3: 2 pods via Redis, 20 events/s", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(out / "latency-cdf.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    soak = [r for r in runs if r["workload"] == "W7" and "result" in r]
    if soak:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for r in soak:
            t, rss = zip(*r["result"]["samples"], strict=True)
            ax.plot(t, rss, color=colors[r["server"]], label=f"{r['server']} rep {r['rep']}")
        ax.set_xlabel("seconds")
        ax.set_ylabel("RSS MiB")
        ax.set_title(f"W7 soak: {soak[0]['result']['connections']:,} connections, one pod", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(out / "soak-rss.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written
