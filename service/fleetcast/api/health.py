"""Liveness, readiness and the demo page."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from fleetcast.pod import Pod

router = APIRouter()


@router.get("/healthz")
async def healthz() -> Response:
    """The process serves requests (liveness). Says nothing of the broker: a Redis outage must not restart pods."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """Whether this pod should get new clients: 503 while the broker is unreachable (or the pod drains)."""
    pod: Pod = request.app.state.pod
    status = {
        "ready": pod.ready,
        "broker": pod.broker.ready,
        "draining": pod.drain.draining,
        "connections": pod.connections,
        "buffered_bytes": pod.buffered_bytes(),
    }
    return JSONResponse(status, status_code=200 if pod.ready else 503)


@router.get("/", include_in_schema=False)
async def demo_page() -> Response:
    page = resources.files("fleetcast.web").joinpath("index.html").read_text(encoding="utf-8")
    return HTMLResponse(page)
