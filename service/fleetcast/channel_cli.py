"""``fleetcast channel ...``: channel policies in Redis for development, where no operator writes them.

``fleetcast channel set chat --max-events 500 --max-age 1h --slow-consumer dropOldest`` stores the policy of the family
``chat`` in the policies hash of one Gateway (``--namespace``, ``--gateway``, as the pods were started with;
:class:`fleetcast.contract.keys.Keys`) and announces it on that Gateway's change channel, exactly as the operator does
for a ``Channel`` resource, so running pods pick it up. ``set`` changes only the fields given and keeps the rest of the
stored policy (or the defaults). ``list`` prints what is stored; ``delete`` removes a family's policy. On a cluster the
operator owns these records and overwrites manual changes on its next reconcile.

All Redis access goes through :class:`fleetcast.broker.redis_fleet.RedisFleet`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from fleetcast.broker.redis_fleet import RedisFleet
from fleetcast.contract.policy import SLOW_CONSUMER_POLICIES, TRANSPORTS, ChannelPolicy, format_duration, parse_duration
from fleetcast.contract.redis_url import MODES
from fleetcast.core import channels
from fleetcast.errors import BrokerUnavailable


def add_channel_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``channel set|list|delete`` to the ``fleetcast`` command line; run them with :func:`run`."""
    channel = subparsers.add_parser("channel", help="channel policies in Redis (development; the operator owns them)")
    commands = channel.add_subparsers(dest="channel_command", required=True)

    def redis_flag(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--redis-url",
            default=os.environ.get("FLEETCAST_REDIS_URL"),
            required=os.environ.get("FLEETCAST_REDIS_URL") is None,
            help="the fleet's Redis (env FLEETCAST_REDIS_URL)",
        )
        parser.add_argument(
            "--redis-mode",
            choices=MODES,
            default=(os.environ.get("FLEETCAST_REDIS_MODE") or "standalone").strip().lower(),
            help="'standalone' Redis or 'cluster' (the URL then lists seed nodes) (env FLEETCAST_REDIS_MODE) "
            "(%(default)s)",
        )
        parser.add_argument(
            "--namespace",
            default=os.environ.get("FLEETCAST_NAMESPACE") or "default",
            help="the Gateway's namespace (env FLEETCAST_NAMESPACE) (%(default)s)",
        )
        parser.add_argument(
            "--gateway",
            default=os.environ.get("FLEETCAST_GATEWAY") or "default",
            help="the Gateway whose policies to change (env FLEETCAST_GATEWAY) (%(default)s)",
        )

    set_ = commands.add_parser("set", help="create or change one family's policy (only the fields given)")
    set_.add_argument("family", help="the channel family, e.g. chat (governs chat and chat:<suffix>)")
    set_.add_argument("--max-events", type=int, help="keep at least this many events for replay")
    set_.add_argument("--max-age", help="keep events at least this long: 90s, 15m, 1h30m, 7d; 'none' for no limit")
    set_.add_argument("--slow-consumer", choices=SLOW_CONSUMER_POLICIES, help="what to do with a full outbox")
    set_.add_argument("--buffer", type=int, help="outbox bound in events per subscriber")
    set_.add_argument("--conflate-by", help="with conflate: the key whose equal values replace each other")
    set_.add_argument("--transports", help=f"comma-separated subset of {','.join(TRANSPORTS)}")
    set_.add_argument("--max-message-bytes", type=int, help="largest event payload accepted")
    set_.add_argument("--publish-per-second", type=float, help="publish rate per channel; 0 for unlimited")
    set_.add_argument("--publish-from-clients", action=argparse.BooleanOptionalAction, help="WebSocket publishing")
    set_.add_argument("--anonymous", action=argparse.BooleanOptionalAction, help="subscribing without a token")
    set_.add_argument(
        "--user-scoped", action=argparse.BooleanOptionalAction, help="<family>:<sub> readable only by that user"
    )
    set_.add_argument(
        "--publish-anonymous", action=argparse.BooleanOptionalAction, help="publishing without credentials (demo)"
    )
    set_.add_argument(
        "--max-subscribers-per-pod", type=int, help="subscribers of one channel each pod admits; 0 for unlimited"
    )
    set_.add_argument("--idle-ttl", help="forget channels idle this long: 24h, 7d; 'none' to keep them forever")
    redis_flag(set_)

    list_ = commands.add_parser("list", help="print every stored policy")
    list_.add_argument("--json", action="store_true", help="print the stored JSON, one family per line")
    redis_flag(list_)

    delete = commands.add_parser("delete", help="remove one family's policy")
    delete.add_argument("family")
    redis_flag(delete)


