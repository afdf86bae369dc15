"""Sans-I/O pieces: ids, channel names, SSE framing, WebSocket frames, wire messages, the disconnect table."""

from __future__ import annotations

import json

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from fleetcast.core import channels, disconnects, ids, messages, sse, wsframe


def test_ids_compare_numerically_not_as_strings() -> None:
    """'9-0' comes before '10-0'; a bare millisecond value means sequence 0."""
    assert ids.parse("9-0") < ids.parse("10-0")
    assert ids.parse("5") == (5, 0)
    assert ids.format_id((1764350000000, 3)) == "1764350000000-3"


@pytest.mark.parametrize("bad", ["", "x", "1-", "-1", "1-2-3", "1.5-0", " 1-0", "1" * 21])
def test_ids_reject_malformed_text_with_an_example(bad: str) -> None:
    """A malformed id gets a message that shows the expected form."""
    with pytest.raises(ValueError, match="<milliseconds>-<sequence>"):
        ids.parse(bad)


def test_next_id_follows_the_clock_or_the_last_id() -> None:
    """Like Redis: the clock when it moved on, else one past the last id (a clock that steps back)."""
    assert ids.next_id((100, 5), 200) == (200, 0)
    assert ids.next_id((100, 5), 100) == (100, 6)
    assert ids.next_id((100, 5), 50) == (100, 6)


@pytest.mark.parametrize(
    ("name", "family"),
    [("chat", "chat"), ("chat:room-42", "chat"), ("a", "a"), ("x1-y2:A.b_c@d=e-f", "x1-y2"), ("a" * 63, "a" * 63)],
)
def test_valid_channel_names_give_their_family(name: str, family: str) -> None:
    """Family, or family:suffix, per docs/protocol.md."""
    assert channels.validate(name) == family
    assert channels.family(name) == family


@pytest.mark.parametrize(
    "bad", ["", "Chat", "-chat", "chat-", "chat:", "chat:a b", "chat:" + "x" * 129, "a" * 64, "chat/x", "a:b:c"]
)
def test_invalid_channel_names_are_explained(bad: str) -> None:
    """The message says what a channel name looks like."""
    with pytest.raises(ValueError, match="expected <family> or <family>:<suffix>"):
        channels.validate(bad)


def test_sse_frames() -> None:
    """Events, control events (no id, so lastEventId stays a real event), retry and ping."""
    assert sse.event("1-0", "update", b'{"a":1}') == b'id: 1-0\nevent: update\ndata: {"a":1}\n\n'
    assert sse.gap("1-0", "5-0") == b'event: fleetcast.gap\ndata: {"requested":"1-0","earliest":"5-0"}\n\n'
    assert sse.reconnect("drain", 1500) == (
        b'event: fleetcast.reconnect\ndata: {"reason":"drain","after_ms":1500}\n\nretry: 1500\n\n'
    )
    assert sse.PING.startswith(b":")


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_prebuilt_text_frames_parse_as_websocket_frames(size: int) -> None:
    """Every length encoding is what the websockets library's own parser reads back."""
    payload = ("é" * size).encode()[:size] if size else b""
    payload = payload.decode(errors="ignore").encode()
    reader = StreamReader()
    reader.feed_data(wsframe.text_frame(payload))
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame = done.value
    else:  # pragma: no cover - the whole frame was fed
        raise AssertionError("parser wanted more bytes")
    assert (frame.opcode, frame.fin, bytes(frame.data)) == (Opcode.TEXT, True, payload)


def test_event_message_is_assembled_without_reencoding_data() -> None:
    """The event op is valid JSON and carries data verbatim."""
    prefix = messages.event_prefix('we"ird')
    raw = messages.event(prefix, "7-1", "t", b'{"x":[1,2,"\\u00e9"]}')
    assert json.loads(raw) == {"op": "event", "channel": 'we"ird', "id": "7-1", "type": "t", "data": {"x": [1, 2, "é"]}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"op":"subscribe","channel":"c","ref":1}', messages.Subscribe("c", None, 1)),
        ('{"op":"subscribe","channel":"c","since":"1-0","ref":"r"}', messages.Subscribe("c", "1-0", "r")),
        ('{"op":"unsubscribe","channel":"c"}', messages.Unsubscribe("c", None)),
        ('{"op":"publish","channel":"c","data":null,"ref":2}', messages.Publish("c", None, "message", 2)),
        ('{"op":"ping","ref":3}', messages.Ping(3)),
    ],
)
def test_client_messages_parse(text: str, expected: messages.ClientMessage) -> None:
    """Every client op of protocol v1."""
    assert messages.parse(json.loads(text)) == expected


@pytest.mark.parametrize(
    ("text", "fatal", "code"),
    [
        ("[1]", True, "bad_message"),
        ('{"ref":1}', True, "bad_message"),
        ('{"op":"ping","ref":true}', True, "bad_message"),
        ('{"op":"jump","ref":1}', False, "unknown_op"),
        ('{"op":"subscribe","ref":1}', False, "invalid_channel"),
        ('{"op":"subscribe","channel":"c","since":5,"ref":1}', False, "bad_message"),
        ('{"op":"publish","channel":"c","ref":1}', False, "bad_message"),
        ('{"op":"publish","channel":"c","data":1,"type":"a\\nb","ref":1}', False, "bad_message"),
    ],
)
def test_bad_client_messages_say_what_is_wrong(text: str, fatal: bool, code: str) -> None:
    """Unreadable messages are fatal; readable but wrong ones keep the connection and echo the ref."""
    with pytest.raises(messages.ProtocolError) as error:
        messages.parse(json.loads(text))
    assert (error.value.fatal, error.value.code) == (fatal, code)
    assert error.value.message


def test_disconnect_table_follows_the_code_ranges() -> None:
    """4000-4099 terminal, 4100-4199 back off, 1012 reconnect after the server's delay."""
    for entry in disconnects.ALL:
        if 4000 <= entry.code < 4100:
            assert entry.advice == "none", entry
        if 4100 <= entry.code < 4200:
            assert entry.advice == "backoff", entry
    assert disconnects.DRAIN.code == 1012
    assert disconnects.DRAIN.advice == "reconnect"
