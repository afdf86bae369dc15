"""Admin endpoints: start a drain and watch it. Served on the admin listener only, and only with the admin
token (:mod:`fleetcast.auth.admin_token`): where a request comes from grants nothing, since a proxy in the pod
forwards over loopback."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import JSONResponse, Response

from fleetcast.errors import Forbidden, Unauthorized
from fleetcast.pod import Pod

router = APIRouter()


def _authorize(request: Request, authorization: str | None) -> Pod:
    """The pod, if ``authorization`` is ``Bearer <admin token>``; else 401 (no credential) or 403 (a wrong one)."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized("admin endpoints need Authorization: Bearer <admin token>")
    token: str = request.app.state.admin_token
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Forbidden("the admin token is not this pod's")
    pod: Pod = request.app.state.pod
    return pod


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
