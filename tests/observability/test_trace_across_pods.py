"""Acceptance 1 of issue 7: one trace from a publish on one pod to the delivery on another, through Redis."""

from __future__ import annotations

import asyncio

import httpx

from fleetcast.client import SseClient
from tests.observability.otlp import ReceivedSpan, exporting_to, otlp_receiver
from tests.support.gateway import gateway
from tests.support.processes import redis_server

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"
SERVER, PRODUCER, CONSUMER = 2, 4, 5  # Span.SpanKind values in the OTLP protobuf


def named(spans: list[ReceivedSpan], service: str, name: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.service == service and s.name == name]


async def test_publish_on_pod_a_links_the_delivery_span_on_pod_b() -> None:
    """A publish on pod A (joining the caller's trace) makes a producer span there, and pod B, which has the
    subscriber, makes a ``process`` consumer span without parent whose link is that producer span's context."""
    channel = "trace:room-1"
    with redis_server() as redis, otlp_receiver() as receiver:
        args = ("--redis-url", redis.url)
        with (
            gateway(*args, "--pod-name", "a", env=exporting_to(receiver, "pod-a")) as pod_a,
            gateway(*args, "--pod-name", "b", env=exporting_to(receiver, "pod-b")) as pod_b,
        ):
            async with SseClient([pod_b.url], channel) as subscriber:
                async with asyncio.timeout(10), httpx.AsyncClient(base_url=pod_b.url) as http:
                    while (await http.get(f"/v1/channels/{channel}")).json()["subscribers"] != 1:
                        await asyncio.sleep(0.05)
                async with httpx.AsyncClient(base_url=pod_a.url) as http:
                    response = await http.post(
                        f"/v1/channels/{channel}/events", json={"data": {"n": 1}}, headers={"traceparent": TRACEPARENT}
                    )
                assert response.status_code == 201, response.text
                event_id = response.json()["id"]
                async with asyncio.timeout(10):
                    event = await anext(aiter(subscriber))
                assert event.id == event_id

                spans = await asyncio.to_thread(
                    receiver.wait_for,
                    lambda got: bool(
                        named(got, "pod-b", f"process {channel}")
                        and named(got, "pod-a", f"send {channel}")
                        and named(got, "pod-a", "POST /v1/channels/{channel}/events")
                    ),
                )

    (request,) = named(spans, "pod-a", "POST /v1/channels/{channel}/events")
    (producer,) = named(spans, "pod-a", f"send {channel}")
    (consumer,) = named(spans, "pod-b", f"process {channel}")
    # The publish request joins the caller's trace; the producer span is its child.
    assert request.span.trace_id.hex() == CLIENT_TRACE
    assert request.span.kind == SERVER
    assert (producer.span.kind, producer.span.trace_id, producer.span.parent_span_id) == (
        PRODUCER,
        request.span.trace_id,
        request.span.span_id,
    )
    assert producer.attribute("messaging.message.id") == event_id
    # The delivery on the other pod: no parent, one link to the producer span.
    assert consumer.span.kind == CONSUMER
    assert consumer.span.parent_span_id == b""
    assert [(link.trace_id, link.span_id) for link in consumer.span.links] == [
        (producer.span.trace_id, producer.span.span_id)
    ]
    assert consumer.attribute("messaging.system") == "fleetcast"
    assert consumer.attribute("messaging.destination.name") == channel
    assert consumer.attribute("messaging.message.id") == event_id
    assert consumer.attribute("messaging.fleetcast.local_subscribers") == 1
    # Pod A had no subscriber: it delivered nothing, so it made no consumer span.
    assert not named(spans, "pod-a", f"process {channel}")
