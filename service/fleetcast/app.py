"""The ASGI application: routes, error answers, and the pod's lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fleetcast import __version__
from fleetcast.api import admin, channels, errors, health
from fleetcast.pod import Pod
from fleetcast.settings import Settings
from fleetcast.transports.websocket import websocket_endpoint


def create_app(settings: Settings, pod: Pod | None = None) -> FastAPI:
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
    app.include_router(channels.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.add_api_websocket_route("/v1/ws", websocket_endpoint)
    return app
