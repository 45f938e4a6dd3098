"""Real servers on 127.0.0.1 for delivery tests: an HTTP server and an SMTP server (aiosmtpd).

Both run in the test's own event loop on a port the kernel picks, and record what they get.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from types import TracebackType
from typing import Any, cast

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from .harness import DEADLINE_S


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"ok"
    content_type: str = "text/plain"
    hang: bool = False  # read the request, never answer
    gate: asyncio.Event | None = None  # answer once this is set


class HttpRecorder:
    """An HTTP/1.1 server that records every request and answers as told, per path."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._answers: dict[str, Answer] = {}
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()  # ends requests held by `hang` and `gate`
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self.port = 0

    async def __aenter__(self) -> HttpRecorder:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        self._closing.set()
        for writer in self._writers:
            writer.close()  # a handler waiting for the next request reads the end of the stream
        await asyncio.wait_for(asyncio.gather(*self._handlers), DEADLINE_S)
        await self._server.wait_closed()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, answer: Answer) -> None:
        self._answers[path] = answer

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    async def until(self, count: int, timeout: float = DEADLINE_S) -> None:
        """Wait until at least `count` requests have arrived."""

        async def wait() -> None:
            while len(self.requests) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            while request := await _read_request(reader):
                self.requests.append(request)
                self._changed.set()
                answer = self._answers.get(request.path, Answer())
                if answer.hang or answer.gate is not None:
                    await self._hold(None if answer.hang else answer.gate)
                if self._closing.is_set():
                    return
                head = (
                    f"HTTP/1.1 {answer.status} X\r\nContent-Type: {answer.content_type}\r\n"
                    f"Content-Length: {len(answer.body)}\r\n\r\n"
                )
                writer.write(head.encode() + answer.body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.close()

    async def _hold(self, gate: asyncio.Event | None) -> None:
        """Wait for the gate (for ever, with None) or for the server to close."""
        waits = {asyncio.ensure_future(self._closing.wait())}
        if gate is not None:
            waits.add(asyncio.ensure_future(gate.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    line = await reader.readline()
    if not line:
        return None
    method, path, _ = line.decode().split(" ", 2)
    headers: dict[str, str] = {}
    while (raw := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = raw.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Request(method=method, path=path, headers=headers, body=body)


def json_answer(value: Any) -> Answer:
    return Answer(body=json.dumps(value).encode(), content_type="application/json")


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage
    tls: bool
    login: str | None


@dataclass
class MailRecorder:
    """An SMTP server (aiosmtpd) that keeps every message it accepts."""

    tls_context: ssl.SSLContext | None = None
    logins: dict[str, str] | None = None  # user -> password; AUTH required (over TLS) if set
    mails: list[Mail] = field(default_factory=list)
    port: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> MailRecorder:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    def _protocol(self) -> SMTP:
        return SMTP(
            self,
            hostname="mail.test",
            tls_context=self.tls_context,
            require_starttls=self.tls_context is not None,
            auth_required=self.logins is not None,
            auth_require_tls=True,
            authenticator=self._authenticate if self.logins is not None else None,
        )

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        assert self.logins is not None
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        return AuthResult(success=self.logins.get(user) == password, auth_data=user)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = cast(bytes, envelope.original_content or envelope.content)
        content = content.replace(b"\r\n", b"\n")  # SMTP's line ends, as Python reads mail
        self.mails.append(
            Mail(
                sender=str(envelope.mail_from),
                recipients=list(envelope.rcpt_tos),
                message=message_from_bytes(content, policy=policy.default),
                tls=session.ssl is not None,
                login=cast(str | None, session.auth_data),
            )
        )
        self._changed.set()
        return "250 OK"

    async def until(self, count: int, timeout: float = DEADLINE_S) -> None:
        async def wait() -> None:
            while len(self.mails) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, never listened, then closed)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Sleeps:
    """A sleeper for back-off that returns at once and remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await asyncio.sleep(0)
