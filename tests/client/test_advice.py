"""The client obeys what the server says about coming back: after_ms, retry:, terminal codes and statuses.

Scripted servers play each connection; an injected sleep records the delays, so the assertions are exact."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection

from fleetcast.client import Event, Refused, SseClient, WsClient
from tests.client.scripted import (
    SleepRecorder,
    http_script,
    json_response,
    sse_response,
    ws_reply_subscribed,
    ws_script,
)


async def test_ws_waits_exactly_after_ms_then_resumes_from_the_last_id() -> None:
    """A reconnect {after_ms} then close 1012: sleep after_ms (no backoff), resubscribe with since=last id."""

    async def drained(ws: ServerConnection, sub: dict[str, Any]) -> None:
        await ws_reply_subscribed(ws, sub, "10-0", "11-0")
        await ws.send('{"op":"reconnect","reason":"drain","after_ms":321}')
        await ws.close(1012, "drain")

    async def resumed(ws: ServerConnection, sub: dict[str, Any]) -> None:
        await ws_reply_subscribed(ws, sub, "12-0")
        await ws.wait_closed()

    sleeps = SleepRecorder()
    async with ws_script(drained, resumed) as (url, subscribes), WsClient(url, ["room"], sleep=sleeps) as client:
        got = [event.id async for event in _take(client, 3)]
    assert got == ["10-0", "11-0", "12-0"]
    assert sleeps.delays == [0.321]
    assert [s.get("since") for s in subscribes] == [None, "11-0"]
    assert (client.stats.reconnects, client.stats.duplicates) == (1, 0)


async def test_ws_backs_off_with_full_jitter_when_the_close_gives_no_after_ms() -> None:
    """A 4108 close without a reconnect message: a full-jitter delay within the first window (0..0.5 s)."""

    async def slow(ws: ServerConnection, sub: dict[str, Any]) -> None:
        await ws_reply_subscribed(ws, sub, "1-0")
        await ws.close(4108, "slow consumer")

    async def fine(ws: ServerConnection, sub: dict[str, Any]) -> None:
        await ws_reply_subscribed(ws, sub, "2-0")
        await ws.wait_closed()

    sleeps = SleepRecorder()
    async with ws_script(slow, fine) as (url, _), WsClient(url, ["room"], sleep=sleeps) as client:
        assert [event.id async for event in _take(client, 2)] == ["1-0", "2-0"]
    assert len(sleeps.delays) == 1
    assert 0 <= sleeps.delays[0] <= 0.5


@pytest.mark.parametrize(
    ("code", "reason"),
    [(4001, "unauthorized"), (4003, "forbidden"), (4004, "unknown channel"), (4400, "protocol error")],
)
async def test_ws_terminal_close_codes_stop_the_client_with_the_reason(code: int, reason: str) -> None:
    """A terminal close ends the iterator with Refused(code, reason); the client never reconnects."""

    async def refuse(ws: ServerConnection, sub: dict[str, Any]) -> None:
        await ws_reply_subscribed(ws, sub, "1-0")
        await ws.close(code, reason)

    sleeps = SleepRecorder()
    async with ws_script(refuse) as (url, subscribes), WsClient(url, ["room"], sleep=sleeps) as client:
        events: list[Event] = []

        async def read_all() -> None:
            async for event in client:
                events.append(event)

        with pytest.raises(Refused) as caught:
            await read_all()
        await asyncio.sleep(0.1)
    assert [e.id for e in events] == ["1-0"]
    assert (caught.value.close_code, caught.value.error_code) == (code, reason)
    assert sleeps.delays == []
    assert len(subscribes) == 1
    assert client.failure is caught.value


async def test_sse_obeys_retry_on_stream_end_and_after_ms_on_reconnect_events() -> None:
    """Stream end -> wait the last retry:; fleetcast.reconnect -> wait after_ms; Last-Event-ID on each return."""
    first = sse_response('retry: 1234\n\nid: 5-0\nevent: message\ndata: {"n":5}\n\n')
    second = sse_response(
        'id: 6-0\nevent: message\ndata: {"n":6}\n\n'
        'event: fleetcast.reconnect\ndata: {"reason":"drain","after_ms":777}\n\nretry: 777\n\n'
    )
    third = sse_response('id: 7-0\nevent: message\ndata: {"n":7}\n\n')
    sleeps = SleepRecorder()
    async with (
        http_script(first, second, third) as (url, requests),
        SseClient(url, "room", since="4-0", sleep=sleeps) as client,
    ):
        got = [event.data["n"] async for event in _take(client, 3)]
    assert got == [5, 6, 7]
    assert sleeps.delays[:2] == [1.234, 0.777]
    assert [r.get("last-event-id") for r in requests[:3]] == ["4-0", "5-0", "6-0"]
    assert requests[0]["accept"] == "text/event-stream"


async def test_sse_400_is_terminal_with_the_servers_message() -> None:
    """A 400 answer stops the client with Refused carrying the JSON error's code and message."""
    body = {"error": {"code": "invalid_event_id", "message": "Last-Event-ID: 'x' is not an event id"}}
    sleeps = SleepRecorder()
    async with http_script(json_response(400, "Bad Request", body)) as (url, requests):
        client = SseClient(url, "room", sleep=sleeps)
        async with client:
            with pytest.raises(Refused, match="is not an event id") as caught:
                await asyncio.wait_for(client.wait_closed(), 5)
    assert (caught.value.http_status, caught.value.error_code) == (400, "invalid_event_id")
    assert (sleeps.delays, len(requests)) == ([], 1)


async def test_sse_503_backs_off_at_least_retry_after() -> None:
    """A transient status is retried, no sooner than Retry-After."""
    busy = json_response(503, "Service Unavailable", {"error": {"code": "unavailable", "message": "full"}})
    busy = busy.replace(b"connection: close", b"retry-after: 2\r\nconnection: close")
    ok = sse_response("id: 1-0\nevent: message\ndata: 1\n\n")
    sleeps = SleepRecorder()
    async with http_script(busy, ok) as (url, _), SseClient(url, "room", sleep=sleeps) as client:
        assert [event.id async for event in _take(client, 1)] == ["1-0"]
    assert sleeps.delays[0] >= 2.0


async def _take(client: WsClient | SseClient, n: int, timeout: float = 10.0) -> Any:
    """The first ``n`` events of a client, as an async iterator, within ``timeout``."""
    async with asyncio.timeout(timeout):
        for _ in range(n):
            yield await anext(client)
