"""Liveness, readiness, the demo page and the browser SDK.

The SDK (``clients/js``, compiled to one ES module and committed as ``fleetcast/web/client.js``) is served at
``/v1/client.js``, revalidated after five minutes (``ETag``), and at ``/v1/client.<hash>.js``, a name that changes
with its content and so may be cached for good.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from fleetcast.api.errors import error_response
from fleetcast.core.channels import validate
from fleetcast.pod import Pod

router = APIRouter()


@router.get("/healthz")
async def healthz() -> Response:
    """The process serves requests (liveness). Says nothing of the broker: a Redis outage must not restart pods."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request, channel: str | None = None) -> Response:
    """Whether this pod should get new clients: 503 while the broker is unreachable (or the pod drains).

    On a Redis Cluster the pod stays ready while any shard is reachable (every pod sees the same shards, so turning
    them all away would only stop the healthy channels too); ``shards`` lists each master's state, and
    ``?channel=<name>`` answers for one channel: 503 while its shard is down."""
    pod: Pod = request.app.state.pod
    status: dict[str, object] = {
        "ready": pod.ready,
        "broker": pod.broker.ready,
        "draining": pod.drain.draining,
        "connections": pod.connections,
        "buffered_bytes": pod.buffered_bytes(),
        "pod": pod.settings.server.pod_name,
    }
    shards = pod.broker.shards
    if shards is not None:
        status["shards"] = {name: "up" if up else "down" for name, up in shards.items()}
    ready = pod.ready
    if channel is not None:
        try:
            validate(channel)
        except ValueError as exc:
            return error_response(400, "bad_channel", str(exc))
        status["channel"] = channel
        status["channel_ready"] = pod.broker.ready_for(channel)
        ready = ready and pod.broker.ready_for(channel)
    return JSONResponse(status, status_code=200 if ready else 503)


@router.get("/", include_in_schema=False)
async def demo_page() -> Response:
    page = resources.files("fleetcast.web").joinpath("index.html").read_text(encoding="utf-8")
    return HTMLResponse(page)


@functools.cache
def client_module() -> tuple[bytes, str]:
    """The SDK module's bytes and the first 16 hex digits of their SHA-256 (its ETag and its immutable name)."""
    body = resources.files("fleetcast.web").joinpath("client.js").read_bytes()
    return body, hashlib.sha256(body).hexdigest()[:16]


_JS = "text/javascript; charset=utf-8"


@router.get("/v1/client.js", include_in_schema=False)
async def client_js(request: Request) -> Response:
    """The browser SDK: ``import { Fleetcast } from "/v1/client.js"``. Cached five minutes, then revalidated."""
    body, digest = client_module()
    headers = {
        "ETag": f'"{digest}"',
        "Cache-Control": "public, max-age=300",
        "Link": f'</v1/client.{digest}.js>; rel="alternate"',
    }
    if digest in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=_JS, headers=headers)


@router.get("/v1/client.{digest}.js", include_in_schema=False)
async def client_js_pinned(digest: str) -> Response:
    """The same module under a name that changes with its content: cacheable forever. Another digest is a 404
    (a pod of another version), so a page pinned to one build never runs a different one."""
    body, current = client_module()
    if digest != current:
        return error_response(404, "not_found", f"this pod serves /v1/client.{current}.js")
    headers = {"ETag": f'"{current}"', "Cache-Control": "public, max-age=31536000, immutable"}
    return Response(body, media_type=_JS, headers=headers)


@router.get("/v1/client.d.ts", include_in_schema=False)
async def client_types() -> Response:
    """The SDK's TypeScript declarations, for editors."""
    body = resources.files("fleetcast.web").joinpath("client.d.ts").read_bytes()
    return Response(
        body, media_type="application/typescript; charset=utf-8", headers={"Cache-Control": "public, max-age=300"}
    )
