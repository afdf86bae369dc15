"""A run's JSON as a Markdown table (every server side by side, fleetcast / peer ratios, min-median-max over
repetitions, the goals) and as PNG plots. Pure reading of the results file; ``python -m bench.suite --report FILE``
regenerates both. Results files from before the Nchan peer render with the servers they hold.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PEERS = {"socketio": "Socket.IO", "nchan": "Nchan (Redis)", "nchan-mem": "Nchan (memory)"}
"""The peers in column order, with their column titles; issue 18's goals read "Nchan" as Nchan on Redis."""
COLORS = {"fleetcast": "#1f6feb", "socketio": "#d1495b", "nchan": "#2a9d8f", "nchan-mem": "#8ab17d"}
Medians = dict[str, float | None]
"""Each peer's median of a row (None: that peer did not run it)."""


def at_least(peer: str, factor: float) -> Callable[[float, Medians], bool]:
    return lambda f, p: p.get(peer) is not None and f >= factor * p[peer]  # type: ignore[operator]


def at_most(peer: str, factor: float) -> Callable[[float, Medians], bool]:
    return lambda f, p: p.get(peer) is not None and f <= factor * p[peer]  # type: ignore[operator]


@dataclass(frozen=True)
class Row:
    workload: str
    metric: str
    key: str
    unit: str
    goal: str = ""
    peer_workload: str | None = None
    """For a peer without runs of ``workload``, compare with its runs of this one (W1s over SSE against
    Socket.IO's W1, which has no SSE)."""
    check: Callable[[float, Medians], bool] | None = None
    """(fleetcast median, peers' medians) -> goal met."""
    ratio: bool = True
    """False where a ratio means nothing (a drift near zero)."""


ROWS = [
    Row("W1", "deliveries / server CPU-s, 1 ch -> 5,000 WS", "deliveries_per_cpu_s", "",
        ">= 5x Socket.IO; keeps its lead over Nchan", check=lambda f, p: at_least("socketio", 5)(f, p)
        and all(f >= v for k, v in p.items() if k.startswith("nchan") and v is not None)),
    Row("W1", "p50 latency at saturation (200 probes)", "p50_ms", " ms"),
    Row("W1", "deliveries per client read (above 1: events arrived merged)", "deliveries_per_read", "",
        ratio=False),
    Row("W1p", "deliveries / server CPU-s, 1 ch -> 5,000 WS, lock-step", "deliveries_per_cpu_s", "",
        "keeps its lead", check=lambda f, p: all(v is None or f >= v for v in p.values())),
    Row("W1s", "deliveries / server CPU-s, 1 ch -> 5,000 SSE, lock-step (Socket.IO: its WS W1p)",
        "deliveries_per_cpu_s", "", ">= 1.0x Nchan", peer_workload="W1p", check=at_least("nchan", 1.0)),
    Row("W1s", "deliveries per client read (1: no events merged)", "deliveries_per_read", "", ratio=False),
    Row("W2", "deliveries / server CPU-s, 1,000 ch x 5 WS", "deliveries_per_cpu_s", "",
        ">= 2x Socket.IO, >= 0.7x Nchan",
        check=lambda f, p: at_least("socketio", 2)(f, p) and at_least("nchan", 0.7)(f, p)),
    Row("W3", "publish -> deliver p50, 2 pods via Redis, 20 ev/s", "p50_ms", " ms"),
    Row("W3", "publish -> deliver p99, 2 pods via Redis, 20 ev/s", "p99_ms", " ms",
        "<= 0.8x Socket.IO, <= 30 ms, <= Nchan",
        check=lambda f, p: at_most("socketio", 0.8)(f, p) and f <= 30 and at_most("nchan", 1.0)(f, p)),
    Row("W4", "resume burst: all caught up (fleetcast SSE; peer WS recovery)", "caught_up_s", " s", "<= 3 s",
        check=lambda f, p: f <= 3),
    Row("W4", "resume burst: deliveries out of order (fleetcast SSE; peer WS)", "duplicates", ""),
    Row("W4ws", "resume burst: all caught up (fleetcast WS `since`)", "caught_up_s", " s", peer_workload="W4"),
    Row("W5", "idle memory per WS connection", "kib_per_connection", " KiB", "<= 12 KiB",
        check=lambda f, p: f <= 12),
    Row("W5s", "idle memory per SSE connection (Socket.IO: its WS W5)", "kib_per_connection", " KiB",
        "<= 14 KiB", peer_workload="W5", check=lambda f, p: f <= 14),
    Row("W6", "drain 5,000 WS: seconds (configured 5.5 s)", "drain_s", " s", "5.5 s +- 20 %",
        check=lambda f, p: 4.4 <= f <= 6.6),
    Row("W6", "drain 5,000 WS: events lost (gaps + never received)", "lost", "", "0", check=lambda f, p: f == 0),
    Row("W6l", "drain 5,000 WS at 10 ev/s: seconds (configured 5.5 s)", "drain_s", " s"),
    Row("W6l", "drain 5,000 WS at 10 ev/s: events lost", "lost", "", "0", check=lambda f, p: f == 0),
    Row("W7", "soak 10,000 conns: RSS drift", "rss_drift_mib", " MiB", ratio=False),
    Row("W7", "soak 10,000 conns: RSS at the end", "rss_end_mib", " MiB"),
    Row("W8", "WS set-up to subscribed: connections / s (wall)", "connections_per_s", "", ">= 1.0x Socket.IO",
        check=at_least("socketio", 1.0)),
    Row("W8", "WS set-up: server CPU per connection", "server_cpu_ms_per_connection", " ms", "<= 1.0x Socket.IO",
        check=at_most("socketio", 1.0)),
]  # fmt: skip


