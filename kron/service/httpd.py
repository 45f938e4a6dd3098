"""A small HTTP/1.1 server on asyncio streams (h11 does the protocol), for the control socket
and the metrics listener: one request per connection, JSON or HTML answers, no framework."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    import h11

log = logging.getLogger("kron.httpd")
MAX_BODY = 1024 * 1024
READ_TIMEOUT_S = 10.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    # Lower-case names; a repeated header's values joined with ", " (RFC 9110 5.3), except
    # Cookie, whose repeats are joined with "; " as one header would carry them.
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else {}

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True, kw_only=True, slots=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        body = json.dumps(value, ensure_ascii=False, default=str).encode()
        return cls(status=status, body=body)

    @classmethod
    def error(cls, status: int, message: str) -> Response:
        return cls.json({"error": message}, status)


Handler = Callable[[Request], Awaitable[Response]]


async def _serve_connection(
    handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    # Lazy (memory, start-up): an idle daemon that no one asks anything never loads h11.
    import h11

    conn = h11.Connection(h11.SERVER)
    try:
        request = await asyncio.wait_for(_read_request(conn, reader), READ_TIMEOUT_S)
        if request is None:
            return
        try:
            response = await handler(request)
        except Exception:
            log.exception("request %s %s failed", request.method, request.path)
            response = Response.error(500, "internal error; see the daemon's log")
        headers = [
            ("content-type", response.content_type),
            ("content-length", str(len(response.body))),
            ("connection", "close"),
            *response.headers.items(),
        ]
        reason = HTTPStatus(response.status).phrase.encode()
        head = h11.Response(status_code=response.status, headers=headers, reason=reason)
        writer.write(conn.send(head))
        if request.method != "HEAD":  # a HEAD answer declares a length but sends no body
            writer.write(conn.send(h11.Data(data=response.body)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
    except (TimeoutError, h11.ProtocolError, ConnectionError, ValueError) as exc:
        log.debug("bad or slow request: %s", exc)
        with contextlib.suppress(Exception):
            writer.write(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _read_request(conn: h11.Connection, reader: asyncio.StreamReader) -> Request | None:
    import h11  # loaded by the caller already

    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(65536)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                raise ValueError("request body too large")
        elif isinstance(event, h11.EndOfMessage):
            break
        elif isinstance(event, h11.ConnectionClosed):
            return None
    assert head is not None
    target = urlsplit(head.target.decode("latin-1"))
    headers: dict[str, str] = {}
    for raw_name, raw_value in head.headers:  # h11 lower-cases the names
        name, value = raw_name.decode("ascii"), raw_value.decode("latin-1")
        joiner = "; " if name == "cookie" else ", "
        headers[name] = f"{headers[name]}{joiner}{value}" if name in headers else value
    return Request(
        method=head.method.decode("ascii"),
        path=unquote(target.path),
        query=parse_qs(target.query),
        body=bytes(body),
        headers=headers,
    )


async def serve_unix(path: Path, handler: Handler, *, mode: int = 0o600) -> asyncio.Server:
    """Listen on a unix socket with `mode`, replacing a stale socket file left by a crash."""
    os.makedirs(path.parent, exist_ok=True)
    if os.path.exists(path):  # noqa: ASYNC240 - one stat at start-up, before serving
        if await _answers(path):
            raise OSError(f"the control socket {path} is in use by another kron daemon")
        os.unlink(path)
    old_umask = os.umask(0o177)  # never a moment with a wider mode
    try:
        server = await asyncio.start_unix_server(
            lambda r, w: _serve_connection(handler, r, w), path=str(path)
        )
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    return server


async def serve_tcp(host: str, port: int, handler: Handler) -> asyncio.Server:
    return await asyncio.start_server(
        lambda r, w: _serve_connection(handler, r, w), host=host, port=port
    )


async def _answers(path: Path) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True
