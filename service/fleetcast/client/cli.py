"""``fleetcast publish`` and ``fleetcast tail``: a person's (or a shell script's) way into a running gateway.

``publish`` sends one event over HTTP (``POST /v1/channels/{channel}/events``) and prints its id. ``tail``
subscribes with :class:`~fleetcast.client.WsClient` (or :class:`~fleetcast.client.SseClient` with ``--sse``) and
prints every event as one JSON line ``{"channel", "id", "type", "data"}``; a gap signal is a line of its own,
``{"channel", "gap": {"requested", "earliest"}}``. The client resumes from the last id printed after every
reconnect, so a pod restart or a drain costs the reader nothing; what it did goes to stderr, stdout stays JSON.

Both take ``--url`` (``FLEETCAST_URL``, default ``http://127.0.0.1:8000``) and ``--token`` (``FLEETCAST_TOKEN``);
``publish`` also ``--key`` (``FLEETCAST_PUBLISH_KEY``). Exit statuses say what to do next (:data:`EXIT`).

This module uses only the client and ``httpx``: it ships in the client distribution too (``fleetcast-client``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from fleetcast import __version__
from fleetcast.client.events import Event, Refused
from fleetcast.client.sse import SseClient
from fleetcast.client.ws import WsClient
from fleetcast.core import channels, ids

DEFAULT_URL = "http://127.0.0.1:8000"
PUBLISH_TIMEOUT = 10.0
"""Seconds one publish may take, connecting included."""

EXIT = {"ok": 0, "failed": 1, "bad_input": 2, "not_allowed": 3, "try_later": 4, "unreachable": 5}
"""Exit statuses: 2 the request cannot succeed as written (usage, 400, 404, 413, 415); 3 the credentials do not
allow it (401, 403); 4 the gateway is busy or degraded, the same command may succeed later (429, 503); 5 nothing
answered at ``--url``; 1 anything else."""

_HINTS = {
    401: "give an API key (--key or FLEETCAST_PUBLISH_KEY) or a token (--token or FLEETCAST_TOKEN)",
    403: "the key or token given does not allow this channel",
    404: "the channel's family is not declared on this gateway",
    413: "the event is larger than the channel's maxMessageBytes",
    429: "the channel's publish rate is exceeded",
    503: "the gateway cannot reach its broker",
}

_CLIENT_STOPPED = "fleetcast client stopped: %s"
"""The client's own log line when it stops; ``tail`` reports the reason itself."""


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``publish`` and ``tail`` to a command line; run them with :func:`run`."""
    epilog = (
        "exit status: 0 done, 2 bad input (400/404/413/415), 3 not allowed (401/403), "
        "4 try later (429/503), 5 gateway unreachable, 1 anything else"
    )
    publish = subparsers.add_parser("publish", help="publish one event and print its id", epilog=epilog)
    publish.add_argument("channel", help="e.g. chat:room-1")
    publish.add_argument("json", help='the event\'s data as JSON, e.g. \'{"text": "hi"}\'; - reads it from stdin')
    publish.add_argument("--type", help="the event type (the server's default: message)")
    publish.add_argument("--idempotency-key", help="a retry with the same key returns the first id, publishes nothing")
    _env_option(publish, "--key", "FLEETCAST_PUBLISH_KEY", "API key to publish with")
    _common(publish)

    tail = subparsers.add_parser(
        "tail", help="print a channel's events as JSON lines, resuming after reconnects", epilog=epilog
    )
    tail.add_argument("channel", help="e.g. chat:room-1")
    tail.add_argument("--since", help="start after this event id (0-0: all retained history); default: from now")
    transport = tail.add_mutually_exclusive_group()
    transport.add_argument("--ws", dest="transport", action="store_const", const="ws", help="WebSocket (default)")
    transport.add_argument("--sse", dest="transport", action="store_const", const="sse", help="Server-Sent Events")
    tail.set_defaults(transport="ws")
    _common(tail)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("FLEETCAST_URL") or DEFAULT_URL,
        help="the gateway's base URL (env FLEETCAST_URL; %(default)s)",
    )
    _env_option(parser, "--token", "FLEETCAST_TOKEN", "token (JWT) to authenticate with")


def _env_option(parser: argparse.ArgumentParser, flag: str, variable: str, help: str) -> None:
    # The default is never shown in --help: it is a secret.
    parser.add_argument(flag, default=os.environ.get(variable) or None, help=f"{help} (env {variable})")


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``publish`` or ``tail``; returns the exit status (130 for a Ctrl-C during a publish)."""
    try:
        return publish(args) if args.command == "publish" else tail(args)
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> None:
    """``fleetcast-client``: ``publish`` and ``tail`` where only the client distribution is installed."""
    parser = argparse.ArgumentParser(prog="fleetcast-client", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_commands(parser.add_subparsers(dest="command", required=True))
    sys.exit(run(parser.parse_args(argv)))


# publish


def publish(args: argparse.Namespace) -> int:
    try:
        channels.validate(args.channel)
    except ValueError as exc:
        return _fail("bad_input", str(exc))
    try:
        data = json.loads(sys.stdin.read() if args.json == "-" else args.json)
    except ValueError as exc:  # json.JSONDecodeError
        return _fail("bad_input", f"the event's data is not JSON: {exc} (quote it for the shell: '{{\"a\": 1}}')")
    if args.key and args.token:
        return _fail("bad_input", "give --key or --token, not both")
    body: dict[str, Any] = {"data": data}
    if args.type is not None:
        body["type"] = args.type
    headers = {"Content-Type": "application/json"}
    if args.key or args.token:
        headers["Authorization"] = f"Bearer {args.key or args.token}"
    if args.idempotency_key:
        headers["Idempotency-Key"] = args.idempotency_key
    url = f"{args.url.rstrip('/')}/v1/channels/{quote(args.channel, safe=':')}/events"
    try:
        response = httpx.post(url, content=json.dumps(body), headers=headers, timeout=PUBLISH_TIMEOUT)
    except httpx.TransportError as exc:
        return _fail("unreachable", f"cannot reach {args.url} ({_transport_error(exc)}); is a gateway running "
                     "there? (--url or FLEETCAST_URL)")  # fmt: skip
    if response.status_code in (200, 201):
        print(response.json()["id"])
        return EXIT["ok"]
    return _refused(response, args.channel)


def _refused(response: httpx.Response, channel: str) -> int:
    status = response.status_code
    code, message = "", response.text[:300].strip()
    with contextlib.suppress(ValueError, AttributeError):
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    text = f"{status}{' ' + code if code else ''}: {message}"
    hint = _HINTS.get(status)
    if hint:
        text += f" ({hint})"
    retry_after = response.headers.get("retry-after")
    if retry_after:
        text += f"; retry after {retry_after} s"
    if status in (401, 403):
        kind = "not_allowed"
    elif status in (429, 503):
        kind = "try_later"
    elif 400 <= status < 500:
        kind = "bad_input"
    else:
        kind = "failed"
    return _fail(kind, f"{channel}: {text}")


def _transport_error(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused" if "refused" in str(exc).lower() else f"cannot connect: {exc}"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {PUBLISH_TIMEOUT:g} s"
    return str(exc) or type(exc).__name__


def _fail(kind: str, message: str) -> int:
    print(f"fleetcast: {message}", file=sys.stderr)
    return EXIT[kind]


# tail


def tail(args: argparse.Namespace) -> int:
    try:
        channels.validate(args.channel)
        if args.since is not None:
            ids.parse(args.since)
    except ValueError as exc:
        return _fail("bad_input", str(exc))
    # What the client does (connecting, backing off, resuming) is worth seeing while waiting; stdout is the data.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("fleetcast: %(message)s"))
    handler.addFilter(lambda record: record.msg != _CLIENT_STOPPED)  # said once, with a hint, by _tail
    client_log = logging.getLogger("fleetcast.client")
    client_log.addHandler(handler)
    client_log.setLevel(logging.INFO)
    try:
        return asyncio.run(_tail(args))
    finally:
        client_log.removeHandler(handler)


class _Printer:
    """Writes each event as one JSON line, flushed at once (a pipe's reader sees it now, not at exit)."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop

    def event(self, event: Event) -> None:
        self._line({"channel": event.channel, "id": event.id, "type": event.type, "data": event.data})

    def gap(self, channel: str, requested: str, earliest: str | None) -> None:
        self._line({"channel": channel, "gap": {"requested": requested, "earliest": earliest}})

    def _line(self, value: dict[str, Any]) -> None:
        try:
            sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader went away (`fleetcast tail ... | head -3`): stop quietly; nothing is left to print to.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            self.stop.set()


async def _tail(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        # Where the loop cannot take signals (Windows), Ctrl-C arrives as KeyboardInterrupt: see run().
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    printer = _Printer(stop)
    callbacks = {"on_event": printer.event, "on_gap": printer.gap, "token": args.token}
    client: WsClient | SseClient
    if args.transport == "sse":
        client = SseClient(args.url, args.channel, since=args.since, **callbacks)
    else:
        client = WsClient(_ws_url(args.url), {args.channel: args.since}, **callbacks)
    try:
        async with client:
            stopped = asyncio.create_task(stop.wait())
            closed = asyncio.create_task(client.wait_closed())
            try:
                await asyncio.wait({stopped, closed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (stopped, closed):
                    task.cancel()
                await asyncio.gather(stopped, closed, return_exceptions=True)
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
    failure = client.failure
    if isinstance(failure, Refused):
        if _not_allowed(failure):
            hint = "the token given does not allow it" if args.token else "give a token: --token or FLEETCAST_TOKEN"
            return _fail("not_allowed", f"{args.channel}: {failure} ({hint})")
        return _fail("bad_input", f"{args.channel}: {failure}")
    if failure is not None:
        return _fail("failed", f"{args.channel}: {failure}")
    return EXIT["ok"]


def _not_allowed(refused: Refused) -> bool:
    """A refusal about credentials (HTTP 401/403, close 4001/4003, a subscribe refused as such)."""
    return (
        refused.http_status in (401, 403)
        or refused.close_code in (4001, 4003)
        or refused.error_code in ("unauthorized", "forbidden", "invalid_token", "token_expired")
    )


def _ws_url(base: str) -> str:
    """``http(s)://host[:port][/prefix]`` -> ``ws(s)://host[:port][/prefix]/v1/ws``."""
    base = base.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base.removeprefix("https://")
    elif base.startswith("http://"):
        base = "ws://" + base.removeprefix("http://")
    return base if base.endswith("/v1/ws") else f"{base}/v1/ws"
