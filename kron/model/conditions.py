"""The wait condition language (SPEC 6): `wait.until` parsed into a tree of probes.

`http://host:port/path==200` (or `==2xx`; without `==`, any 2xx), `https://...`,
`tcp://host:port`, `file:/path` (relative: from the job's working directory),
`docker:NAME:healthy`, `docker:NAME:running`, `cmd:...` (`/bin/sh -c`, exits 0), combined with
`and(...)`, `or(...)` and `not(...)`. Inside those, a condition ends at a comma or closing
parenthesis outside quotes and its own parentheses. Parsing is pure: the loader checks every
`wait.until` with it, so `kron validate` reports a bad condition with its field and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from kron.model.errors import ValueProblem, excerpt

__all__ = [
    "AllOf",
    "AnyOf",
    "CmdProbe",
    "Condition",
    "DockerProbe",
    "FileProbe",
    "HttpProbe",
    "Not",
    "Probe",
    "TcpProbe",
    "check_condition",
    "check_http_url",
    "parse_condition",
]

_FUNCTION = re.compile(r"(and|or|not)\s*\(")
_STATUS = re.compile(r"[1-5](\d\d|xx)")
_MAX_NESTING = 16  # and(...), or(...) and not(...) inside one another
_KNOWN = "http://, https://, tcp://, file:, docker:, cmd:, and(...), or(...), not(...)"


@dataclass(frozen=True, kw_only=True, slots=True)
class HttpProbe:
    """An HTTP GET whose status must match `status`."""

    text: str
    url: str
    status: str  # `200` or a class such as `2xx`

    def expects(self, code: int) -> bool:
        return str(code) == self.status or (
            self.status.endswith("xx") and str(code)[0] == self.status[0]
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class TcpProbe:
    """A TCP connect."""

    text: str
    host: str
    port: int


@dataclass(frozen=True, kw_only=True, slots=True)
class FileProbe:
    """A path that must exist."""

    text: str
    path: str


@dataclass(frozen=True, kw_only=True, slots=True)
class DockerProbe:
    """A container that must be `healthy` or `running`."""

    text: str
    container: str
    state: str  # healthy or running


@dataclass(frozen=True, kw_only=True, slots=True)
class CmdProbe:
    """A shell command that must exit 0."""

    text: str
    script: str


@dataclass(frozen=True, kw_only=True, slots=True)
class AllOf:
    """Every item holds (`and`)."""

    items: tuple[Condition, ...]

    @property
    def text(self) -> str:
        return "and(" + ", ".join(item.text for item in self.items) + ")"


@dataclass(frozen=True, kw_only=True, slots=True)
class AnyOf:
    """At least one item holds (`or`)."""

    items: tuple[Condition, ...]

    @property
    def text(self) -> str:
        return "or(" + ", ".join(item.text for item in self.items) + ")"


@dataclass(frozen=True, kw_only=True, slots=True)
class Not:
    """The item does not hold (`not`)."""

    item: Condition

    @property
    def text(self) -> str:
        return f"not({self.item.text})"


Probe = HttpProbe | TcpProbe | FileProbe | DockerProbe | CmdProbe
Condition = Probe | AllOf | AnyOf | Not


@lru_cache(maxsize=256)
def parse_condition(text: str) -> Condition:
    """Parse a `wait.until` expression; raise ValueProblem saying what is wrong and where."""
    return _Parser(text).parse()


def check_condition(text: str) -> str:
    """Return `text` if it parses as a condition; raise ValueProblem saying why not."""
    parse_condition(text)
    return text


def check_http_url(url: str) -> str:
    """Return `url` if it is a usable http(s) URL; raise ValueProblem saying why not."""
    shown = excerpt(url)
    if any(ch.isspace() for ch in url):
        raise ValueProblem(f"bad URL {shown}: it contains a space")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # `http://[::1`: an unclosed IPv6 bracket
        raise ValueProblem(f"bad URL {shown}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueProblem(f"bad URL {shown}: it must start with http:// or https://")
    if not parts.hostname:
        raise ValueProblem(f"bad URL {shown}: no host")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueProblem(f"bad URL {shown}: the port must be a number from 1 to 65535")
    return url


class _Parser:
    """Recursive descent over the text, keeping the position for error messages."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0

    def error(self, message: str, at: int | None = None) -> ValueProblem:
        column = (self.pos if at is None else at) + 1
        return ValueProblem(message.replace("{column}", str(column)))

    def parse(self) -> Condition:
        if not self.text.strip():
            raise ValueProblem("empty condition")
        condition = self.condition()
        self.skip_space()
        if self.pos < len(self.text):
            if self.text[self.pos] == ")":
                raise self.error(
                    "unbalanced parentheses: the `)` at column {column} closes nothing"
                )
            raise self.error(
                f"unexpected {self.text[self.pos]!r} at column {{column}}; "
                "combine conditions with and(...) or or(...)"
            )
        return condition

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def condition(self) -> Condition:
        self.skip_space()
        match = _FUNCTION.match(self.text, self.pos)
        if match is None:
            start = self.pos
            return _probe(self.atom(), start + 1)
        name, opened = match.group(1), self.pos
        if self.depth >= _MAX_NESTING:
            # Recursive descent: a thousand `not(` would exhaust Python's stack.
            raise self.error(
                f"conditions nest deeper than {_MAX_NESTING} levels (column {{column}})"
            )
        self.pos = match.end()
        self.depth += 1
        items = self.arguments(name, opened)
        self.depth -= 1
        if name == "not":
            if len(items) != 1:
                raise self.error(
                    f"not(...) takes one condition, got {len(items)} (column {{column}})", opened
                )
            return Not(item=items[0])
        return AllOf(items=tuple(items)) if name == "and" else AnyOf(items=tuple(items))

    def arguments(self, name: str, opened: int) -> list[Condition]:
        never_closed = f"unbalanced parentheses: the `{name}(` at column {{column}} is never closed"
        items: list[Condition] = []
        while True:
            self.skip_space()
            if self.pos >= len(self.text):
                raise self.error(never_closed, opened)
            if self.text[self.pos] in ",)":
                if not items and self.text[self.pos] == ")":
                    raise self.error(f"{name}() needs a condition (column {{column}})", opened)
                raise self.error("empty condition at column {column}")
            items.append(self.condition())
            self.skip_space()
            if self.pos >= len(self.text):
                raise self.error(never_closed, opened)
            char = self.text[self.pos]
            if char not in ",)":
                raise self.error(f"unexpected {char!r} at column {{column}}; expected `,` or `)`")
            self.pos += 1
            if char == ")":
                return items

    def atom(self) -> str:
        """Read one condition up to a `,` or `)` that is outside quotes and its own parentheses."""
        start = self.pos
        depth = 0
        quote: str | None = None
        quote_at = 0
        opens: list[int] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if quote is not None:
                if char == quote:
                    quote = None
            elif char in "'\"":
                quote, quote_at = char, self.pos
            elif char == "(":
                depth += 1
                opens.append(self.pos)
            elif char == ")" and depth:
                depth -= 1
                opens.pop()
            elif char in ",)":
                break
            self.pos += 1
        if quote is not None:
            raise self.error(f"unterminated {quote} quote at column {{column}}", quote_at)
        if depth:
            raise self.error(
                "unbalanced parentheses: the `(` at column {column} is never closed", opens[-1]
            )
        return self.text[start : self.pos].strip()


