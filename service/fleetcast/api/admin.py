"""Admin endpoints: start a drain and watch it. Only from loopback (the ``preStop`` hook runs inside the pod)
or with the admin token, so nobody outside the pod can drain it."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import JSONResponse, Response

from fleetcast.errors import Forbidden
from fleetcast.pod import Pod

router = APIRouter()
_LOOPBACK = {"127.0.0.1", "::1"}


def _authorize(request: Request, authorization: str | None) -> Pod:
    pod: Pod = request.app.state.pod
    if request.client is not None and request.client.host in _LOOPBACK:
        return pod
    token = pod.settings.auth.admin_token
    if token and authorization:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return pod
    raise Forbidden("admin endpoints answer only on loopback or with the admin token")


def _status(pod: Pod) -> dict[str, object]:
    drain = pod.drain
    return {
        "state": drain.state,
        "remaining": drain.remaining,
        "closed": drain.closed,
        "accepting": drain.accepting,
        "pacing": drain.pacing(),
    }


@router.post("/internal/drain", include_in_schema=False)
async def start_drain(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    exit: Annotated[bool, Query()] = True,
) -> Response:
    """Start draining (idempotent). With ``exit`` (the default, for ``preStop``), the process exits when done."""
    pod = _authorize(request, authorization)
    pod.drain.begin(exit=exit)
    return JSONResponse(_status(pod), status_code=202)


@router.get("/internal/drain", include_in_schema=False)
async def drain_status(request: Request, authorization: Annotated[str | None, Header()] = None) -> Response:
    pod = _authorize(request, authorization)
    return JSONResponse(_status(pod))
