"""``GET /metrics``: the pod's metrics in Prometheus text (docs/observability.md lists them).

Each app has a registry of its own (several apps may live in one test process): the pod's collector, read at
scrape time, and the process collector (CPU, memory, open files).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from starlette.responses import Response

from fleetcast.observability.metrics import GatewayCollector
from fleetcast.pod import Pod

router = APIRouter()


def registry_for(pod: Pod) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(pod.metrics))
    ProcessCollector(registry=registry)
    return registry


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
