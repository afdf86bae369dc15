"""``fleetcast``: the command line. ``fleetcast serve`` runs a gateway pod; every flag also reads
``FLEETCAST_<NAME>`` from the environment (``--pod-name`` -> ``FLEETCAST_POD_NAME``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from fleetcast.contract.policy import MAX_MESSAGE_BYTES
from fleetcast.settings import AuthSettings, BrokerSettings, LimitSettings, ServerSettings, Settings, env

_WS_FRAME_OVERHEAD = 64 * 1024


def _flag_bool(text: str | None) -> bool:
    return (text or "").strip().lower() in {"1", "true", "yes", "on"}


def _add_serve(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subparsers.add_parser("serve", help="run a gateway pod (embedded broker unless --redis-url is given)")
    defaults = ServerSettings()
    serve.add_argument("--host", default=env("host", defaults.host), help="address to listen on (%(default)s)")
    serve.add_argument("--port", type=int, default=int(env("port", str(defaults.port)) or defaults.port))
    serve.add_argument("--pod-name", default=env("pod-name", defaults.pod_name), help="this pod's name")
    serve.add_argument("--gateway", default=env("gateway", defaults.gateway), help="the Gateway this pod belongs to")
    serve.add_argument("--redis-url", default=env("redis-url"), help="Redis to share events through (unset: embedded)")
    serve.add_argument("--publish-key", default=env("publish-key"), help="require 'Authorization: Bearer <key>'")
    serve.add_argument("--admin-token", default=env("admin-token"), help="token for admin endpoints off loopback")
    serve.add_argument(
        "--history-max-events",
        type=int,
        default=int(env("history-max-events", "1000") or 1000),
        help="retention of channels no Channel resource declares (%(default)s)",
    )
    serve.add_argument(
        "--strict-channels",
        action="store_true",
        default=_flag_bool(env("strict-channels")),
        help="refuse channels whose family no Channel resource declares",
    )
    serve.add_argument(
        "--outbox-max-bytes",
        type=int,
        default=int(env("outbox-max-bytes", str(LimitSettings().outbox_max_bytes)) or 0),
        help="unsent bytes a session may hold before it counts as a slow consumer (%(default)s)",
    )
    serve.add_argument("--log-level", default=env("log-level", "info"))


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        server=ServerSettings(host=args.host, port=args.port, pod_name=args.pod_name, gateway=args.gateway),
        broker=BrokerSettings(
            redis_url=args.redis_url or None,
            history_max_events=args.history_max_events,
            strict_channels=args.strict_channels,
        ),
        auth=AuthSettings(publish_key=args.publish_key or None, admin_token=args.admin_token or None),
        limits=LimitSettings(outbox_max_bytes=args.outbox_max_bytes),
    )


def serve(settings: Settings, log_level: str) -> None:
    import uvicorn

    from fleetcast.app import create_app
    from fleetcast.transports.uvicorn_ws import FleetcastWebSocketProtocol

    config = uvicorn.Config(
        create_app(settings),
        host=settings.server.host,
        port=settings.server.port,
        http="httptools",
        ws=FleetcastWebSocketProtocol,
        ws_max_size=MAX_MESSAGE_BYTES + _WS_FRAME_OVERHEAD,
        ws_per_message_deflate=False,
        ws_ping_interval=settings.limits.ws_ping_seconds,
        ws_ping_timeout=settings.limits.ws_ping_seconds,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        lifespan="on",
        log_level=log_level,
        access_log=False,
    )
    uvicorn.Server(config).run()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fleetcast", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_serve(subparsers)
    args = parser.parse_args(argv)
    if args.command == "serve":
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        serve(settings_from(args), args.log_level)


if __name__ == "__main__":
    main()
