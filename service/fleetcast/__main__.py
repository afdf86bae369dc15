"""``fleetcast``: the command line. ``fleetcast serve`` runs a gateway pod; every flag also reads
``FLEETCAST_<NAME>`` from the environment (``--pod-name`` -> ``FLEETCAST_POD_NAME``). ``fleetcast publish`` and
``fleetcast tail`` talk to a running gateway (:mod:`fleetcast.client.cli`)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fleetcast import __version__, channel_cli, token_cli
from fleetcast.auth.authenticator import AuthSettings
from fleetcast.client import cli as client_cli
from fleetcast.contract.keys import Keys
from fleetcast.contract.policy import MAX_MESSAGE_BYTES
from fleetcast.contract.presence import MIN_LEASE_SECONDS
from fleetcast.contract.redis_url import seed_nodes
from fleetcast.drain.controller import DrainSettings
from fleetcast.settings import AdminSettings, BrokerSettings, LimitSettings, ServerSettings, Settings, env

_WS_FRAME_OVERHEAD = 64 * 1024
_TRUE = {"1", "true", "yes", "on"}
_CONNECTION_MAX_CHANNELS = 100
"""Subscriptions one connection may hold (``session.Limits.max_channels``, not imported: the CLI starts light)."""


def _option(
    parser: argparse.ArgumentParser, name: str, kind: Callable[[str], object], default: object, help: str
) -> None:
    """``--<name>``, defaulting to ``FLEETCAST_<NAME>`` from the environment, else ``default``; a malformed
    environment value is refused with its name, not a traceback."""
    raw = env(name)
    value = default
    if raw is not None and raw != "":
        try:
            value = kind(raw)
        except ValueError:
            variable = "FLEETCAST_" + name.upper().replace("-", "_")
            parser.error(f"{variable}={raw!r} is not a valid {kind.__name__}")
    parser.add_argument(f"--{name}", type=kind, default=value, help=f"{help} (%(default)s)")


def port(raw: str) -> int:
    """A TCP port number, or 0 for ``off``."""
    value = 0 if raw.strip().lower() == "off" else int(raw)
    if not 0 <= value <= 65535:
        raise ValueError(raw)
    return value


def redis_mode(raw: str) -> str:
    """``standalone`` or ``cluster``."""
    value = raw.strip().lower()
    if value not in ("standalone", "cluster"):
        raise ValueError(raw)
    return value


def replicas(raw: str) -> int:
    """A number of replicas, 0 or more."""
    value = int(raw)
    if value < 0:
        raise ValueError(raw)
    return value


def _add_serve(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subparsers.add_parser("serve", help="run a gateway pod (embedded broker unless --redis-url is given)")
    server, limits, drain, auth = ServerSettings(), LimitSettings(), DrainSettings(), AuthSettings()
    admin, broker = AdminSettings(), BrokerSettings()
    options: list[tuple[str, Callable[[str], object], object, str]] = [
        ("host", str, server.host, "address to listen on"),
        ("port", int, server.port, "port to listen on"),
        ("admin-port", port, admin.port, "port of /internal/*, /metrics and the API docs (0 or 'off': none)"),
        ("admin-token-file", str, None, "file with the admin token (unset: generated into the temp directory)"),
        ("pod-name", str, server.pod_name, "this pod's name in heartbeats and drain commands"),
        ("gateway", str, server.gateway, "the Gateway this pod belongs to"),
        ("namespace", str, server.namespace, "the Gateway's Kubernetes namespace (names the Redis keys)"),
        ("redis-url", str, None, "Redis to share events through (unset: the embedded broker); cluster: seed list"),
        ("redis-mode", redis_mode, broker.redis_mode, "'standalone' Redis or 'cluster' (Redis Cluster, 7.0+)"),
        ("redis-wait-replicas", replicas, broker.redis_wait_replicas, "replicas that must hold a publish before 201"),
        ("publish-key", str, None, "one API key (named 'default') backends publish with"),
        ("publish-keys-dir", str, None, "directory of API keys, one file per key (a mounted Secret)"),
        ("jwt-secret-file", str, None, "file with the shared secret of HS256/384/512 tokens"),
        ("jwt-public-key-file", str, None, "PEM public key of RS*/PS*/ES*/EdDSA tokens"),
        ("jwks-url", str, None, "JWKS document with the keys of tokens (by kid), refreshed in the background"),
        ("jwt-audience", str, None, "tokens must carry this 'aud'"),
        ("jwt-issuer", str, None, "tokens must carry this 'iss'"),
        ("jwt-leeway", float, auth.jwt_leeway_seconds, "seconds of clock skew tolerated on exp and nbf"),
        ("jwks-refresh-seconds", float, auth.jwks_refresh_seconds, "interval of scheduled JWKS refreshes"),
        ("key-reload-seconds", float, auth.key_reload_seconds, "how often key files are checked for rotation"),
        ("allowed-origins", str, "", "comma-separated web origins that may use the gateway besides its own"),
        ("token-cookie", str, auth.token_cookie, "cookie that SSE, history and info requests may carry a token in"),
        ("history-max-events", int, 1000, "retention of channels no Channel resource declares"),
        ("idle-channel-ttl", float, broker.idle_channel_ttl, "embedded broker: idle channel lifetime, s (0: forever)"),
        ("presence-lease-seconds", float, broker.presence_lease_seconds, "entries of a dead pod go within, s (>= 10)"),
        ("presence-grace-seconds", float, broker.presence_grace_seconds, "a leave waits this long for a rejoin, s"),
        ("outbox-max-bytes", int, limits.outbox_max_bytes, "unsent bytes before a session is a slow consumer"),
        ("max-connections", int, limits.max_connections, "connections before new ones are turned away"),
        ("gc-young-threshold", int, server.gc_young_threshold, "allocations between young-generation GCs; 0: Python's"),
        ("max-header-bytes", int, limits.max_header_bytes, "request line plus headers before 431"),
        ("header-timeout", float, limits.header_timeout, "seconds to send request line and headers before 408"),
        ("ws-ping-seconds", float, limits.ws_ping_seconds, "WebSocket pings; silent as long again: disconnected"),
        ("sse-heartbeat-seconds", float, limits.sse_heartbeat_seconds, "': ping' comments on idle SSE streams"),
        ("mux-max-channels", int, limits.mux_max_channels, "channels per multiplexed SSE stream (1-100)"),
        ("ws-publish-rate", float, limits.ws_publish_per_second, "publishes per second per WebSocket client"),
        ("drain-rate", float, drain.rate, "sessions closed per second while draining"),
        ("drain-timeout", float, drain.timeout, "seconds until a drain closes the rest and the process exits"),
        ("drain-propagation", float, drain.propagation_seconds, "seconds from unready to turning sessions away"),
        ("drain-reconnect-delay-ms", int, drain.reconnect_delay_ms, "upper bound of drained clients' jittered delay"),
        ("log-level", str, "info", "log level"),
    ]
    for name, kind, default, help in options:
        _option(serve, name, kind, default, help)
    strict = (env("strict-channels") or "").strip().lower() in _TRUE
    serve.add_argument(
        "--strict-channels",
        action="store_true",
        default=strict,
        help="refuse channels whose family no Channel resource declares",
    )
    serve.add_argument(
        "--presence",
        action=argparse.BooleanOptionalAction,
        default=(env("presence") or "").strip().lower() in _TRUE,
        help="channels no Channel resource declares have presence, with joins and leaves (%(default)s)",
    )
    anonymous = env("anonymous")
    serve.add_argument(
        "--anonymous",
        action=argparse.BooleanOptionalAction,
        default=auth.anonymous if not anonymous else anonymous.strip().lower() in _TRUE,
        help="channels no Channel resource declares are open to anyone: subscribe and publish without "
        "credentials (on for a laptop; the Helm chart's Gateway turns it off) (%(default)s)",
    )


def _add_drain(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    drain = subparsers.add_parser(
        "drain", help="drain the pod on this machine and wait until it is empty (the preStop hook runs this)"
    )
    _option(drain, "admin-port", int, AdminSettings().port, "the local pod's admin port")
    _option(drain, "admin-token-file", str, None, "file with the admin token (unset: the one the pod generated)")
    timeout = env("drain-timeout")
    drain.add_argument(
        "--timeout",
        type=float,
        default=float(timeout) if timeout else DrainSettings().timeout,
        help="seconds to wait for the drain (%(default)s)",
    )


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        server=ServerSettings(
            host=args.host,
            port=args.port,
            pod_name=args.pod_name,
            gateway=args.gateway,
            namespace=args.namespace,
            gc_young_threshold=args.gc_young_threshold,
        ),
        admin=AdminSettings(port=args.admin_port, token_file=args.admin_token_file or None),
        broker=BrokerSettings(
            redis_url=args.redis_url or None,
            redis_mode=args.redis_mode,
            redis_wait_replicas=args.redis_wait_replicas,
            history_max_events=args.history_max_events,
            idle_channel_ttl=args.idle_channel_ttl if args.idle_channel_ttl > 0 else None,
            strict_channels=args.strict_channels,
            presence_undeclared=args.presence,
            presence_lease_seconds=args.presence_lease_seconds,
            presence_grace_seconds=args.presence_grace_seconds,
        ),
        auth=AuthSettings(
            anonymous=args.anonymous,
            jwt_secret_file=args.jwt_secret_file or None,
            jwt_public_key_file=args.jwt_public_key_file or None,
            jwks_url=args.jwks_url or None,
            jwt_audience=args.jwt_audience or None,
            jwt_issuer=args.jwt_issuer or None,
            jwt_leeway_seconds=args.jwt_leeway,
            jwks_refresh_seconds=args.jwks_refresh_seconds,
            key_reload_seconds=args.key_reload_seconds,
            publish_keys_dir=args.publish_keys_dir or None,
            publish_key=args.publish_key or None,
            allowed_origins=tuple(o.strip() for o in args.allowed_origins.split(",") if o.strip()),
            token_cookie=args.token_cookie,
        ),
        limits=LimitSettings(
            outbox_max_bytes=args.outbox_max_bytes,
            max_connections=args.max_connections,
            max_header_bytes=args.max_header_bytes,
            header_timeout=args.header_timeout,
            ws_publish_per_second=args.ws_publish_rate,
            ws_publish_burst=max(1.0, 2 * args.ws_publish_rate),
            ws_ping_seconds=args.ws_ping_seconds,
            sse_heartbeat_seconds=args.sse_heartbeat_seconds,
            mux_max_channels=args.mux_max_channels,
        ),
        drain=DrainSettings(
            rate=args.drain_rate,
            timeout=args.drain_timeout,
            propagation_seconds=args.drain_propagation,
            reconnect_delay_ms=args.drain_reconnect_delay_ms,
        ),
    )


def check_auth(auth: AuthSettings) -> None:
    """Refuse to start with an unusable origin list or key file, with a message naming it."""
    from fleetcast.auth.keys import read_public_key, read_publish_keys, read_secret
    from fleetcast.auth.origins import OriginPolicy

    OriginPolicy(auth.allowed_origins)
    if auth.jwt_secret_file:
        read_secret(auth.jwt_secret_file)
    if auth.jwt_public_key_file:
        read_public_key(auth.jwt_public_key_file)
    read_publish_keys(auth.publish_keys_dir, auth.publish_key)


def check_redis(broker: BrokerSettings) -> None:
    """Refuse a cluster mode without a Redis URL, or a seed list that is not one (the message names what is wrong;
    the URL itself may hold a password and is not repeated)."""
    if broker.redis_mode != "cluster":
        return
    if broker.redis_url is None:
        raise ValueError("--redis-mode cluster needs --redis-url with the cluster's seed nodes")
    seed_nodes(broker.redis_url)


def check_tracing() -> None:
    """Refuse to start with an ``OTEL_TRACES_EXPORTER`` fleetcast does not support, naming it."""
    import os

    from fleetcast.observability import tracing

    tracing.exporter_choice(os.environ)


def admin_token_for(admin: AdminSettings) -> tuple[str | None, Path | None]:
    """The admin token (None: no admin listener) and the file this process generated for it, if it did."""
    from fleetcast.auth import admin_token

    if not admin.port:
        return None, None
    if admin.token_file:
        return admin_token.read(admin.token_file), None
    path = admin_token.generated_path(admin.port)
    return admin_token.generate(path), path


def serve(settings: Settings, log_level: str, admin_token: str | None) -> None:
    import uvicorn

    from fleetcast.app import create_app
    from fleetcast.observability import tracing
    from fleetcast.pod import Pod
    from fleetcast.server import GatewayServer, listen, tune_gc
    from fleetcast.transports.uvicorn_http import bounded_http_protocol
    from fleetcast.transports.uvicorn_ws import FleetcastWebSocketProtocol

    # Both listeners are bound before anything starts, so a port in use stops the pod at once with its address.
    sockets = [listen(settings.server.host, settings.server.port)]
    if admin_token is not None:
        sockets.append(listen(settings.server.host, settings.admin.port))
    # Before the pod: its hub and publisher take the tracer (or None, tracing off) when they are made.
    tracing.setup_from_environment("fleetcast")
    pod = Pod(settings)
    config = uvicorn.Config(
        create_app(settings, pod, admin_token),
        host=settings.server.host,
        port=settings.server.port,
        http=bounded_http_protocol(pod),
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
    where = f"{settings.server.host}:{settings.server.port}"
    admin = f"admin port {settings.admin.port}" if admin_token is not None else "no admin port"
    logging.getLogger("fleetcast").info("serving on %s, %s", where, admin)
    tune_gc(settings.server.gc_young_threshold)
    try:
        GatewayServer(config, pod.drain).run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()
        tracing.shutdown()  # flush the spans still queued for export


def drain(admin_port: int, token_file: str | None, timeout: float) -> int:
    """Ask the local pod to drain and wait until it is done (or the process is gone): the preStop hook.

    It succeeds only on the pod's word. No token file, nothing listening on the admin port, a refusal, or a
    drain that outlives ``timeout`` each exit 1 with a message, so the kubelet's event for the hook says what
    went wrong.
    """
    import time

    import httpx

    from fleetcast.auth import admin_token

    base = f"http://127.0.0.1:{admin_port}"
    try:
        token = admin_token.read(token_file or admin_token.generated_path(admin_port))
    except admin_token.AdminTokenError as exc:
        print(f"cannot drain: {exc} (is a pod with --admin-port {admin_port} running here?)", file=sys.stderr)
        return 1
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base, headers=headers, timeout=5) as client:
        try:
            started = client.post("/internal/drain")
        except httpx.TransportError as exc:
            print(f"cannot drain: nothing answers on {base} ({str(exc) or type(exc).__name__})", file=sys.stderr)
            return 1
        if started.status_code != 202:
            print(f"drain refused: {started.status_code} {started.text}", file=sys.stderr)
            return 1
        try:
            while time.monotonic() < deadline:
                status = client.get("/internal/drain").json()
                if status["state"] == "drained":
                    print(f"drained: {status['closed']} sessions closed")
                    return 0
                time.sleep(0.5)
        except httpx.TransportError:
            # The drain was accepted with exit: the pod exits when done, which can come between two polls.
            print("drained: the pod stopped listening after accepting the drain")
            return 0
    print(f"drain still running after {timeout} s", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fleetcast", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_serve(subparsers)
    _add_drain(subparsers)
    channel_cli.add_channel_commands(subparsers)
    token_cli.add_token_command(subparsers)
    client_cli.add_commands(subparsers)
    args = parser.parse_args(argv)
    if args.command == "serve":
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if not 1 <= args.mux_max_channels <= _CONNECTION_MAX_CHANNELS:
            parser.error(f"--mux-max-channels must be 1 to {_CONNECTION_MAX_CHANNELS} (a connection's subscriptions)")
        if args.presence_lease_seconds < MIN_LEASE_SECONDS or args.presence_grace_seconds < 0:
            parser.error(
                f"--presence-lease-seconds must be at least {MIN_LEASE_SECONDS:g} (five heartbeats) and "
                "--presence-grace-seconds at least 0"
            )
        settings = settings_from(args)
        if settings.admin.port and settings.admin.port == settings.server.port:
            parser.error(f"--admin-port {settings.admin.port} is the public port: the admin port needs its own")
        try:
            Keys(settings.server.namespace, settings.server.gateway)  # both name Redis keys: refuse odd names
            check_redis(settings.broker)
            check_auth(settings.auth)
            check_tracing()
            token, generated = admin_token_for(settings.admin)  # last: nothing may fail after it makes a file
        except ValueError as exc:  # KeyFileError included: a bad key file is named, its content never shown
            parser.exit(2, f"{parser.prog}: error: {exc}\n")  # one line: the usage says nothing about a file
        try:
            serve(settings, args.log_level, token)
        finally:
            if generated is not None:
                generated.unlink(missing_ok=True)
    elif args.command == "drain":
        sys.exit(drain(args.admin_port, args.admin_token_file or None, args.timeout))
    elif args.command == "channel":
        sys.exit(channel_cli.run(args))
    elif args.command == "token":
        sys.exit(token_cli.run(args))
    elif args.command in ("publish", "tail"):
        sys.exit(client_cli.run(args))


if __name__ == "__main__":
    main()