def run(args: argparse.Namespace) -> int:
    """Run the parsed ``channel`` command; returns the process exit status."""
    try:
        return asyncio.run(_run(args))
    except (ValueError, BrokerUnavailable) as exc:
        print(f"fleetcast channel: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1


async def _run(args: argparse.Namespace) -> int:
    fleet = RedisFleet(
        args.redis_url, gateway=args.gateway, pod="fleetcast-cli", namespace=args.namespace, mode=args.redis_mode
    )
    try:
        if args.channel_command == "set":
            family = _family(args.family)
            current = (await fleet.policies()).get(family, ChannelPolicy())
            policy = ChannelPolicy.from_spec(_changed_spec(current.to_spec(), args))
            await fleet.set_policy(family, policy)
            print(f"{family}: {policy.to_json()}")
        elif args.channel_command == "delete":
            await fleet.delete_policy(_family(args.family))
        else:
            policies = await fleet.policies()
            if args.json:
                for family, policy in sorted(policies.items()):
                    print(json.dumps({"family": family, "spec": policy.to_spec()}, sort_keys=True))
            else:
                print(_table(policies))
    finally:
        await fleet.close()
    return 0


def _family(text: str) -> str:
    family = channels.validate(text)
    if family != text:
        raise ValueError(f"{text!r} is a channel, not a family: policies are per family ({family!r})")
    return family


def _changed_spec(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The stored spec with the flags given applied; ``ChannelPolicy.from_spec`` validates the result."""
    history, limits, slow = spec["history"], spec["limits"], spec["slowConsumer"]
    if args.max_events is not None:
        history["maxEvents"] = args.max_events
    if args.max_age is not None:
        if args.max_age.lower() == "none":
            history.pop("maxAge", None)
        else:
            history["maxAge"] = format_duration(parse_duration(args.max_age))
    if args.slow_consumer is not None:
        slow["policy"] = args.slow_consumer
    if args.buffer is not None:
        slow["buffer"] = args.buffer
    if args.conflate_by is not None:
        slow["conflateBy"] = args.conflate_by
    if args.transports is not None:
        spec["transports"] = [t.strip() for t in args.transports.split(",") if t.strip()]
    if args.max_message_bytes is not None:
        limits["maxMessageBytes"] = args.max_message_bytes
    if args.publish_per_second is not None:
        if args.publish_per_second == 0:
            limits.pop("publishPerSecond", None)
        else:
            limits["publishPerSecond"] = args.publish_per_second
    if args.publish_from_clients is not None:
        spec["publish"]["fromClients"] = args.publish_from_clients
    if args.anonymous is not None:
        spec["subscribe"]["anonymous"] = args.anonymous
    if args.user_scoped is not None:
        spec["subscribe"]["userScoped"] = args.user_scoped
    if args.publish_anonymous is not None:
        spec["publish"]["anonymous"] = args.publish_anonymous
    if args.max_subscribers_per_pod is not None:
        if args.max_subscribers_per_pod == 0:
            limits.pop("maxSubscribersPerPod", None)
        else:
            limits["maxSubscribersPerPod"] = args.max_subscribers_per_pod
    if args.idle_ttl is not None:
        history["idleTtl"] = None if args.idle_ttl.lower() == "none" else args.idle_ttl
    return spec


def _table(policies: dict[str, ChannelPolicy]) -> str:
    header = ("FAMILY", "MAX-EVENTS", "MAX-AGE", "TRANSPORTS", "SLOW-CONSUMER", "BUFFER", "MAX-BYTES", "PUBLISH/S")
    rows = [header]
    for family, p in sorted(policies.items()):
        rows.append(
            (
                family,
                "-" if p.history_max_events is None else str(p.history_max_events),
                "-" if p.history_max_age is None else f"{int(p.history_max_age)}s",
                ",".join(p.transports),
                p.slow_consumer,
                str(p.slow_consumer_buffer),
                str(p.max_message_bytes),
                "-" if p.publish_per_second is None else f"{p.publish_per_second:g}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)