def values(runs: list[dict[str, Any]], workload: str, server: str, key: str) -> list[float]:
    return [float(r["result"][key]) for r in runs if r["workload"] == workload and r["server"] == server
            and "result" in r and r["result"].get(key) is not None]  # fmt: skip


def peer_values(runs: list[dict[str, Any]], row: Row, peer: str) -> list[float]:
    theirs = values(runs, row.workload, peer, row.key)
    if not theirs and row.peer_workload:
        theirs = values(runs, row.peer_workload, peer, row.key)
    return theirs


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
    present = {r["server"] for r in runs}
    peers = [p for p in PEERS if p in present]
    reps = "min / **median** / max" if data.get("reps", 1) > 1 else ""
    head = ["workload", "metric", f"fleetcast {reps}".strip()]
    head += [f"{PEERS[p]} {reps}".strip() for p in peers]
    head += [f"fleetcast / {PEERS[p]}" for p in peers] + ["goal", "met"]
    lines = ["| " + " | ".join(head) + " |", "| --- | --- | " + "---: | " * (1 + 2 * len(peers)) + "--- | --- |"]
    for row in ROWS:
        mine = values(runs, row.workload, "fleetcast", row.key)
        if not mine:
            continue
        f = statistics.median(mine)
        theirs = {p: peer_values(runs, row, p) for p in peers}
        medians: Medians = {p: statistics.median(xs) if xs else None for p, xs in theirs.items()}
        ratios = []
        for p in peers:
            m = medians[p]
            ratios.append(f"{f / m:.2f}x" if m and row.ratio else "-")
        met = "" if row.check is None else ("yes" if row.check(f, medians) else "**no**")
        cells = [row.workload, row.metric, spread(mine, row.unit)]
        cells += [spread(theirs[p], row.unit) for p in peers] + ratios + [row.goal, met]
        lines.append("| " + " | ".join(cells) + " |")
    failures = [r for r in runs if "error" in r]
    for r in failures:
        lines.append(f"\nFailed: {r['workload']} on {r['server']} (rep {r['rep']}): {r['error']}")
    return "\n".join(lines)


def bars(ax: Any, runs: list[dict[str, Any]], workload: str, key: str, title: str) -> None:
    """One bar per server that ran ``workload`` (its median), each repetition a dot."""
    servers = [s for s in ("fleetcast", *PEERS) if values(runs, workload, s, key)]
    for i, server in enumerate(servers):
        xs = values(runs, workload, server, key)
        ax.bar(i, statistics.median(xs), color=COLORS[server])
        ax.scatter([i] * len(xs), xs, color="black", s=10, zorder=3)
    ax.set_xticks(range(len(servers)), [PEERS.get(s, s).replace(" (", "\n(") for s in servers], fontsize=8)
    ax.set_title(title, fontsize=10)


def plots(data: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    runs = data["runs"]
    colors = COLORS
    written = []

    panels = [
        [("W1", "deliveries_per_cpu_s", "W1 WS fan-out: deliveries / server CPU-s"),
         ("W2", "deliveries_per_cpu_s", "W2 1,000 ch x 5: deliveries / server CPU-s"),
         ("W5", "kib_per_connection", "W5 idle KiB per WS connection")],
        [("W1s", "deliveries_per_cpu_s", "W1s SSE fan-out: deliveries / server CPU-s"),
         ("W8", "connections_per_s", "W8 WS set-up: connections / s"),
         ("W8", "server_cpu_ms_per_connection", "W8 WS set-up: server CPU ms / connection"),
         ("W5s", "kib_per_connection", "W5s idle KiB per SSE connection")],
    ]  # fmt: skip
    for name, panel in zip(("throughput-memory.png", "sse-setup.png"), panels, strict=True):
        shown = [p for p in panel if values(runs, p[0], "fleetcast", p[1])]
        if not shown:
            continue
        fig, axes = plt.subplots(1, len(shown), figsize=(4.4 * len(shown), 3.8), squeeze=False)
        for ax, (workload, key, title) in zip(axes[0], shown, strict=True):
            bars(ax, runs, workload, key, title)
        fig.tight_layout()
        written.append(out / name)
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)

    latency = [r for s in ("fleetcast", *PEERS) for r in runs
               if r["workload"] == "W3" and r["server"] == s and "result" in r]  # fmt: skip
    if latency:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for r in latency:
            qs = r["result"]["latency_quantiles_ms"]
            ax.plot(qs, [i / len(qs) for i in range(len(qs))], color=colors[r["server"]], alpha=0.8,
                    label=f"{r['server']} rep {r['rep']}")  # fmt: skip
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
