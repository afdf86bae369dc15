"""A switchable TCP front for browser tests: the stand-in for a Kubernetes Service, which cannot run here.

A browser's ``EventSource`` reconnects to the same URL; on Kubernetes that URL is a Service whose endpoints
change as pods turn unready. This front listens on one loopback port and forwards each new connection to the
pod it currently points at; connections already made stay where they are, as kube-proxy's do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from tests.support.processes import free_port


class Front:
    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except (OSError, TimeoutError):
            writer.close()
            return
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(_pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            sink.close()


@contextlib.asynccontextmanager
async def front(target_port: int) -> AsyncIterator[Front]:
    proxy = Front(target_port)
    proxy._server = await asyncio.start_server(proxy._accept, "127.0.0.1", proxy.port)
    try:
        yield proxy
    finally:
        await proxy.close()
