"""fleetcast against Socket.IO 4.8 + @socket.io/redis-streams-adapter and against Nchan (nginx; on Redis and in
memory), one run, the same clients: ``make bench``.

``python -m bench.suite`` runs every workload (:mod:`bench.suite.workloads`) for every server it applies to,
``--reps`` times, alternating the order of the servers; writes ``bench/results/<time>.json``; prints the Markdown
table (:mod:`bench.suite.report`). ``--servers`` keeps some servers only (fleetcast's runs are what the ratios
need). ``--quick`` runs W1, W3, W5 and W8 once with smaller sizes (``make bench-quick``);
``--report FILE`` only re-renders a results file (``--plots DIR`` also draws the PNGs); ``--profile DIR``
records fleetcast's pod with py-spy during W1, W2 and W3.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.suite import procs, report
from bench.suite.workloads import QUICK, WORKLOADS, Context, Sizes
from bench.ws_fastpath import ROOT

RESULTS = ROOT / "bench" / "results"


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    peer = procs.PEER_DIR / "node_modules"
    versions = {name: metadata.version(name) for name in ("fleetcast", "uvicorn", "websockets", "uvloop")}
    for package in ("socket.io", "@socket.io/redis-streams-adapter", "redis"):
        with contextlib.suppress(OSError):
            versions[package] = json.loads((peer / package / "package.json").read_text())["version"]
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "node": os.popen("node --version").read().strip(),
        "redis": os.popen("redis-server --version").read().split()[2],
        "nginx": os.popen("nginx -v 2>&1").read().strip().rpartition("/")[2],
        "nchan": os.popen("dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null").read().strip(),
        "loadavg_start": os.getloadavg(),
        "git": os.popen(f"git -C {ROOT} describe --always --dirty").read().strip(),
        "versions": versions,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else Sizes()
    if args.soak_seconds is not None:
        sizes = dataclasses.replace(sizes, w7_seconds=args.soak_seconds)
    chosen = args.only or (["W1", "W3", "W5", "W8"] if args.quick else list(WORKLOADS))
    data: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine(),
                            "sizes": dataclasses.asdict(sizes), "reps": args.reps, "runs": []}  # fmt: skip
    profile: Path | None = args.profile
    with tempfile.TemporaryDirectory(prefix="fleetcast-bench.") as tmp:
        workdir = Path(tmp)
        async with procs.redis_server(workdir) as redis:
            for rep in range(args.reps):
                for name in chosen:
                    function, servers = WORKLOADS[name]
                    if name == "W7" and rep > 0:
                        continue  # one soak per server: it is long, and drift is read within the run
                    servers = tuple(s for s in servers if s in args.servers)
                    order = servers if rep % 2 == 0 else tuple(reversed(servers))
                    for server in order:
                        await redis.command("FLUSHALL")
                        ctx = Context(workdir, redis, sizes, profile if server == "fleetcast" else None)
                        entry: dict[str, Any] = {"workload": name, "server": server, "rep": rep,
                                                 "loadavg": os.getloadavg()}  # fmt: skip
                        started = time.monotonic()
                        try:
                            entry["result"] = await function(ctx, server)
                        except Exception as e:  # recorded, shown in the table, and the run goes on
                            entry["error"] = repr(e)
                            traceback.print_exc()
                        entry["seconds"] = round(time.monotonic() - started, 1)
                        data["runs"].append(entry)
                        shown = {k: v for k, v in entry.get("result", {}).items()
                                 if not isinstance(v, list)}  # fmt: skip
                        outcome = entry.get("error") or json.dumps(shown, default=str)
                        print(f"[{entry['seconds']:6.1f}s] {name} {server} rep {rep}: {outcome}", file=sys.stderr)
    data["loadavg_end"] = os.getloadavg()
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="W1, W3, W5, W8 once, smaller sizes")
    parser.add_argument(
        "--servers",
        nargs="*",
        choices=procs.SERVERS,
        default=list(procs.SERVERS),
        help="run only these servers (default: all)",
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions (full: 3, quick: 1)")
    parser.add_argument("--only", nargs="*", choices=list(WORKLOADS), help="run only these workloads")
    parser.add_argument("--soak-seconds", type=float, help="W7 duration per server (default 600)")
    parser.add_argument("--profile", metavar="DIR", help="py-spy fleetcast's pod during W1, W2, W3 into DIR")
    parser.add_argument("--report", metavar="FILE", help="only render the table of an existing results file")
    parser.add_argument("--plots", metavar="DIR", help="also draw the PNG plots into DIR")
    args = parser.parse_args()
    if args.report:
        data = json.loads(Path(args.report).read_text())
    else:
        args.reps = args.reps or (1 if args.quick else 3)
        procs.raise_fd_limit()
        if args.profile:
            args.profile = Path(args.profile).resolve()
            args.profile.mkdir(parents=True, exist_ok=True)
        data = asyncio.run(run(args))
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{data['started'].replace(':', '')}{'-quick' if args.quick else ''}.json"
        path.write_text(json.dumps(data, indent=1))
        print(f"results: {path.relative_to(ROOT)}", file=sys.stderr)
    m = data["machine"]
    print(f"\n{m['nproc']} CPUs ({m['cpu_model']}), load average at start {m['loadavg_start'][0]:.2f}\n")
    print(report.table(data))
    if args.plots:
        for written in report.plots(data, Path(args.plots)):
            print(f"plot: {written}", file=sys.stderr)
    sys.exit(1 if any("error" in r for r in data["runs"]) else 0)


if __name__ == "__main__":
    main()
