"""A tiny HTTP server on 127.0.0.1 that answers every GET with one document the test may swap at any time:
a JWKS endpoint of an identity provider, or a blank page of some web origin for the browser tests."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.processes import free_port


class StaticServer:
    def __init__(self, body: bytes = b"", content_type: str = "text/html; charset=utf-8") -> None:
        self.body = body
        self.content_type = content_type
        self.port = free_port()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = owner.body
                self.send_response(200)
                self.send_header("Content-Type", owner.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @contextlib.contextmanager
    def running(self) -> Iterator[StaticServer]:
        """Serve for the block; the server thread is stopped and joined afterwards."""
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)
