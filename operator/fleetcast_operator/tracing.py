"""The operator's spans: reconcile, autoscale decisions and drains, set up from the standard ``OTEL_*`` variables.

The same rules as the gateway (docs/observability.md): ``OTEL_TRACES_EXPORTER`` = ``otlp`` | ``console`` |
``none``, unset meaning none; the SDK reads the rest (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_EXPORTER_OTLP_ENDPOINT``, the sampler). The operator sees only the contract of the service, so this is its
own small module rather than the gateway's. When off, :func:`span` hands out the API's no-op tracer's spans: the
operator's steps run every few seconds, so a no-op span costs nothing worth avoiding.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import NoOpTracer, Span, Tracer
from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)
_EXPORTERS = ("otlp", "console", "none")
_tracer: Tracer = NoOpTracer()
_provider: TracerProvider | None = None


def setup_from_environment(environ: Mapping[str, str] | None = None) -> bool:
    """Install a tracer provider as the environment says; True if tracing is on. Call once, at start-up."""
    global _tracer, _provider
    env = os.environ if environ is None else environ
    choice = env.get("OTEL_TRACES_EXPORTER", "").strip().lower() or "none"
    if choice not in _EXPORTERS:
        raise ValueError(f"OTEL_TRACES_EXPORTER={choice!r}: fleetcast supports {', '.join(_EXPORTERS)}")
    if choice == "none":
        return False
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    resource = Resource.create({"service.name": "fleetcast-operator"}).merge(OTELResourceDetector().detect())
    provider = TracerProvider(resource=resource)
    exporter: SpanExporter
    if choice == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        exporter = ConsoleSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider, _tracer = provider, provider.get_tracer("fleetcast_operator")
    log.info("tracing on: %s exporter", choice)
    return True


def shutdown() -> None:
    """Flush and stop the exporter (at exit)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer, _provider = NoOpTracer(), None


@contextmanager
def span(name: str, attributes: Mapping[str, AttributeValue] | None = None) -> Iterator[Span]:
    """A span around one operator step, current while it runs (errors are recorded on it)."""
    with _tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


def trace_current() -> Span:
    """The span of the step running now (a no-op span when tracing is off or outside a step)."""
    return trace.get_current_span()
