"""Admin endpoints: start a drain or a shed and watch them. Served on the admin listener only, and only with the admin
token (:mod:`fleetcast.auth.admin_token`): where a request comes from grants nothing, since a proxy in the pod
forwards over loopback."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import JSONResponse, Response

from fleetcast.errors import BadRequest, Conflict, Forbidden, Unauthorized
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


_SHED_MAX = 1_000_000


def _shed_status(pod: Pod) -> dict[str, object]:
    shed = pod.shed
    return {
        "shedding": shed.shedding,
        "remaining": shed.remaining,
        "closed": shed.closed,
        "round": shed.round,
        "pacing": shed.pacing(),
    }


@router.post("/internal/shed", include_in_schema=False)
async def start_shed(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    count: Annotated[str | None, Query()] = None,
    rate: Annotated[str | None, Query()] = None,
) -> Response:
    """Move ``count`` clients away at the drain rate (or ``rate`` per second) while the pod stays ready; a shed in
    progress is replaced (``count=0`` stops it). 409 while the pod drains: the drain moves everyone anyway.
    The parameters are read after the token is checked, so nobody without it learns what they should be."""
    pod = _authorize(request, authorization)
    sessions = _number(count, "count", int, 0, _SHED_MAX)
    per_second = None if rate is None else _number(rate, "rate", float, 0.001, 100_000)
    if not pod.shed.begin(int(sessions), rate=per_second):
        raise Conflict("the pod is draining: every session is leaving already, there is nothing to shed")
    return JSONResponse(_shed_status(pod), status_code=202)


def _number(raw: str | None, name: str, kind: type[int] | type[float], low: float, high: float) -> float:
    try:
        value = kind(raw) if raw is not None else None
    except ValueError:
        value = None
    if value is None or not low <= value <= high:  # also rejects nan
        raise BadRequest(f"{name} must be a number from {low:g} to {high:g}, got {raw!r}")
    return value


@router.get("/internal/shed", include_in_schema=False)
async def shed_status(request: Request, authorization: Annotated[str | None, Header()] = None) -> Response:
    pod = _authorize(request, authorization)
    return JSONResponse(_shed_status(pod))
