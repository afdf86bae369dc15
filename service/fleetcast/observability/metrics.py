"""Metrics: the pod's own counters, read at scrape time and served in Prometheus text.

The hot path keeps plain integers it has anyway (events published and delivered, drops, slow disconnects) and
one histogram of the publish-to-write lag, observed once per delivered batch. Nothing calls prometheus-client per
event: :class:`GatewayCollector` asks the pod for a :class:`GatewaySnapshot` when Prometheus scrapes, and turns
it into metric families. This module knows nothing of the pod; the pod builds the snapshot.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

LAG_BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
"""Upper bounds of the lag histogram, in milliseconds (served in seconds, as Prometheus wants)."""
DRAIN_STATES = ("serving", "draining", "drained")


class LagHistogram:
    """Publish-to-write lag: ``now - publish time`` when a pod writes a batch for its subscribers.

    The publish time is the millisecond part of the event id (Redis stamps it when it appends), so the lag spans
    the append, the notification, the pod's read and the fan-out; across hosts it includes their clock skew
    (a negative lag counts as 0). One observation per batch, of its oldest event: the worst lag in it.
    """

    __slots__ = ("counts", "total_ms")

    def __init__(self) -> None:
        self.counts = [0] * (len(LAG_BUCKETS_MS) + 1)
        self.total_ms = 0

    def observe_id(self, event_id: str, now_ms: int) -> None:
        lag = now_ms - int(event_id.partition("-")[0])
        if lag < 0:
            lag = 0
        self.counts[bisect.bisect_left(LAG_BUCKETS_MS, lag)] += 1
        self.total_ms += lag

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs in seconds, ending with ``+Inf``."""
        pairs: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(LAG_BUCKETS_MS, self.counts, strict=False):
            running += count
            pairs.append((repr(bound / 1000), float(running)))
        pairs.append(("+Inf", float(running + self.counts[-1])))
        return pairs


class MultiplexedStreams:
    """Multiplexed SSE streams (``GET /v1/events``): how many are open, and how many channels each one carries
    (a histogram observed once per stream, when it opens)."""

    __slots__ = ("channels", "counts", "open")

    BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

    def __init__(self) -> None:
        self.open = 0
        self.counts = [0] * (len(self.BUCKETS) + 1)
        self.channels = 0
        """Channels of every stream opened so far (the histogram's sum)."""

    def opened(self, channels: int) -> None:
        self.open += 1
        self.counts[bisect.bisect_left(self.BUCKETS, channels)] += 1
        self.channels += channels

    def closed(self) -> None:
        self.open -= 1

    def buckets(self) -> list[tuple[str, float]]:
        pairs: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.BUCKETS, self.counts, strict=False):
            running += count
            pairs.append((str(bound), float(running)))
        pairs.append(("+Inf", float(running + self.counts[-1])))
        return pairs


@dataclass(frozen=True, slots=True)
class GatewaySnapshot:
    """What one pod reports at a scrape."""

    connections: Mapping[str, int]
    """Open client connections by transport (``ws``, ``sse``)."""
    subscriptions: Mapping[str, int]
    """Local subscriptions by channel family."""
    buffered_bytes: int
    published: int
    delivered: int
    lag: LagHistogram
    dropped: Mapping[str, int]
    slow_disconnects: int
    drain_state: str
    drain_remaining: int
    drain_closed: int
    broker_ready: bool
    broker_errors: Mapping[str, int]
    broker_channels: int | None = None
    """Channels the embedded broker holds in this process (None on Redis, where streams expire on their own)."""
    broker_shards: Mapping[str, bool] | None = None
    """Redis Cluster: each master (``host:port``) and whether this pod reaches it; None elsewhere."""
    multiplexed: MultiplexedStreams | None = None
    """Multiplexed SSE streams; None reports none."""
    shed_remaining: int = 0
    shed_closed: int = 0


