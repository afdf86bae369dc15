"""Acceptance 3 of issue 7: with tracing off (``OTEL_TRACES_EXPORTER=none``, or unset) the hot path makes no
span and does no context work; and a pod exports nothing."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

import httpx
import pytest
from opentelemetry import context, trace
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fleetcast.broker.base import Event
from fleetcast.client import SseClient
from fleetcast.hub.batch import Batch
from fleetcast.observability import tracing
from fleetcast.pod import Pod
from fleetcast.settings import Settings
from tests.observability.otlp import exporting_to, otlp_receiver
from tests.support.gateway import gateway

CHANNEL = "off:room"
EVENTS = 20


class Listener:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def deliver(self, batch: Batch) -> None:
        self.events.extend(batch.events)

    def lost(self, requested: str, earliest: str | None) -> None:
        raise AssertionError("no history is lost here")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts every span started by any tracer (SDK, no-op, proxy) and every context attach, in this process."""
    counted: Counter[str] = Counter()
    for owner in (SdkTracer, trace.NoOpTracer, trace.ProxyTracer):
        for method in ("start_span", "start_as_current_span"):
            original = getattr(owner, method)

            def counting(self: object, *args: object, _original: object = original, **kwargs: object) -> object:
                counted["spans"] += 1
                return _original(self, *args, **kwargs)  # type: ignore[operator]

            monkeypatch.setattr(owner, method, counting)
    attach = context.attach

    def counting_attach(ctx: context.Context) -> object:
        counted["attach"] += 1
        return attach(ctx)

    monkeypatch.setattr(context, "attach", counting_attach)
    return counted


async def publish_and_deliver(pod: Pod) -> Sequence[Event]:
    """The hot path on a real pod (embedded broker): publishes, the broker's batches, the hub's fan-out."""
    listener = Listener()
    await pod.start()
    try:
        await pod.hub.join(CHANNEL, listener)
        policy = pod.policies.resolve(CHANNEL)
        for n in range(EVENTS):
            await pod.publisher.publish(CHANNEL, {"n": n}, policy=policy)
        async with asyncio.timeout(5):
            while len(listener.events) < EVENTS:
                await asyncio.sleep(0.01)
    finally:
        await pod.close()
    return listener.events


@pytest.mark.parametrize("environ", [{"OTEL_TRACES_EXPORTER": "none"}, {}], ids=["none", "unset"])
async def test_tracing_off_makes_no_span_and_no_context_work(calls: Counter[str], environ: dict[str, str]) -> None:
    """Off by configuration (or by default): publishing and delivering 20 events starts no span and attaches no
    context, with any tracer the process might have."""
    tracer = tracing.setup_from_environment("fleetcast", environ)
    assert tracer is None
    events = await publish_and_deliver(Pod(Settings(), tracer=tracer))
    assert len(events) == EVENTS
    assert calls == Counter()


async def test_the_same_workload_traced_is_counted(calls: Counter[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The counter sees spans when tracing is on: one producer span per publish, consumer spans per batch, each
    made current once (so the test above would notice a span on the hot path)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        await publish_and_deliver(Pod(Settings(), tracer=provider.get_tracer("test")))
    finally:
        provider.shutdown()
    names = Counter(span.name for span in exporter.get_finished_spans())
    assert names[f"send {CHANNEL}"] == EVENTS
    assert 1 <= names[f"process {CHANNEL}"] <= EVENTS
    assert calls["spans"] == sum(names.values())
    assert calls["attach"] == sum(names.values())


async def test_a_pod_with_tracing_off_exports_nothing() -> None:
    """A pod with ``OTEL_TRACES_EXPORTER=none`` but an OTLP endpoint set sends the receiver no span, through a
    publish, a delivery and its shutdown (which would flush any queued span)."""
    with otlp_receiver() as receiver:
        env = {**exporting_to(receiver, "off"), "OTEL_TRACES_EXPORTER": "none"}
        with gateway(env=env) as pod:
            async with SseClient([pod.url], CHANNEL) as subscriber, httpx.AsyncClient(base_url=pod.url) as http:
                async with asyncio.timeout(10):
                    while (await http.get(f"/v1/channels/{CHANNEL}")).json()["subscribers"] != 1:
                        await asyncio.sleep(0.05)
                response = await http.post(f"/v1/channels/{CHANNEL}/events", json={"data": 1})
                assert response.status_code == 201
                async with asyncio.timeout(10):
                    assert (await anext(aiter(subscriber))).id == response.json()["id"]
            pod.stop()
        assert receiver.snapshot() == []
