"""Channel endpoints: publish (POST events), subscribe over SSE (GET events), history, info."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response
from starlette.routing import Route

from fleetcast.auth.credentials import TOKEN_SCOPE_KEY, NotBearer, reader_token
from fleetcast.auth.principal import ANONYMOUS, Principal
from fleetcast.core import ids, multiplex
from fleetcast.errors import (
    BadRequest,
    InvalidEventId,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from fleetcast.pod import Pod
from fleetcast.session import presence
from fleetcast.session.json_input import UnreadableJson, read_json
from fleetcast.transports.sse import SseStream
from fleetcast.transports.sse_mux import MuxStream

router = APIRouter()

_BODY_OVERHEAD = 64 * 1024
"""Room in a publish body for the envelope around ``data``."""
_IDEMPOTENCY_KEY_MAX = 200


def _pod(request: Request) -> Pod:
    pod: Pod = request.app.state.pod
    return pod


async def _publisher(request: Request, pod: Pod) -> Principal:
    """Who publishes: the ``Authorization`` bearer credential (an API key or a token), or nobody."""
    try:
        credential = reader_token(request.headers.get("authorization"), None, None, "")
    except NotBearer as exc:
        raise Unauthorized(str(exc)) from None
    return ANONYMOUS if credential is None else await pod.authenticator.publisher(credential)


async def _reader(request: Request, pod: Pod) -> Principal:
    """Who reads: a token from ``Authorization``, ``?token=`` or the token cookie (in that order), or nobody."""
    headers = request.headers
    try:
        token = reader_token(
            headers.get("authorization"),
            request.scope.get(TOKEN_SCOPE_KEY),
            headers.get("cookie"),
            pod.settings.auth.token_cookie,
        )
    except NotBearer as exc:
        raise Unauthorized(str(exc)) from None
    return ANONYMOUS if token is None else await pod.authenticator.token(token)


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body is {length} bytes; at most {limit} are accepted")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def publish(request: Request) -> Response:
    """Publish one event: body ``{"data": <json>, "type": "<name>"?}``; answers 201 ``{"channel", "id"}``.

    A plain Starlette endpoint (see :data:`publish_route`): the hottest HTTP route skips FastAPI's parameter
    solving, which cost about a sixth of the pod's CPU per publish under load (py-spy, docs/benchmarks.md W2).
    """
    channel: str = request.path_params["channel"]
    pod = _pod(request)
    policy = pod.access.publish(await _publisher(request, pod), channel, "http")
    idempotency_key = request.headers.get("idempotency-key")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaType(f"send the event as application/json, not {content_type or 'no content type'!r}")
    if idempotency_key is not None and not (
        0 < len(idempotency_key) <= _IDEMPOTENCY_KEY_MAX and idempotency_key.isprintable()
    ):
        raise BadRequest(f"Idempotency-Key must be 1 to {_IDEMPOTENCY_KEY_MAX} printable characters")
    body = await _read_body(request, policy.max_message_bytes + _BODY_OVERHEAD)
    try:
        parsed: Any = read_json(body)
    except UnreadableJson as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict) or "data" not in parsed:
        raise BadRequest('body must be a JSON object like {"data": ..., "type": "optional-name"}')
    type_ = parsed.get("type")
    if type_ is not None and not isinstance(type_, str):
        raise BadRequest("'type' must be a string")
    event_id = await pod.publisher.publish(
        channel,
        parsed["data"],
        type_,
        policy=policy,
        idempotency_key=idempotency_key,
        traceparent=request.headers.get("traceparent"),
    )
    return Response(orjson.dumps({"channel": channel, "id": event_id}), status_code=201, media_type="application/json")


publish_route = Route("/v1/channels/{channel}/events", publish, methods=["POST"], name="publish")
"""Added to the app's routes; errors still reach the app's handlers, and requests its server spans, with tracing."""


def _since(value: str | None, name: str) -> str | None:
    if value is None or value == "":
        return None
    try:
        ids.parse(value)
    except ValueError as exc:
        raise InvalidEventId(f"{name}: {exc}") from None
    return value


@router.get("/v1/channels/{channel}/events")
async def subscribe_sse(
    channel: str,
    request: Request,
    last_event_id: Annotated[str | None, Header()] = None,
    last_event_id_query: Annotated[str | None, Query(alias="lastEventId")] = None,
) -> Response:
    """Subscribe over Server-Sent Events, resuming after ``Last-Event-ID`` (or ``?lastEventId=``)."""
    pod = _pod(request)
    principal = await _reader(request, pod)
    policy = pod.access.subscribe(principal, channel, "sse")
    since = _since(last_event_id, "Last-Event-ID")
    if since is None:
        since = _since(last_event_id_query, "lastEventId")
    client = presence.client_id(request.query_params.get("client"))
    return SseStream(pod, channel, since, policy, principal, client)


@router.get("/v1/events")
async def subscribe_many_sse(
    request: Request,
    last_event_id: Annotated[str | None, Header()] = None,
    last_event_id_query: Annotated[str | None, Query(alias="lastEventId")] = None,
) -> Response:
    """One SSE stream for every ``?channel=`` (docs/protocol.md, "Many channels on one stream"), resuming all of
    them from the composite cursor in ``Last-Event-ID`` (or ``?lastEventId=``)."""
    pod = _pod(request)
    channels = request.query_params.getlist("channel")
    limit = pod.settings.limits.mux_max_channels
    if not channels:
        raise BadRequest("name the channels of the stream: /v1/events?channel=a&channel=b")
    if len(channels) > limit:
        raise BadRequest(f"a stream carries at most {limit} channels; this request names {len(channels)}")
    if len(set(channels)) != len(channels):
        raise BadRequest("each channel may appear once in a stream")
    principal = await _reader(request, pod)
    policies = [pod.access.subscribe(principal, channel, "sse") for channel in channels]
    cursor = last_event_id or last_event_id_query or None
    try:
        positions = None if cursor is None else multiplex.parse(cursor, channels)
    except ValueError as exc:
        raise InvalidEventId(f"{'Last-Event-ID' if last_event_id else 'lastEventId'}: {exc}") from None
    client = presence.client_id(request.query_params.get("client"))
    return MuxStream(pod, channels, policies, positions, principal, client)


@router.get("/v1/channels/{channel}/history")
async def history(
    channel: str,
    request: Request,
    since: Annotated[str, Query()] = "0-0",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Up to ``limit`` retained events after ``since``, oldest first, with the gap flag of the read."""
    pod = _pod(request)
    pod.access.read(await _reader(request, pod), channel)
    checked = _since(since, "since") or "0-0"
    page = await pod.broker.read(channel, checked, limit)
    events = b",".join(
        b'{"id":"' + e.id.encode() + b'","type":' + orjson.dumps(e.type) + b',"data":' + e.data + b"}"
        for e in page.events
    )
    head = orjson.dumps({"channel": channel, "gap": page.gap, "earliest": page.earliest, "latest": page.latest})
    return Response(head[:-1] + b',"events":[' + events + b"]}", media_type="application/json")