class GatewayCollector(Collector):
    """A prometheus-client collector over a pod's :class:`GatewaySnapshot`."""

    def __init__(self, snapshot: Callable[[], GatewaySnapshot]) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterable[Metric]:
        return ()  # no description: registering must not read the pod

    def collect(self) -> Iterable[Metric]:
        s = self._snapshot()
        yield _labelled(
            GaugeMetricFamily, "fleetcast_connections", "Open client connections.", "transport", s.connections
        )
        yield _labelled(
            GaugeMetricFamily, "fleetcast_subscriptions", "Local channel subscriptions.", "family", s.subscriptions
        )
        yield GaugeMetricFamily(
            "fleetcast_buffered_bytes", "Bytes written for clients that they have not taken yet.", s.buffered_bytes
        )
        yield CounterMetricFamily("fleetcast_events_published", "Events this pod appended to the broker.", s.published)
        yield CounterMetricFamily(
            "fleetcast_events_delivered", "Events this pod wrote for subscribers (one per subscriber).", s.delivered
        )
        yield HistogramMetricFamily(
            "fleetcast_publish_to_write_lag_seconds",
            "Time from an event's publish (its id) to its write for local subscribers, once per batch.",
            buckets=s.lag.buckets(),
            sum_value=s.lag.total_ms / 1000,
        )
        yield _labelled(
            CounterMetricFamily,
            "fleetcast_events_dropped",
            "Events slow subscribers never got, by slow-consumer policy.",
            "policy",
            s.dropped,
        )
        yield CounterMetricFamily(
            "fleetcast_slow_consumer_disconnects", "Sessions closed as slow consumers (4108).", s.slow_disconnects
        )
        state = GaugeMetricFamily("fleetcast_drain_state", "1 for the pod's drain state.", labels=["state"])
        for name in DRAIN_STATES:
            state.add_metric([name], 1.0 if s.drain_state == name else 0.0)
        yield state
        yield GaugeMetricFamily(
            "fleetcast_drain_remaining_sessions", "Sessions a running drain has still to close.", s.drain_remaining
        )
        yield CounterMetricFamily("fleetcast_drain_closed_sessions", "Sessions closed by drains.", s.drain_closed)
        yield GaugeMetricFamily(
            "fleetcast_shed_remaining_sessions",
            "Sessions a running shed (rebalance) has still to close.",
            s.shed_remaining,
        )
        yield CounterMetricFamily(
            "fleetcast_shed_closed_sessions", "Sessions closed by sheds (rebalance), told to reconnect.", s.shed_closed
        )
        yield GaugeMetricFamily("fleetcast_broker_ready", "1 while the broker (Redis) is reachable.", s.broker_ready)
        yield _labelled(
            CounterMetricFamily,
            "fleetcast_broker_errors",
            "Broker calls that failed because the broker was unreachable, by operation.",
            "operation",
            s.broker_errors,
        )
        if s.broker_shards is not None:
            yield _labelled(
                GaugeMetricFamily,
                "fleetcast_redis_shard_up",
                "Redis Cluster: 1 while this pod's live connection to the master is up, by master (host:port).",
                "shard",
                {shard: int(up) for shard, up in s.broker_shards.items()},
            )
        if s.broker_channels is not None:
            yield GaugeMetricFamily(
                "fleetcast_broker_channels", "Channels the embedded broker holds in memory.", s.broker_channels
            )
        multiplexed = s.multiplexed if s.multiplexed is not None else MultiplexedStreams()
        yield GaugeMetricFamily(
            "fleetcast_multiplexed_streams",
            "Open SSE streams that carry several channels (GET /v1/events).",
            multiplexed.open,
        )
        yield HistogramMetricFamily(
            "fleetcast_multiplexed_stream_channels",
            "Channels per multiplexed SSE stream, observed when each stream opens.",
            buckets=multiplexed.buckets(),
            sum_value=multiplexed.channels,
        )


def _labelled(
    kind: type[GaugeMetricFamily] | type[CounterMetricFamily],
    name: str,
    documentation: str,
    label: str,
    values: Mapping[str, int],
) -> Metric:
    family = kind(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], float(value))
    return family
