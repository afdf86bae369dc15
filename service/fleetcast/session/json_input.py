"""The one JSON reader of client input: HTTP publish bodies and WebSocket messages accept and refuse alike.

orjson with its defaults: strict RFC 8259 (no ``NaN``/``Infinity``, no lone surrogates, valid UTF-8 only),
nesting bounded at 1,024 levels (deeper input is refused, never a ``RecursionError``), and integers beyond
64 bits read as floating-point numbers, as a browser's ``JSON.parse`` reads them. What is accepted here can
always be encoded again (by the publisher, for the stream), so nothing accepted fails later.
"""

from __future__ import annotations

from typing import Any

import orjson


class UnreadableJson(ValueError):
    """Input that is not JSON fleetcast reads; the message says where and why, in words."""


def read_json(raw: bytes | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UnreadableJson(str(exc)) from None
