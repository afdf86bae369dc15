"""Every error answer is ``{"error": {"code": ..., "message": ...}}`` with the right status and headers."""

from __future__ import annotations

import math

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from fleetcast.errors import FleetcastError

_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message}})


def error_response(status: int, code: str, message: str, retry_after: float | None = None) -> Response:
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="fleetcast"'
    return Response(error_body(code, message), status_code=status, media_type="application/json", headers=headers)


def install(app: FastAPI) -> None:
    async def fleetcast_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, FleetcastError)
        return error_response(exc.status, exc.code, exc.message, exc.retry_after)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, _CODES.get(exc.status_code, "http_error"), str(exc.detail))

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return error_response(400, "bad_request", f"{where}: {first.get('msg', 'invalid request')}")

    app.add_exception_handler(FleetcastError, fleetcast_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
