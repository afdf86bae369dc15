"""The ASGI application: routes, error answers, and the pod's lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from fleetcast import __version__
from fleetcast.api import admin, channels, errors, health, metrics
from fleetcast.api.browsers import BrowserGuard, header
from fleetcast.auth.credentials import TOKEN_SCOPE_KEY, take_query_token
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

    The process listens on two ports with one uvicorn server (``fleetcast serve``): a request that arrived on
    the admin port goes to the admin app (:func:`create_admin_app`), everything else to the public one, which
    knows no admin, metrics or docs routes and answers 404 for them. The port a request arrived on is the
    socket's own, which no header or proxy can forge.
    """

    def __init__(self, api: FastAPI, pod: Pod, admin: ASGIApp | None = None, admin_port: int = 0) -> None:
        self.api = api
        self.pod = pod
        self.browsers = BrowserGuard(api, pod.origins)
        self.admin = admin
        self.admin_port = admin_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.admin is not None and scope["type"] != "lifespan":
            server = scope.get("server")
            if server is not None and server[1] == self.admin_port:
                await self.admin(scope, receive, send)
                return
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


def create_app(settings: Settings, pod: Pod | None = None, admin_token: str | None = None) -> Gateway:
    """The pod's ASGI app; with ``admin_token`` (and an admin port in ``settings``) the admin app too."""
    the_pod = pod if pod is not None else Pod(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await the_pod.start()
        try:
            yield
        finally:
            await the_pod.close()

    # No docs, schema, metrics or admin routes here: they are the admin listener's.
    app = FastAPI(
        title="fleetcast",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.pod = the_pod
    errors.install(app)
    app.router.routes.append(channels.publish_route)
    app.include_router(channels.router)
    app.include_router(health.router)
    if the_pod.tracer is not None:
        _instrument(app)
    if admin_token is None or not settings.admin.port:
        return Gateway(app, the_pod)
    return Gateway(app, the_pod, create_admin_app(app, the_pod, admin_token), settings.admin.port)


def create_admin_app(public: FastAPI, pod: Pod, admin_token: str) -> FastAPI:
    """The admin listener's app: ``/internal/*`` (with the admin token), ``/metrics`` and the public API's
    OpenAPI docs (``/docs``, ``/redoc``, ``/openapi.json``).

    Metrics and docs need no token: Prometheus scrapes without one, they change nothing, and only what the
    NetworkPolicy lets in reaches this port. It has no lifespan of its own: the public app starts and stops
    the pod.
    """
    app = FastAPI(title="fleetcast admin", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.pod = pod
    app.state.admin_token = admin_token
    app.state.metrics_registry = metrics.registry_for(pod)
    errors.install(app)
    app.include_router(admin.router)
    app.include_router(metrics.router)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(_: Request) -> Response:
        return JSONResponse(public.openapi())

    @app.get("/docs", include_in_schema=False)
    async def swagger(_: Request) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="fleetcast API")

    @app.get("/redoc", include_in_schema=False)
    async def redoc(_: Request) -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="fleetcast API")

    return app


def _instrument(app: FastAPI) -> None:
    """Server spans for HTTP requests (a publish's parent); none for probes and scrapes, and no span per
    ASGI send/receive (a WebSocket or SSE stream is one span for its life, not one per frame)."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls="/healthz,/readyz", exclude_spans=["receive", "send"])