@router.get("/v1/channels/{channel}/presence")
async def presence_list(
    channel: str,
    request: Request,
    cursor: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """One page of the clients present in the channel, across the fleet: ``{"channel", "clients": [{"client",
    "sub", "info", "since"}...], "cursor"}``; pass ``cursor`` back for the next page (0: this was the last)."""
    pod = _pod(request)
    presence.presence_readable(pod.access, await _reader(request, pod), channel)
    clients, next_cursor = await pod.presence.page(channel, cursor, limit)
    return Response(
        orjson.dumps({"channel": channel, "clients": clients, "cursor": next_cursor}), media_type="application/json"
    )


@router.get("/v1/channels/{channel}/presence/stats")
async def presence_stats(channel: str, request: Request) -> Response:
    """How many clients are present, and how many distinct users (``sub``) they are."""
    pod = _pod(request)
    presence.presence_readable(pod.access, await _reader(request, pod), channel)
    stats = await pod.presence.stats(channel)
    return Response(
        orjson.dumps({"channel": channel, "clients": stats.clients, "users": stats.users}),
        media_type="application/json",
    )


@router.get("/v1/channels/{channel}")
async def channel_info(channel: str, request: Request) -> Response:
    """What the channel holds and who listens on this pod."""
    pod = _pod(request)
    policy = pod.access.read(await _reader(request, pod), channel)
    info = await pod.broker.info(channel)
    return Response(
        orjson.dumps(
            {
                "channel": channel,
                "declared": policy.declared,
                "length": info.length,
                "earliest": info.earliest,
                "latest": info.latest,
                "subscribers": pod.hub.subscriber_count(channel),
                "policy": policy.to_spec(),
            }
        ),
        media_type="application/json",
    )
