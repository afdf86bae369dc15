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
from fleetcast.settings import AdminSettings, BrokerSettings, Settings, add_options, env, env_name, settings_from

_WS_FRAME_OVERHEAD = 64 * 1024


def _option(
    parser: argparse.ArgumentParser, name: str, kind: Callable[[str], object], default: object, help: str
) -> None:
    """``--<name>`` of a command other than ``serve``, defaulting to ``FLEETCAST_<NAME>``, else ``default``."""
    raw = env(name)
    value = default
    if raw is not None and raw != "":
        try:
            value = kind(raw)
        except ValueError:
            parser.error(f"{env_name(name)}={raw!r} is not a valid {kind.__name__}")
    parser.add_argument(f"--{name}", type=kind, default=value, help=f"{help} (%(default)s)")


def _add_serve(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subparsers.add_parser("serve", help="run a gateway pod (embedded broker unless --redis-url is given)")
    add_options(serve)  # every field of the settings, from the one table in fleetcast.settings
    _option(serve, "log-level", str, "info", "log level")


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
    pod = Pod(settings, tracer=tracing.setup_from_environment("fleetcast"))  # the tracer, or None: off
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
        settings = settings_from(args)
        if settings.broker.presence_lease_seconds < MIN_LEASE_SECONDS or settings.broker.presence_grace_seconds < 0:
            parser.error(
                f"--presence-lease-seconds must be at least {MIN_LEASE_SECONDS:g} (five heartbeats) and "
                "--presence-grace-seconds at least 0"
            )
        if not 1 <= settings.limits.mux_max_channels <= settings.session.max_channels:
            parser.error(f"--mux-max-channels must be 1 to {settings.session.max_channels} (--max-channels)")
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
