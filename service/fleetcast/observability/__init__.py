"""Observability: tracing set up from ``OTEL_*`` (:mod:`.tracing`) and Prometheus metrics read at scrape time
(:mod:`.metrics`). A leaf of the gateway: it imports nothing of fleetcast but the sans-I/O core, so the hub, the
session core and the broker may use it (docs/observability.md)."""
