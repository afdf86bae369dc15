"""Many channels on one connection (issue 15) against real pods on a real Redis: one SSE stream of 20 channels
resumes every channel exactly from the last ``id:`` it saw; bad cursors and forbidden channels are refused
before the stream opens; one WebSocket resumes 64 subscriptions."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.observability.test_metrics import until, value
from tests.support.clients import publish, ws_client, ws_recv, ws_send
from tests.support.gateway import QUICK_STOP, GatewayProcess, gateway
from tests.support.mux import MuxFrame, admin_client, events_url, mux_stream
from tests.support.processes import RedisServer, declare, redis_server
from tests.support.tokens import Keys

TRIMMED = "trim:t"
CHANNELS = [f"mux:c{i}" for i in range(19)] + [TRIMMED]
PER_CHANNEL = 12


@pytest.fixture(scope="module")
def fleet() -> Iterator[tuple[RedisServer, GatewayProcess, GatewayProcess]]:
    """Two pods on one Redis: clients read from the first, backends publish to the second. The family ``trim``
    keeps 5 events."""
    with redis_server() as redis:
        declare(redis, "trim", "--anonymous", "--publish-anonymous", "--max-events", "5")
        args = (*QUICK_STOP, "--anonymous", "--redis-url", redis.url)
        with gateway(*args) as reader, gateway(*args) as writer:
            yield redis, reader, writer


async def publish_round_robin(url: str, channels: list[str], start: int, stop: int) -> None:
    """Events ``{"n": start..stop-1}`` on every channel, interleaved channel by channel."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for n in range(start, stop):
            await asyncio.gather(*(publish(client, channel, {"n": n}) for channel in channels))


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_stream_of_twenty_channels_resumes_every_one_after_a_random_frame(
    fleet: tuple[RedisServer, GatewayProcess, GatewayProcess], seed: int
) -> None:
    """Acceptance 1: publishing on 20 channels from another pod, the client drops after a random frame and
    reconnects with the last ``id:``: every channel ends contiguous and duplicate-free, and the channel trimmed
    meanwhile gets one gap signal, naming it, while no other channel gets any."""
    _, reader, writer = fleet
    channels = [f"{c}-{seed}" if c != TRIMMED else f"{c}{seed}" for c in CHANNELS]
    trimmed = channels[-1]
    await publish_round_robin(writer.url, channels, -3, 0)  # history from before the stream: not for it
    drop_after = random.Random(seed).randrange(1, PER_CHANNEL * len(channels) // 2)
    got: dict[str, list[int]] = {c: [] for c in channels}
    gaps: list[dict[str, Any]] = []

    def take(frame: MuxFrame) -> None:
        if frame.event == "fleetcast.gap":
            gaps.append(frame.data)
        else:
            assert frame.event == "message", frame
            got[frame.data["channel"]].append(frame.data["data"]["n"])

    async with httpx.AsyncClient(base_url=reader.url, timeout=None) as client:
        async with asyncio.timeout(20), mux_stream(client, channels) as stream:
            publisher = asyncio.create_task(publish_round_robin(writer.url, channels, 0, PER_CHANNEL))
            seen = 0
            async for frame in stream.frames():
                take(frame)
                seen += 1
                if seen == drop_after:
                    break
            last_id = stream.last_id
        await publisher
        # While the client is away the trimmed channel moves on by more than it keeps.
        await publish_round_robin(writer.url, [trimmed], PER_CHANNEL, PER_CHANNEL + 8)
        assert last_id is not None
        async with asyncio.timeout(20), mux_stream(client, channels, last_id) as stream:
            async for frame in stream.frames():
                take(frame)
                done = all(got[c][-1:] == [PER_CHANNEL - 1] for c in channels[:-1])
                if done and got[trimmed][-1:] == [PER_CHANNEL + 7]:
                    break
    for channel in channels[:-1]:
        assert got[channel] == list(range(PER_CHANNEL)), f"{channel} after dropping at frame {drop_after}"
    assert [g["channel"] for g in gaps] == [trimmed]
    before_gap = len(got[trimmed]) - 5
    assert got[trimmed][before_gap:] == list(range(PER_CHANNEL + 3, PER_CHANNEL + 8))
    assert got[trimmed][:before_gap] == list(range(before_gap))


async def test_a_stream_dropped_before_its_first_event_resumes_from_where_it_began(
    fleet: tuple[RedisServer, GatewayProcess, GatewayProcess],
) -> None:
    """The opening ``id:`` alone is a cursor: events published between a drop and the reconnect arrive, and
    none from before the first connection."""
    _, reader, writer = fleet
    channels = ["early:a", "early:b"]
    await publish_round_robin(writer.url, channels, -2, 0)
    async with httpx.AsyncClient(base_url=reader.url, timeout=None) as client:
        async with asyncio.timeout(5), mux_stream(client, channels) as stream:
            opening = await stream.opening()
        await publish_round_robin(writer.url, channels, 0, 2)
        async with asyncio.timeout(10), mux_stream(client, channels, opening) as again:
            got = [f.data async for f in _take(again.frames(), 4)]
    assert sorted((d["channel"], d["data"]["n"]) for d in got) == [(c, n) for c in channels for n in (0, 1)]


async def _take(frames: AsyncIterator[MuxFrame], count: int) -> AsyncIterator[MuxFrame]:
    async for frame in frames:
        yield frame
        count -= 1
        if count == 0:
            return


async def refusal(client: httpx.AsyncClient, url: str, **headers: str) -> tuple[int, str]:
    async with client.stream("GET", url, headers=headers) as response:
        body = await response.aread()
        code = json.loads(body)["error"]["code"] if response.status_code != 200 else ""
        return response.status_code, code


@pytest.fixture(scope="module")
def secured() -> Iterator[tuple[Keys, GatewayProcess]]:
    keys = Keys()
    try:
        with redis_server() as redis:
            declare(redis, "board", "--no-anonymous")
            declare(redis, "secret", "--no-anonymous")
            with gateway(*QUICK_STOP, "--redis-url", redis.url, "--mux-max-channels", "8", *keys.pod_args()) as pod:
                yield keys, pod
    finally:
        keys.cleanup()


async def test_bad_cursors_and_channel_lists_get_400_and_unreadable_channels_403(
    secured: tuple[Keys, GatewayProcess],
) -> None:
    """Acceptance 4: a malformed cursor, one forged for another channel list or naming channels outside the
    request, and a bad channel list get 400; a channel the token does not grant gets 403, cursor or not; a good
    cursor from the same list opens the stream."""
    keys, pod = secured
    token = keys.hs256(sub="ann", channels=["board:*"])
    auth = {"Authorization": f"Bearer {token}"}
    channels = ["board:a", "board:b"]
    async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
        async with asyncio.timeout(5), mux_stream(client, channels, token=token) as stream:
            good = await stream.opening()
        version, check, base, *positions = good.split(".")
        url = events_url(channels)
        for cursor in [
            "junk",
            "1764350000000-0",
            f"{version}.{check}.{base}.{positions[0]}",  # one channel short
            f"{version}.{check}.{base}.{'.'.join(positions)}.0",  # a channel outside the request
            f"{version}.x{check}.{base}.{'.'.join(positions)}",  # another channel list
            f"{version}.{check}.{base}.{positions[0]}.!",
        ]:
            assert await refusal(client, url, **auth, **{"Last-Event-ID": cursor}) == (400, "invalid_event_id"), cursor
        first_load = events_url(channels, lastEventId="nonsense")
        assert await refusal(client, first_load, **auth) == (400, "invalid_event_id")
        reversed_list = events_url(list(reversed(channels)))
        assert await refusal(client, reversed_list, **auth, **{"Last-Event-ID": good}) == (400, "invalid_event_id")
        for bad_list in ["/v1/events", events_url(["board:a", "board:a"]), events_url([f"board:{i}" for i in range(9)]),
                         events_url(["board:a", "Not A Channel"])]:  # fmt: skip
            assert (await refusal(client, bad_list, **auth))[0] == 400, bad_list
        with_secret = ["board:a", "secret:x"]
        assert await refusal(client, events_url(with_secret), **auth) == (403, "forbidden")
        forged = f"{version}.{check}.{base}.{'.'.join(positions)}"
        assert await refusal(client, events_url(with_secret), **auth, **{"Last-Event-ID": forged}) == (403, "forbidden")
        assert await refusal(client, events_url(channels)) == (401, "unauthorized")
        async with mux_stream(client, channels, good, token=token) as stream:
            assert stream.response.status_code == 200


async def test_one_websocket_resumes_sixty_four_subscriptions(
    fleet: tuple[RedisServer, GatewayProcess, GatewayProcess],
) -> None:
    """A WebSocket with 64 subscriptions reconnects and resubscribes each with ``since``: every channel gets
    exactly what it missed, then live events."""
    _, reader, writer = fleet
    channels = [f"ws64:c{i}" for i in range(64)]
    last: dict[str, str] = {}
    got: dict[str, list[int]] = {c: [] for c in channels}

    async def receive(ws: Any, count: int) -> None:
        for _ in range(count):
            message = await ws_recv(ws)
            assert message["op"] == "event", message
            got[message["channel"]].append(message["data"]["n"])
            last[message["channel"]] = message["id"]

    async def subscribe_all(ws: Any, resume: bool, then_events: int) -> None:
        """Subscribe to every channel (from its last id when resuming); the replies and replayed events
        interleave, so read both."""
        for i, channel in enumerate(channels):
            await ws_send(ws, op="subscribe", channel=channel, ref=i, **({"since": last[channel]} if resume else {}))
        refs: list[int] = []
        events = 0
        while len(refs) < len(channels) or events < then_events:
            message = await ws_recv(ws)
            if message["op"] == "subscribed":
                refs.append(message["ref"])
                continue
            assert message["op"] == "event", message
            got[message["channel"]].append(message["data"]["n"])
            last[message["channel"]] = message["id"]
            events += 1
        assert sorted(refs) == list(range(64))

    async with ws_client(reader.ws_url) as ws:
        await subscribe_all(ws, resume=False, then_events=0)
        await publish_round_robin(writer.url, channels, 0, 2)
        await receive(ws, 2 * 64)
    await publish_round_robin(writer.url, channels, 2, 5)  # missed while away
    async with ws_client(reader.ws_url) as ws:
        await subscribe_all(ws, resume=True, then_events=3 * 64)
        await publish_round_robin(writer.url, channels, 5, 6)
        await receive(ws, 64)
    assert all(got[c] == list(range(6)) for c in channels), got


async def test_metrics_count_multiplexed_streams_and_their_channels() -> None:
    """Two streams (3 and 20 channels): the open-stream gauge follows them, the channels-per-stream histogram
    records each once, and their subscriptions count like any others."""
    with gateway(*QUICK_STOP, "--anonymous") as pod:
        async with (
            admin_client(pod) as http,
            httpx.AsyncClient(base_url=pod.url, timeout=10) as api,
            mux_stream(api, [f"m:{i}" for i in range(3)]) as small,
            mux_stream(api, [f"m:w{i}" for i in range(20)]) as wide,
        ):
            await small.opening()
            await wide.opening()
            open_ = await until(http, lambda s: s.get(("fleetcast_multiplexed_streams", frozenset())) == 2)
            assert value(open_, "fleetcast_connections", transport="sse") == 2
            assert value(open_, "fleetcast_subscriptions", family="m") == 23
            assert value(open_, "fleetcast_multiplexed_stream_channels_count") == 2
            assert value(open_, "fleetcast_multiplexed_stream_channels_sum") == 23
            assert value(open_, "fleetcast_multiplexed_stream_channels_bucket", le="4") == 1
            assert value(open_, "fleetcast_multiplexed_stream_channels_bucket", le="16") == 1
            assert value(open_, "fleetcast_multiplexed_stream_channels_bucket", le="32") == 2
        async with admin_client(pod) as http:
            closed = await until(http, lambda s: s.get(("fleetcast_multiplexed_streams", frozenset())) == 0)
            assert value(closed, "fleetcast_multiplexed_stream_channels_count") == 2
