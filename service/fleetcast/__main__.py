"""``fleetcast``: the command line. ``fleetcast serve`` runs a gateway pod; every flag also reads
``FLEETCAST_<NAME>`` from the environment (``--pod-name`` -> ``FLEETCAST_POD_NAME``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from fleetcast import channel_cli
from fleetcast.contract.policy import MAX_MESSAGE_BYTES
from fleetcast.drain.controller import DrainSettings
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
    serve.add_argument(
        "--max-connections",
        type=int,
        default=int(env("max-connections", str(LimitSettings().max_connections)) or 0),
        help="connections this pod takes before turning new ones away (%(default)s)",
    )
    serve.add_argument(
        "--ws-ping-seconds",
        type=float,
        default=float(env("ws-ping-seconds", str(LimitSettings().ws_ping_seconds)) or 20),
        help="WebSocket pings; a client silent for as long again is disconnected (%(default)s)",
    )
    serve.add_argument(
        "--sse-heartbeat-seconds",
        type=float,
        default=float(env("sse-heartbeat-seconds", str(LimitSettings().sse_heartbeat_seconds)) or 15),
        help="interval of ': ping' comments on idle SSE streams (%(default)s)",
    )
    serve.add_argument(
        "--ws-publish-rate",
        type=float,
        default=float(env("ws-publish-rate", str(LimitSettings().ws_publish_per_second)) or 0),
        help="publishes per second one WebSocket client may make (%(default)s)",
    )
    drain = DrainSettings()
    serve.add_argument(
        "--drain-rate",
        type=float,
        default=float(env("drain-rate", str(drain.rate)) or drain.rate),
        help="sessions closed per second while draining (%(default)s)",
    )
    serve.add_argument(
        "--drain-timeout",
        type=float,
        default=float(env("drain-timeout", str(drain.timeout)) or drain.timeout),
        help="seconds until a drain closes everything left and the process exits (%(default)s)",
    )
    serve.add_argument(
        "--drain-propagation",
        type=float,
        default=float(env("drain-propagation", str(drain.propagation_seconds)) or 0),
        help="seconds between turning unready and turning new sessions away (%(default)s)",
    )
    serve.add_argument(
        "--drain-reconnect-delay-ms",
        type=int,
        default=int(env("drain-reconnect-delay-ms", str(drain.reconnect_delay_ms)) or 0),
        help="upper bound of the jittered delay drained clients wait before reconnecting (%(default)s)",
    )
    serve.add_argument("--log-level", default=env("log-level", "info"))


def _add_drain(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    drain = subparsers.add_parser(
        "drain", help="drain the pod on this machine and wait until it is empty (the preStop hook runs this)"
    )
    drain.add_argument("--port", type=int, default=int(env("port", "8000") or 8000))
    drain.add_argument(
        "--timeout",
        type=float,
        default=float(env("drain-timeout", str(DrainSettings().timeout)) or 60),
        help="seconds to wait for the drain (%(default)s)",
    )


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        server=ServerSettings(host=args.host, port=args.port, pod_name=args.pod_name, gateway=args.gateway),
        broker=BrokerSettings(
            redis_url=args.redis_url or None,
            history_max_events=args.history_max_events,
            strict_channels=args.strict_channels,
        ),
        auth=AuthSettings(publish_key=args.publish_key or None, admin_token=args.admin_token or None),
        limits=LimitSettings(
            outbox_max_bytes=args.outbox_max_bytes,
            max_connections=args.max_connections,
            ws_publish_per_second=args.ws_publish_rate,
            ws_publish_burst=max(1.0, 2 * args.ws_publish_rate),
            ws_ping_seconds=args.ws_ping_seconds,
            sse_heartbeat_seconds=args.sse_heartbeat_seconds,
        ),
        drain=DrainSettings(
            rate=args.drain_rate,
            timeout=args.drain_timeout,
            propagation_seconds=args.drain_propagation,
            reconnect_delay_ms=args.drain_reconnect_delay_ms,
        ),
    )


def serve(settings: Settings, log_level: str) -> None:
    import uvicorn

    from fleetcast.app import create_app
    from fleetcast.observability import tracing
    from fleetcast.pod import Pod
    from fleetcast.server import GatewayServer
    from fleetcast.transports.uvicorn_ws import FleetcastWebSocketProtocol

    # Before the pod: its hub and publisher take the tracer (or None, tracing off) when they are made.
    tracing.setup_from_environment("fleetcast")
    pod = Pod(settings)
    config = uvicorn.Config(
        create_app(settings, pod),
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
        # After a drain nothing should be left open; this only bounds shutdown if something is.
        timeout_graceful_shutdown=5,
    )
    try:
        GatewayServer(config, pod.drain).run()
    finally:
        tracing.shutdown()  # flush the spans still queued for export


def drain(port: int, timeout: float) -> int:
    """Ask the local pod to drain and wait until it is done (or the process is gone): the preStop hook."""
    import time

    import httpx

    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        started = httpx.post(f"{base}/internal/drain", timeout=5)
        started.raise_for_status()
        while time.monotonic() < deadline:
            status = httpx.get(f"{base}/internal/drain", timeout=5).json()
            if status["state"] == "drained":
                print(f"drained: {status['closed']} sessions closed")
                return 0
            time.sleep(0.5)
    except httpx.TransportError:
        print("the pod stopped listening: drained")
        return 0
    except httpx.HTTPStatusError as exc:
        print(f"drain refused: {exc.response.status_code} {exc.response.text}", file=sys.stderr)
        return 1
    print(f"drain still running after {timeout} s", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fleetcast", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_serve(subparsers)
    _add_drain(subparsers)
    channel_cli.add_channel_commands(subparsers)
    args = parser.parse_args(argv)
    if args.command == "serve":
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        serve(settings_from(args), args.log_level)
    elif args.command == "drain":
        sys.exit(drain(args.port, args.timeout))
    elif args.command == "channel":
        sys.exit(channel_cli.run(args))


if __name__ == "__main__":
    main()
