"""What a transport gives the session core: a place to put bytes, and how full it is.

The session core speaks in pre-encoded bytes. A :class:`Wire` takes them without awaiting (so the hub can hand a
batch to thousands of sessions in one synchronous loop), says how many bytes wait for the client (the measure
of a slow consumer), lets a replay wait until the client has caught up, and ends the session with an entry of
the disconnect table. A :class:`Codec` knows how the transport frames each kind of message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

from fleetcast.core.disconnects import Disconnect
from fleetcast.core.messages import Ref
from fleetcast.hub.batch import Batch
from fleetcast.hub.notice import Notice


class Wire(Protocol):
    @property
    def kind(self) -> Literal["ws", "sse"]:
        """The transport's name, as channel policies list it."""
        ...

    @property
    def closed(self) -> bool:
        """True once the session ended, by either side; writes are then ignored."""
        ...

    def write(self, data: bytes) -> int:
        """Queue bytes for the client, never blocking; return the bytes now waiting for the client (0 once the
        session is closed, when nothing is written)."""
        ...

    def buffered(self) -> int:
        """Bytes written but not yet taken by the client."""
        ...

    @property
    def writable(self) -> bool:
        """False while the client lags (the transport is above its high-water mark)."""
        ...

    def set_on_writable(self, callback: Callable[[], None]) -> None:
        """Have ``callback`` called (synchronously) each time the client catches up after lagging."""
        ...

    async def drain(self, timeout: float) -> bool:
        """Wait until the client has taken most of what was written; False if it did not within ``timeout``."""
        ...

    def close(self, disconnect: Disconnect, after_ms: int) -> None:
        """End the session, telling the client why and (where it should come back) after how long."""
        ...


class Codec(Protocol):
    def events(self, batch: Batch) -> bytes: ...

    def subscribed(self, channel: str, ref: Ref, recovered: bool, latest: str | None) -> bytes: ...

    def gap(self, channel: str, requested: str, earliest: str | None) -> bytes: ...

    def unsubscribed(self, channel: str, reason: str) -> bytes:
        """The server ended one subscription (``reason``: an error code such as ``forbidden``)."""
        ...

    def presence(self, notice: Notice) -> bytes:
        """A presence join or leave of a subscribed channel."""
        ...
