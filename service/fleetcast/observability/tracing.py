"""Tracing: set up from the standard ``OTEL_*`` variables, and the few span shapes fleetcast makes.

Configuration is only the OpenTelemetry environment (docs/observability.md):

* ``OTEL_TRACES_EXPORTER``: ``otlp`` (gRPC, to ``OTEL_EXPORTER_OTLP_ENDPOINT``), ``console``, or ``none``.
  **Unset means none**: a pod that nobody configured for tracing makes no spans at all.
* ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER(_ARG)``, ``OTEL_BSP_*`` and the
  ``OTEL_EXPORTER_OTLP_*`` options are read by the SDK itself.

Off must cost nothing on the hot path, so this module does not hand out a no-op tracer:
:func:`setup_from_environment` returns None when tracing is off, the pod passes that tracer (or None) to every part
that traces, and the hot paths (the hub's fan-out, publishing) test it once and skip every span, context and
traceparent operation. Only rare paths (a slow consumer, a drain) call :func:`add_event`, which returns at once
when given None.

The span shapes follow the OpenTelemetry messaging conventions: a PRODUCER span ``send <channel>`` around the
append, whose context is the W3C ``traceparent`` stored with the event; a CONSUMER span ``process <channel>``
per batch a pod fans out, with no parent and a link to the producer span of each event in the batch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, TraceFlags, Tracer
from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

log = logging.getLogger(__name__)

SYSTEM = "fleetcast"
"""``messaging.system`` of fleetcast's spans: the messaging system clients see is fleetcast, not Redis."""
MAX_LINKS = 128
"""Links per ``process`` span (the SDK's default limit); a larger batch links its first events only."""
_INSTRUMENTATION = "fleetcast"
_EXPORTERS = ("otlp", "console", "none")

_provider: SdkTracerProvider | None = None
"""The provider start-up installed, kept only to flush it at exit (:func:`shutdown`)."""


def exporter_choice(environ: Mapping[str, str]) -> str:
    """The exporter ``OTEL_TRACES_EXPORTER`` names: ``otlp``, ``console`` or ``none`` (unset: ``none``)."""
    choice = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() or "none"
    if choice not in _EXPORTERS:
        raise ValueError(f"OTEL_TRACES_EXPORTER={choice!r}: fleetcast supports {', '.join(_EXPORTERS)}")
    return choice


def setup_from_environment(default_service_name: str, environ: Mapping[str, str] | None = None) -> Tracer | None:
    """Install a tracer provider as the environment says and return fleetcast's tracer, or None when tracing is
    off. Call once, at start-up, and pass the answer to the parts that trace (the pod hands it on): nothing
    reads a tracer from a global, so the order of set-up cannot turn tracing off by accident."""
    global _provider
    env = os.environ if environ is None else environ
    choice = exporter_choice(env)
    if choice == "none":
        _provider = None
        return None
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the default name.
    resource = Resource.create({"service.name": default_service_name}).merge(OTELResourceDetector().detect())
    provider = TracerProvider(resource=resource)
    exporter: SpanExporter
    if choice == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        exporter = ConsoleSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    log.info("tracing on: %s exporter, service %s", choice, resource.attributes.get("service.name"))
    return provider.get_tracer(_INSTRUMENTATION)


def shutdown() -> None:
    """Flush and stop the exporter (at process exit); nothing when tracing is off."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
    _provider = None


def traceparent(span: Span) -> str:
    """The W3C ``traceparent`` of ``span``: what the stream stores with the event."""
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def parse_traceparent(value: str | None) -> SpanContext | None:
    """The remote span context a stored ``traceparent`` names; None if absent or malformed."""
    if not value or len(value) != 55:
        return None
    version, trace_id, span_id, flags = value.split("-") if value.count("-") == 3 else ("", "", "", "")
    if version != "00" or len(trace_id) != 32 or len(span_id) != 16 or len(flags) != 2:
        return None
    try:
        ctx = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(int(flags, 16)))
    except ValueError:
        return None
    return ctx if ctx.is_valid else None


def start_producer(tracer: Tracer, channel: str) -> Span:
    """The PRODUCER span ``send <channel>``, child of the current span (the publish request)."""
    return tracer.start_span(
        f"send {channel}",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": channel,
        },
    )


_NO_PARENT = Context()


class _Traced(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def traceparent(self) -> str | None: ...


def start_consumer(tracer: Tracer, channel: str, events: Sequence[_Traced], subscribers: int) -> Span:
    """The CONSUMER span ``process <channel>`` of one delivered batch: no parent, a link per producer span."""
    links = []
    for event in events[:MAX_LINKS]:
        linked = parse_traceparent(event.traceparent)
        if linked is not None:
            links.append(Link(linked))
    attributes: dict[str, AttributeValue] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": channel,
        "messaging.fleetcast.local_subscribers": subscribers,
    }
    if len(events) == 1:
        attributes["messaging.message.id"] = events[0].id
    else:
        attributes["messaging.batch.message_count"] = len(events)
    return tracer.start_span(
        f"process {channel}", context=_NO_PARENT, kind=SpanKind.CONSUMER, attributes=attributes, links=links
    )


def add_event(tracer: Tracer | None, name: str, attributes: Mapping[str, AttributeValue], *, span_name: str) -> None:
    """Record a rare action (slow consumer, drop) as a span event: on the current span when one records (a
    delivery's ``process`` span), else on a short span ``span_name`` of its own. Nothing when tracing is off."""
    if tracer is None:
        return
    current = trace.get_current_span()
    if current.is_recording():
        current.add_event(name, attributes)
        return
    with tracer.start_as_current_span(span_name, kind=SpanKind.INTERNAL) as span:
        span.add_event(name, attributes)
