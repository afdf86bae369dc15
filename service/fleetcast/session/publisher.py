"""Publishing, shared by the HTTP API and WebSocket clients: the channel's rules (rate, type, size), encode once,
append. Who may publish was decided before (:mod:`fleetcast.session.access`), which also resolved the policy."""

from __future__ import annotations

from typing import Any

import orjson
from opentelemetry.trace import Tracer, use_span

from fleetcast.broker.base import Broker, Retention
from fleetcast.contract.policy import ChannelPolicy
from fleetcast.core.messages import DEFAULT_TYPE, valid_type
from fleetcast.errors import BadRequest, BrokerUnavailable, PayloadTooLarge, RateLimited
from fleetcast.observability import tracing
from fleetcast.session.ratelimit import ChannelRates


def retention_of(policy: ChannelPolicy) -> Retention:
    return Retention(
        max_events=policy.history_max_events,
        max_age_seconds=policy.history_max_age,
        idle_seconds=policy.history_idle_ttl,
    )


class Publisher:
    def __init__(self, broker: Broker, *, tracer: Tracer | None = None) -> None:
        self._broker = broker
        self._rates = ChannelRates()
        self._tracer = tracer
        """None when tracing is off: the caller's ``traceparent`` (if any) is stored as it came."""
        self.published = 0
        self.broker_errors = 0
        """Publishes that failed because the broker was unreachable, for metrics."""

    async def publish(
        self,
        channel: str,
        data: Any,
        type: str | None = None,
        *,
        policy: ChannelPolicy,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
    ) -> str:
        """Encode ``data`` once (compact JSON, one line) and append it under the channel's ``policy``; returns
        the event id."""
        if policy.publish_per_second is not None:
            wait = self._rates.take(channel, policy.publish_per_second)
            if wait > 0:
                raise RateLimited(
                    f"channel {channel!r} takes at most {policy.publish_per_second:g} events per second",
                    retry_after=wait,
                )
        type_ = DEFAULT_TYPE if type is None else type
        if not valid_type(type_):
            raise BadRequest("'type' must be a printable string of 1 to 64 characters")
        try:
            encoded = orjson.dumps(data)
        except TypeError as exc:
            raise BadRequest(f"'data' cannot be encoded as JSON: {exc}") from None
        if len(encoded) > policy.max_message_bytes:
            raise PayloadTooLarge(
                f"event data is {len(encoded)} bytes; channel {channel!r} accepts at most {policy.max_message_bytes}"
            )
        try:
            if self._tracer is None:
                event_id = await self._append(channel, encoded, type_, policy, idempotency_key, traceparent)
            else:
                # The producer span is a child of the publish request's span; its context is what the stream
                # stores, so every pod's delivery span links to it.
                span = tracing.start_producer(self._tracer, channel)
                with use_span(span, end_on_exit=True):
                    event_id = await self._append(
                        channel, encoded, type_, policy, idempotency_key, tracing.traceparent(span)
                    )
                    span.set_attribute("messaging.message.id", event_id)
        except BrokerUnavailable:
            self.broker_errors += 1
            raise
        self.published += 1
        return event_id

    async def _append(
        self,
        channel: str,
        encoded: bytes,
        type_: str,
        policy: ChannelPolicy,
        idempotency_key: str | None,
        traceparent: str | None,
    ) -> str:
        return await self._broker.publish(
            channel,
            encoded,
            type_,
            retention=retention_of(policy),
            idempotency_key=idempotency_key,
            traceparent=traceparent,
        )
