"""The ASGI application: routes, error answers, and the pod's lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from fleetcast import __version__
from fleetcast.api import admin, channels, errors, health, metrics
from fleetcast.api.browsers import BrowserGuard, header
from fleetcast.auth.credentials import TOKEN_SCOPE_KEY, take_query_token
from fleetcast.observability import tracing
from fleetcast.pod import Pod
from fleetcast.settings import Settings
from fleetcast.transports import websocket


class Gateway:
    """The ASGI application: the WebSocket endpoint served directly, everything else by FastAPI.

    A WebSocket connection lives for hours, and every frame of the call stack that serves it stays in memory
    for that long. Routing it through FastAPI kept its router, dependency and exit-stack frames alive per
    connection (about 12 KiB of 35 per idle connection, tracemalloc in docs/benchmarks.md); the endpoint needs
    none of them.

    Ahead of FastAPI (and of its tracing middleware) it also takes a ``?token=`` out of the query string, so no
    URL that a span or a log records ever holds a token, and sends requests from web pages through the origin
    check (:mod:`fleetcast.api.browsers`).
    """

    def __init__(self, api: FastAPI, pod: Pod) -> None:
        self.api = api
        self.pod = pod
        self.browsers = BrowserGuard(api, pod.origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if b"token=" in scope.get("query_string", b""):
            query, token = take_query_token(scope["query_string"])
            scope = {**scope, "query_string": query, TOKEN_SCOPE_KEY: token}
        if scope["type"] == "websocket" and scope["path"] == websocket.PATH:
            await websocket.websocket_endpoint(WebSocket(scope, receive, send), self.pod)
            return
        if scope["type"] == "http":
            origin = header(scope, b"origin")
            if origin is not None:
                await self.browsers(scope, receive, send, origin)
                return
        await self.api(scope, receive, send)


def create_app(settings: Settings, pod: Pod | None = None) -> Gateway:
    the_pod = pod if pod is not None else Pod(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await the_pod.start()
        try:
            yield
        finally:
            await the_pod.close()

    app = FastAPI(title="fleetcast", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.pod = the_pod
    errors.install(app)
    app.router.routes.append(channels.publish_route)
    app.include_router(channels.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(metrics.router)
    app.state.metrics_registry = metrics.registry_for(the_pod)
    if tracing.tracer() is not None:
        _instrument(app)
    return Gateway(app, the_pod)


def _instrument(app: FastAPI) -> None:
    """Server spans for HTTP requests (a publish's parent); none for probes and scrapes, and no span per
    ASGI send/receive (a WebSocket or SSE stream is one span for its life, not one per frame)."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, excluded_urls="/healthz,/readyz,/metrics,/internal/drain", exclude_spans=["receive", "send"]
    )
