"""Who may act on the status page, when `[web] actions` is on: the operator's token, the
sessions of those who logged in with it, the CSRF token of each session, and the origin check.

The design is a login form, as most operator consoles have: the token goes once in a POST to
`/login`; the answer sets a random session id in a cookie that is `HttpOnly` (no script reads
it) and `SameSite=Strict` (no other site's page sends it); the daemon keeps the sessions in
memory (a restart logs everyone out). Every form carries a CSRF token, an HMAC of the session
id under a key derived from the token, and every POST must come from the page's own origin
(`Sec-Fetch-Site`, else `Origin` against `Host`). HTTP Basic was the other choice: the browser
would send the token itself with every request, offers no way to log out, and cross-site forms
would carry it too.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Callable
from datetime import datetime, timedelta

from kron.model.errors import KronError
from kron.model.settings import WebSettings
from kron.model.trust import Trust, secret_refusals
from kron.service.httpd import Request

__all__ = [
    "COOKIE",
    "SESSION_LIFETIME",
    "TOKEN_MIN_CHARS",
    "Sessions",
    "cleared_cookie",
    "cross_origin",
    "read_token",
    "session_cookie",
]

COOKIE = "kron_session"
SESSION_LIFETIME = timedelta(hours=12)
MAX_SESSIONS = 100  # past this, a login ends the session closest to expiring
TOKEN_MIN_CHARS = 16
_TOKEN_MAX_BYTES = 4096
LOGIN_FAILURES_PER_MINUTE = 10  # then logins wait out the minute: guessing stays slow


def read_token(web: WebSettings, *, trust: Trust | None = None) -> str:
    """The token in `[web] token_file`, judged on the file that was opened.

    Raises:
        KronError: naming kron.toml's line and the file, when it is missing, is not a regular
            file, is open to group or others or owned by an untrusted user, or holds no token.
    """
    path = web.token_file
    where = f"{web.token_file_at}: web.token_file" if web.token_file_at else "web.token_file"
    if path is None:
        raise KronError(f"{where}: actions need a token file")
    try:
        # O_NONBLOCK: a FIFO put in its place must not hang the start.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise KronError(f"{where}: cannot read {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KronError(f"{where}: {path} is not a regular file")
        label = f"token file {path}"
        refused = secret_refusals(st, path, trust=trust or Trust.current(), label=label)
        if refused:
            raise KronError(f"{where}: " + "; ".join(refused))
        data = os.read(fd, _TOKEN_MAX_BYTES + 1)  # a regular file gives all it has at once
    finally:
        os.close(fd)
    if len(data) > _TOKEN_MAX_BYTES:
        raise KronError(f"{where}: {path} is over {_TOKEN_MAX_BYTES} bytes; it holds one token")
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise KronError(f"{where}: {path} is not UTF-8 text") from None
    if any(not char.isprintable() for char in token):
        raise KronError(f"{where}: the token in {path} is not one line of printable text")
    if len(token) < TOKEN_MIN_CHARS:
        raise KronError(
            f"{where}: the token in {path} has {len(token)} characters, fewer than "
            f"{TOKEN_MIN_CHARS}; make one with `openssl rand -base64 32 > {path}`"
        )
    return token


class Sessions:
    """The browsers logged in with the token, in memory, each for SESSION_LIFETIME at most."""

    def __init__(self, token: str, *, now: Callable[[], datetime]) -> None:
        self._token_digest = hashlib.sha256(token.encode()).digest()
        # Derived, so the CSRF key is as secret as the token, and a new token changes it.
        self._csrf_key = hmac.new(token.encode(), b"kron web csrf", hashlib.sha256).digest()
        self._now = now
        self._live: dict[bytes, datetime] = {}  # sha256(session id) -> when it expires
        self._failures: list[datetime] = []

    def token_matches(self, offered: str) -> bool:
        """Whether `offered` is the token; in constant time (digests of equal length)."""
        digest = hashlib.sha256(offered.encode("utf-8", "surrogatepass")).digest()
        return hmac.compare_digest(digest, self._token_digest)

    def throttled(self) -> bool:
        """Whether LOGIN_FAILURES_PER_MINUTE wrong tokens came in the last minute."""
        since = self._now() - timedelta(minutes=1)
        self._failures = [at for at in self._failures if at > since]
        return len(self._failures) >= LOGIN_FAILURES_PER_MINUTE

    def failed(self) -> None:
        self._failures.append(self._now())

    def open(self) -> str:
        """A new session; its id goes in the cookie, only its digest stays here."""
        now = self._now()
        self._live = {key: end for key, end in self._live.items() if end > now}
        while len(self._live) >= MAX_SESSIONS:
            del self._live[min(self._live, key=self._live.__getitem__)]
        session = secrets.token_urlsafe(32)
        self._live[_digest(session)] = now + SESSION_LIFETIME
        return session

    def close(self, session: str) -> None:
        self._live.pop(_digest(session), None)

    def end_all(self) -> int:
        """End every session; how many there were."""
        count = len(self._live)
        self._live.clear()
        return count

    def of(self, request: Request) -> str | None:
        """The live session whose id the request's cookie carries; None when there is none."""
        for session in _cookies(request.header("cookie") or "", COOKIE):
            expires = self._live.get(_digest(session))
            if expires is not None and expires > self._now():
                return session
        return None

    def csrf(self, session: str) -> str:
        """The CSRF token of a session's forms: HMAC-SHA256 of its id under the derived key."""
        return hmac.new(self._csrf_key, session.encode(), hashlib.sha256).hexdigest()

    def csrf_matches(self, session: str, offered: str | None) -> bool:
        if not offered:
            return False
        return hmac.compare_digest(
            self.csrf(session).encode(), offered.encode("utf-8", "surrogatepass")
        )


def session_cookie(session: str) -> str:
    seconds = int(SESSION_LIFETIME.total_seconds())
    return f"{COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={seconds}"


def cleared_cookie() -> str:
    return f"{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"


def cross_origin(request: Request) -> str | None:
    """Why a POST is not from a page of this listener's own origin; None when it is.

    A browser says where a request comes from in `Sec-Fetch-Site`, which no page can set;
    browsers without it send `Origin`, compared with the `Host` the request was sent to. A
    request with neither is no form of this page: refused too. A page of another port on the
    same host is same-site (cookies do not tell ports apart) but not same-origin: refused.
    """
    site = request.header("sec-fetch-site")
    if site is not None:
        return None if site == "same-origin" else f"Sec-Fetch-Site is {site!r}"
    origin = request.header("origin")
    if origin is None:
        return "the request carries neither Sec-Fetch-Site nor Origin"
    host = request.header("host")
    if host is None or origin not in (f"http://{host}", f"https://{host}"):
        return f"Origin {origin!r} is not this page's ({host or 'no Host header'})"
    return None


def _digest(session: str) -> bytes:
    return hashlib.sha256(session.encode("utf-8", "surrogatepass")).digest()


def _cookies(header: str, name: str) -> list[str]:
    """Every value of cookie `name` in a Cookie header (a browser may send one per path)."""
    found = []
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name and value:
            found.append(value)
    return found