def _probe(atom: str, column: int) -> Probe:
    """Turn one written condition into a probe."""
    if atom.startswith(("http://", "https://")):
        url, equals, status = atom.rpartition("==") if "==" in atom else (atom, "", "2xx")
        url, status = url.strip(), status.strip()
        if equals and not _STATUS.fullmatch(status):
            raise ValueProblem(
                f"bad expected status {excerpt(status)} in {excerpt(atom)}; write ==200 or ==2xx"
            )
        return HttpProbe(text=atom, url=check_http_url(url), status=status)
    if atom.startswith("tcp://"):
        try:
            parts = urlsplit(atom)
            port = parts.port
        except ValueError:  # an unclosed IPv6 bracket, a port that is not a number
            parts, port = urlsplit("tcp://"), 0
        if not parts.hostname or not port or parts.path not in ("", "/") or parts.query:
            raise ValueProblem(
                f"bad address {excerpt(atom)}; write tcp://host:port with a port from 1 to 65535"
            )
        try:
            parts.hostname.encode("idna")  # as the resolver will: a label over 63 characters
        except UnicodeError:
            raise ValueProblem(f"bad host name in {excerpt(atom)}") from None
        return TcpProbe(text=atom, host=parts.hostname, port=port)
    if atom.startswith("file:"):
        if not atom[5:].strip():
            raise ValueProblem(f"{excerpt(atom)} names no file; write file:/path")
        return FileProbe(text=atom, path=atom[5:].strip())
    if atom.startswith("docker:"):
        name, colon, state = atom[7:].rpartition(":")
        if not colon or not name or state not in ("healthy", "running"):
            raise ValueProblem(
                f"bad container condition {excerpt(atom)}; "
                "write docker:NAME:healthy or docker:NAME:running"
            )
        return DockerProbe(text=atom, container=name, state=state)
    if atom.startswith("cmd:"):
        if not atom[4:].strip():
            raise ValueProblem(f"{excerpt(atom)} has no command; write cmd:<shell command>")
        return CmdProbe(text=atom, script=atom[4:].strip())
    if not atom:
        raise ValueProblem(f"empty condition at column {column}")
    scheme = re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", atom)
    what = (
        f"unknown scheme {excerpt(scheme.group(0)[:-1])} in {excerpt(atom)}"
        if scheme
        else f"unknown condition {excerpt(atom)}"
    )
    raise ValueProblem(f"{what}; use {_KNOWN}")
