"""A test-only stand-in for the gateway's Service: one loopback address that spreads new TCP connections over
the ready pods, as kube-proxy spreads them over a Service's ready endpoints.

Why a proxy rather than a URL list in the clients: a browser's ``EventSource`` has exactly one URL and
reconnects to it, and a real client behind a Service does not know the pods. Why not Debian's nginx: it is not
installed here, and a layer-4 relay is closer to kube-proxy anyway (an HTTP proxy would add its own
keep-alive, buffering and timeouts, which a ClusterIP Service does not). Like kube-proxy it is connection
based: a kept-alive connection stays on its pod after that pod turns unready, and a connection to a Service
without ready endpoints is refused (closed at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable

from tests.support.processes import free_port

_CHUNK = 64 * 1024


class Service:
    """Relays each accepted connection to the next ready endpoint (round robin); every relay is owned."""

    def __init__(self, endpoints: Callable[[], list[tuple[str, int]]]) -> None:
        self._endpoints = endpoints
        self.port = free_port()
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepted = 0
        self.refused = 0
        self.routed: dict[int, int] = {}
        """Connections sent to each backend port."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Stop listening, close every relayed connection, and wait for the relays to end."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.accepted += 1
        upstream: asyncio.StreamWriter | None = None
        try:
            ready = self._endpoints()
            if not ready:
                self.refused += 1
                return
            host, port = ready[next(self._turn) % len(ready)]
            try:
                async with asyncio.timeout(2):
                    up_reader, upstream = await asyncio.open_connection(host, port)
            except (OSError, TimeoutError):
                self.refused += 1
                return
            self.routed[port] = self.routed.get(port, 0) + 1
            self._writers.add(upstream)
            async with asyncio.TaskGroup() as relays:
                relays.create_task(_pump(reader, upstream))
                relays.create_task(_pump(up_reader, writer))
        finally:
            for end in (writer, upstream):
                if end is not None:
                    self._writers.discard(end)
                    end.close()
            self._tasks.discard(task)


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy one direction until EOF or an error, then close the other side (both ends go together)."""
    try:
        while chunk := await source.read(_CHUNK):
            sink.write(chunk)
            await sink.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            sink.close()
