"""The composite cursor of multiplexed SSE streams and its frames, without sockets (core/multiplex.py)."""

from __future__ import annotations

import random

import pytest

from fleetcast.broker.base import Event
from fleetcast.core import ids, multiplex
from fleetcast.hub.batch import Batch

CHANNELS = ["scores", "chat:room-1", "ticker:EUR"]
BASE = 1_764_350_000_000


def frames_of(body: bytes) -> list[dict[str, str]]:
    """Parse SSE text the way a browser does, keeping each frame's fields (an ``id:`` sticks until replaced)."""
    out: list[dict[str, str]] = []
    for block in body.decode().split("\n\n"):
        if block:
            out.append(dict(line.split(": ", 1) for line in block.split("\n")))
    return out


def test_a_cursor_round_trips_every_position() -> None:
    """Positions before, at and after the base, with and without a sequence, and 0-0, come back exactly."""
    positions = [(BASE + 5, 0), (BASE - 86_400_000, 3), (0, 0)]
    cursor = multiplex.Cursor(CHANNELS, positions, BASE)
    assert multiplex.parse(cursor.text(), CHANNELS) == positions


def test_a_cursor_is_compact_and_safe_in_urls_and_headers() -> None:
    """Twenty live channels a minute after the base fit in about five characters each, all URL-unreserved."""
    channels = [f"c{i}" for i in range(20)]
    cursor = multiplex.Cursor(channels, [(BASE + 60_000 + i, i % 2) for i in range(20)], BASE)
    text = cursor.text()
    assert len(text) < 20 * 6 + 16
    assert set(text) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.-~")


def test_every_frame_of_a_batch_carries_the_cursor_after_it() -> None:
    """Each event's ``id:`` resumes every channel: its own at that event, the others where they stood."""
    start = [(BASE + 1, 0), (BASE + 2, 0), (0, 0)]
    cursor = multiplex.Cursor(CHANNELS, start, BASE)
    batch = Batch("chat:room-1", [Event(f"{BASE + 10 + i}-0", "message", b'{"n":%d}' % i) for i in range(3)])
    body = cursor.frames(1, *batch.mux(BASE))
    parsed = frames_of(body)
    assert [f["event"] for f in parsed] == ["message"] * 3
    for i, frame in enumerate(parsed):
        assert frame["data"] == f'{{"channel":"chat:room-1","id":"{BASE + 10 + i}-0","data":{{"n":{i}}}}}'
        assert multiplex.parse(frame["id"], CHANNELS) == [start[0], (BASE + 10 + i, 0), start[2]]
    assert multiplex.parse(cursor.text(), CHANNELS) == [start[0], (BASE + 12, 0), start[2]]


def test_interleaved_batches_keep_every_channel_position() -> None:
    """Random batches of random channels: after each frame, the cursor names the last event of each channel."""
    rng = random.Random(3)
    cursor = multiplex.Cursor(CHANNELS, [ids.ZERO] * 3, BASE)
    last = [ids.ZERO] * 3
    clock = BASE - 50
    for _ in range(200):
        index = rng.randrange(3)
        events = []
        for _ in range(rng.randint(1, 4)):
            clock += rng.randint(0, 2)
            events.append(Event(f"{clock}-{rng.randint(0, 70)}", "t", b"1"))
        body = cursor.frames(index, *Batch(CHANNELS[index], events).mux(BASE))
        for frame, event in zip(frames_of(body), events, strict=True):
            last[index] = ids.parse(event.id)
            assert multiplex.parse(frame["id"], CHANNELS) == last


def test_the_first_cursor_is_a_frame_without_data() -> None:
    """The opening frame is only ``id:``: a browser takes the id at the blank line without dispatching."""
    cursor = multiplex.Cursor(CHANNELS, [(BASE, 0)] * 3, BASE)
    assert cursor.id_frame() == b"id: " + cursor.text().encode() + b"\n\n"


def test_a_gap_names_its_channel() -> None:
    assert multiplex.gap("chat:room-1", "5-0", "9-0") == (
        b'event: fleetcast.gap\ndata: {"channel":"chat:room-1","requested":"5-0","earliest":"9-0"}\n\n'
    )


def valid() -> str:
    return multiplex.Cursor(CHANNELS, [(BASE, 0)] * 3, BASE).text()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "not a cursor"),
        ("1764350000000-0", "not a cursor"),
        ("2." + valid()[2:], "not a cursor"),
        (valid().replace(".", ".x", 1), "another list"),
        (valid() + ".0", "names 4 channels"),
        (valid().rsplit(".", 1)[0], "names 2 channels"),
        (valid()[: valid().rindex(".")] + ".!!", "not a position"),
        (valid()[: valid().rindex(".")] + ".~" + "z" * 11, "out of range"),
        (valid()[: valid().rindex(".")] + "." + "z" * 12, "not a position"),
        (valid() + "0" * 500, "characters long"),
    ],
)
def test_malformed_or_forged_cursors_are_refused_with_a_reason(text: str, says: str) -> None:
    """Garbage, another version, another channel list, more or fewer channels, bad or huge positions: refused."""
    with pytest.raises(ValueError, match=says):
        multiplex.parse(text, CHANNELS)


def test_a_cursor_resumes_only_the_list_it_was_made_for() -> None:
    """The same channels in another order are another stream: its positions would land on the wrong channels."""
    with pytest.raises(ValueError, match="another list"):
        multiplex.parse(valid(), list(reversed(CHANNELS)))
