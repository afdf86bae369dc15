"""A Channel's policy in the Redis of every Gateway of its namespace, and its status from there.

A Channel governs its family on every Gateway of its own namespace (no selector: a namespace is the unit of trust
and of configuration): the operator writes the policy into each Gateway's own policy hash, in that Gateway's Redis,
and announces the change on that Gateway's change channel (:class:`fleetcast.contract.keys.Keys`). The status timer
calls :func:`sync_channel` again, which rewrites the policy only when Redis lost or changed it (a Redis restart
without persistence, a new Gateway), so the pods converge without anybody re-applying the Channel."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetcast.contract.heartbeat import Heartbeat
from fleetcast.contract.keys import Keys
from fleetcast.contract.policy import ChannelPolicy
from fleetcast_operator.autoscaler.signals import read_fleet
from fleetcast_operator.channels.status import Sample, StreamStats, channel_status, events_per_second
from fleetcast_operator.errors import InvalidSpec, TemporaryFailure
from fleetcast_operator.gateway.spec import RedisSource, redis_source_of
from fleetcast_operator.runtime import Fleet, Runtime


@dataclass(frozen=True, slots=True)
class GatewayRef:
    """A Gateway as a Channel needs it: its name (heartbeat key) and where its Redis is."""

    name: str
    redis: RedisSource


@dataclass
class ChannelMemory:
    samples: dict[str, Sample] = field(default_factory=dict)
    """Redis URL -> the last ``entries-added`` sample, for events/s."""


@dataclass(frozen=True, slots=True)
class SyncResult:
    ready: bool
    reason: str
    message: str
    status: dict[str, Any] = field(default_factory=dict)


async def _fleets(rt: Runtime, namespace: str, gateways: Sequence[GatewayRef]) -> list[tuple[GatewayRef, Fleet]]:
    pairs: list[tuple[GatewayRef, Fleet]] = []
    for ref in gateways:
        pairs.append((ref, await rt.fleet(namespace, ref.redis)))
    return pairs


async def sync_channel(
    rt: Runtime,
    namespace: str,
    family: str,
    policy: ChannelPolicy,
    gateways: Sequence[GatewayRef],
    memory: ChannelMemory | None = None,
) -> SyncResult:
    """Write the policy where it belongs; with ``memory``, also compute the status."""
    if not gateways:
        return SyncResult(False, "NoGateway", f"no Gateway in namespace {namespace!r} to serve this family yet")
    try:
        pairs = await _fleets(rt, namespace, gateways)
        for ref, fleet in pairs:
            await fleet.put_policy(Keys(namespace, ref.name), family, policy.to_json())
        if memory is None:
            return SyncResult(True, "PolicyStored", f"policy stored for {len(pairs)} gateway(s)")
        heartbeats: list[Heartbeat] = []
        for ref, fleet in pairs:
            raw = await fleet.heartbeats(Keys(namespace, ref.name))
            heartbeats.extend(read_fleet(raw, gateway=ref.name, now=rt.wall_clock()).fresh)
        stats = [await fleet.stream_stats(Keys(namespace, ref.name), family) for ref, fleet in pairs]
    except (TemporaryFailure, InvalidSpec) as exc:
        return SyncResult(False, "RedisUnavailable", str(exc))

    total = StreamStats(
        streams=sum(s.streams for s in stats),
        length=sum(s.length for s in stats),
        entries_added=sum(s.entries_added for s in stats),
        latest_id=max((s.latest_id for s in stats if s.latest_id), default=None, key=_id_key),
        truncated=any(s.truncated for s in stats),
    )
    sample = Sample(rt.monotonic(), total.entries_added)
    rate = events_per_second(memory.samples.get("total"), sample)
    memory.samples["total"] = sample
    return SyncResult(True, "PolicyStored", "policy stored", channel_status(family, heartbeats, total, rate))


async def remove_channel(rt: Runtime, namespace: str, family: str, gateways: Sequence[GatewayRef]) -> None:
    """Remove the policy everywhere it was written; the pods fall back to the undeclared default."""
    for ref, fleet in await _fleets(rt, namespace, gateways):
        await fleet.drop_policy(Keys(namespace, ref.name), family)


def gateway_refs(entries: Sequence[Mapping[str, Any]]) -> list[GatewayRef]:
    """Gateways of a namespace (from the operator's index) with a usable Redis source, sorted by name."""
    refs: list[GatewayRef] = []
    for entry in entries:
        redis = entry.get("redis") or {}
        secret = redis.get("secretRef") or {}
        if redis.get("url"):
            refs.append(GatewayRef(str(entry["name"]), RedisSource(url=str(redis["url"]))))
        elif secret.get("name"):
            source = redis_source_of(secret)
            refs.append(GatewayRef(str(entry["name"]), source))
    return sorted(refs, key=lambda ref: ref.name)


def _id_key(text: str | None) -> tuple[int, int]:
    ms, _, seq = (text or "0-0").partition("-")
    return int(ms), int(seq or 0)
