"""The benchmark report puts every server side by side: fleetcast, Socket.IO and both Nchan kinds, with a ratio
per peer and the goals checked against the right peer; results files from before Nchan still render."""

from __future__ import annotations

from typing import Any

from bench.suite import report


def run(workload: str, server: str, **result: float) -> dict[str, Any]:
    return {"workload": workload, "server": server, "rep": 0, "result": result}


def row(text: str, workload: str, metric_start: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == workload and cells[1].startswith(metric_start):
            return cells
    raise AssertionError(f"no row {workload} {metric_start!r} in\n{text}")


def test_three_servers_side_by_side_with_a_ratio_for_each_peer() -> None:
    runs = [
        run("W2", "fleetcast", deliveries_per_cpu_s=40_000),
        run("W2", "socketio", deliveries_per_cpu_s=16_000),
        run("W2", "nchan", deliveries_per_cpu_s=50_000),
        run("W2", "nchan-mem", deliveries_per_cpu_s=80_000),
    ]
    text = report.table({"reps": 1, "runs": runs})
    header = text.splitlines()[0]
    assert "Socket.IO" in header
    assert "Nchan (Redis)" in header
    assert "Nchan (memory)" in header
    cells = row(text, "W2", "deliveries / server CPU-s")
    assert cells[2:6] == ["40,000", "16,000", "50,000", "80,000"]
    assert cells[6:9] == ["2.50x", "0.80x", "0.50x"]
    assert cells[-1] == "yes"  # >= 2x Socket.IO and >= 0.7x Nchan (Redis)


def test_goal_against_nchan_fails_below_it_and_socketio_falls_back_to_its_lock_step_websocket_row() -> None:
    runs = [
        run("W1", "socketio", deliveries_per_cpu_s=70_000),
        run("W1p", "socketio", deliveries_per_cpu_s=49_000),
        run("W1s", "fleetcast", deliveries_per_cpu_s=40_000),
        run("W1s", "nchan", deliveries_per_cpu_s=92_000),
    ]
    cells = row(report.table({"reps": 1, "runs": runs}), "W1s", "deliveries / server CPU-s")
    assert cells[3] == "49,000"  # Socket.IO has no SSE: its WebSocket W1 in lock-step, as W1s is
    assert cells[4] == "92,000"
    assert cells[-1] == "**no**"


def test_set_up_rows_compare_rate_and_cpu_per_connection() -> None:
    runs = [
        run("W8", "fleetcast", connections_per_s=3_000, server_cpu_ms_per_connection=0.3),
        run("W8", "socketio", connections_per_s=2_900, server_cpu_ms_per_connection=0.42),
    ]
    text = report.table({"reps": 1, "runs": runs})
    assert row(text, "W8", "WS set-up to subscribed")[-1] == "yes"
    assert row(text, "W8", "WS set-up: server CPU")[-1] == "yes"
    runs[0]["result"]["server_cpu_ms_per_connection"] = 0.71
    assert row(report.table({"reps": 1, "runs": runs}), "W8", "WS set-up: server CPU")[-1] == "**no**"


def test_a_results_file_without_nchan_keeps_two_columns() -> None:
    runs = [run("W5", "fleetcast", kib_per_connection=18.0), run("W5", "socketio", kib_per_connection=13.6)]
    text = report.table({"reps": 3, "runs": runs})
    assert "Nchan" not in text
    cells = row(text, "W5", "idle memory per WS")
    assert cells[2:5] == ["18.0 KiB", "13.6 KiB", "1.32x"]
