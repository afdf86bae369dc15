"""uvicorn's server, with SIGTERM turned into a drain.

uvicorn closes every WebSocket with 1012 the moment it gets SIGTERM, all at once, and an open SSE response
holds its shutdown. A pod that is told to stop (scale-down, rolling update, node drain) should instead move its
clients away at a paced rate first. So the first SIGTERM starts the drain (with exit), and the server stops when
the drain is done (a drain already running is told to exit when done); a second SIGTERM,
or SIGINT (Ctrl-C on a laptop), stops at once as uvicorn always does.

One server serves both of the pod's listeners, the public port and the admin port (:func:`listen`, then
``run(sockets=...)``): one event loop, one lifespan, one shutdown, so the admin port keeps answering drain
status for as long as the drain runs, and both ports close together.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import socket
from types import FrameType

import uvicorn

from fleetcast.drain.controller import DrainController


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` for ``run(sockets=...)``; the event loop starts listening on it when
    the app has started, as uvicorn does with the host and port it binds itself. A port in use is a
    :class:`SystemExit` with its address, not a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


class GatewayServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain: DrainController) -> None:
        super().__init__(config)
        self._drain = drain
        self._loop: asyncio.AbstractEventLoop | None = None
        self._terminating = False
        drain.on_exit = self._exit_now

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def _exit_now(self) -> None:
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM:
            if not self._terminating and not self.should_exit and self._loop is not None:
                # The first SIGTERM drains (or, if a preStop drain runs already, makes it exit when done).
                # Called from the signal handler: hand it to the loop's thread.
                self._terminating = True
                self._loop.call_soon_threadsafe(lambda: self._drain.begin(exit=True))
                return
            if self._drain.state == "drained":
                # Already drained (the usual preStop order): stop, and exit 0 rather than re-raise the signal.
                self.should_exit = True
                return
        super().handle_exit(sig, frame)


def tune_gc(young_threshold: int) -> None:
    """Freeze what start-up allocated (modules, settings, the app: never garbage, so never traversed again) and
    let ``young_threshold`` allocations pass between young-generation collections; 0 leaves Python's default."""
    gc.collect()
    gc.freeze()
    if young_threshold > 0:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)
