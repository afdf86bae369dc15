"""``python -m fleetcast_operator`` / ``fleetcast-operator``: run the operator until SIGTERM or SIGINT.

Logs in like kubectl: in a pod with its service account, elsewhere with ``KUBECONFIG`` (or ``~/.kube/config``).
Serves the namespaces given with ``--namespace`` (repeatable), or all of them when none is given.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence

from fleetcast_operator import tracing, wiring
from fleetcast_operator.fleet_redis import RedisPool
from fleetcast_operator.kube import Kube
from fleetcast_operator.runtime import Runtime, Settings


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fleetcast-operator", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-n", "--namespace", action="append", default=[], help="namespace to serve (repeatable); all when absent"
    )
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="liveness endpoint URL ('' to disable); default %(default)s",
    )
    parser.add_argument("--autoscale-interval", type=float, default=5.0, help="seconds")
    parser.add_argument("--channel-status-interval", type=float, default=10.0, help="seconds")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    settings = Settings(
        autoscale_interval=args.autoscale_interval,
        channel_status_interval=args.channel_status_interval,
        namespaces=tuple(args.namespace),
        liveness_endpoint=args.liveness or None,
    )
    pool = RedisPool()
    rt = Runtime(settings=settings, kube=await Kube.connect(), fleet_for_url=pool.get, close_fleets=pool.close)
    try:
        await wiring.run(rt)
    finally:
        await rt.close()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    tracing.setup_from_environment()
    try:
        asyncio.run(serve(args))
    finally:
        tracing.shutdown()


if __name__ == "__main__":
    main()
