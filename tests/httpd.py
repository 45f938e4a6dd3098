"""A real HTTP server on 127.0.0.1 in a thread, for tests whose client is a child process."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .harness import DEADLINE_S


class Recorder(ThreadingHTTPServer):
    """Answers 200 `pong` (503 on /down) and keeps (method, path, body) of every request."""

    seen: list[tuple[str, str, bytes]]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: Recorder

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.command, self.path, body))
        self.send_response(503 if self.path == "/down" else 200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"pong")

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: the test reads `seen`


@contextlib.contextmanager
def serving() -> Iterator[Recorder]:
    httpd = Recorder(("127.0.0.1", 0), _Handler)
    httpd.seen = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(DEADLINE_S)
