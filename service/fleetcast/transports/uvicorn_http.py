"""uvicorn's httptools protocol with bounded request heads: a size cap, a read timeout, and a place in the count.

uvicorn bounds neither (0.55, httptools): ``h11_max_incomplete_event_size`` applies to the h11 protocol only,
``timeout_keep_alive`` runs only *between* requests, and llhttp buffers a header value of any length until its
line ends. So a client that sends an unterminated 20 MiB header costs the pod 20 MiB, and one that sends half
a request line and stalls holds a connection forever. This subclass adds, per connection:

* a **head phase**, from the connection's start (and from the first byte of each later request on a keep-alive
  connection) until the parser has the complete head: request line and headers;
* a **size cap** on the bytes read during that phase: past ``max_header_bytes`` the client gets ``431`` with a
  JSON error and the connection is closed (it costs at most the cap plus one read);
* a **read timeout** on the phase: after ``header_timeout`` seconds the client gets ``408`` and is closed;
* a **count**: connections in their head phase count against ``--max-connections`` with the sessions
  (:meth:`fleetcast.pod.Pod.admit_connecting`), so stalled writers cannot crowd out real clients unnoticed.

WebSocket handshakes are HTTP requests until their head is complete, so they are bounded the same way before
uvicorn hands the connection to the WebSocket protocol. It deliberately does not bound a request body's pace:
bodies are read by the app, which bounds their size (413).
"""

from __future__ import annotations

import asyncio

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fleetcast.pod import Pod

LINGER_SECONDS = 1.0
"""How long a connection refused with 431 may go on sending (dropped unread) so that it can read the answer."""
_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def _answer(status: int, code: str, message: str) -> bytes:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


def bounded_http_protocol(pod: Pod) -> type[HttpToolsProtocol]:
    """The HTTP protocol class for ``uvicorn.Config(http=...)``, bounded by ``pod``'s limits and count."""
    max_bytes = pod.settings.limits.max_header_bytes
    timeout = pod.settings.limits.header_timeout

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        _head_bytes = 0
        _head_began = False
        _lingering: asyncio.TimerHandle | None = None
        _refused = False
        """A head was refused: nothing more of this connection is parsed or served."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if not pod.admit_connecting():
                # Full with sessions and connections still sending heads: nothing was read, nothing to answer.
                transport.close()
                return
            self._begin_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._end_head()
            if self._lingering is not None:
                self._lingering.cancel()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # the rest of a refused head: read and dropped until the linger ends
            self._head_began = False
            super().data_received(data)
            if self._head_timer is None or self._head_began or self.transport.is_closing():
                return
            # The head was being read before this read and still is after it: all of it is head. (A head that
            # began inside this read is counted from the next one: the cap is exact to within one read.)
            self._head_bytes += len(data)
            if self._head_bytes > max_bytes:
                self._refuse_too_large()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._begin_head()  # a later request of a keep-alive connection: its head is bounded too

        def on_headers_complete(self) -> None:
            self._end_head()
            # A head that arrived within one read was never counted on the way: measure what was parsed.
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > max_bytes:
                self._refuse_too_large()
                return
            super().on_headers_complete()

        # The parser may go on with the rest of a read after a refusal: none of it reaches the app.
        def on_body(self, body: bytes) -> None:
            if not self._refused:
                super().on_body(body)

        def on_message_complete(self) -> None:
            if not self._refused:
                super().on_message_complete()

        def handle_websocket_upgrade(self) -> None:
            if not self._refused:
                super().handle_websocket_upgrade()

        def _begin_head(self) -> None:
            if self._head_timer is None:
                pod.connecting += 1
                self._head_bytes = 0
                self._head_began = True
                self._head_timer = self.loop.call_later(timeout, self._head_timed_out)

        def _end_head(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
                pod.connecting -= 1

        def _head_timed_out(self) -> None:
            self._head_timer = None
            pod.connecting -= 1
            self._refuse(408, "header_timeout", f"request line and headers not received within {timeout:g} s")

        def _refuse_too_large(self) -> None:
            """431, then a short lingering close (as nginx does): the client is most likely still writing, and
            closing a socket with unread input resets it, which would destroy the answer before it is read. So
            the write side is shut after the answer and input is dropped unparsed for at most
            :data:`LINGER_SECONDS`."""
            self._end_head()
            self._refused = True
            transport = self.transport
            if transport.is_closing():
                return
            transport.write(_answer(431, "headers_too_large", f"request line and headers exceed {max_bytes} bytes"))
            if not transport.can_write_eof():
                transport.close()
                return
            transport.write_eof()
            self._lingering = self.loop.call_later(LINGER_SECONDS, transport.close)

        def _refuse(self, status: int, code: str, message: str) -> None:
            self._end_head()
            self._refused = True
            if not self.transport.is_closing():
                self.transport.write(_answer(status, code, message))
                self.transport.close()

    return BoundedHttpToolsProtocol
