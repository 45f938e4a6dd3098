"""The wait condition language (SPEC 6): `wait.until` parsed into a tree of probes.

`http://host:port/path==200` (or `==2xx`; without `==`, any 2xx), `https://...`,
`tcp://host:port`, `file:/path` (relative: from the job's working directory),
`docker:NAME:healthy`, `docker:NAME:running`, `k8s:KIND/NAMESPACE/NAME:CONDITION` (a Kubernetes
object's status condition; `k8s:KIND/NAME:CONDITION` for cluster-wide kinds; `=False` or
`=Unknown` to wait for that status), `cmd:...` (`/bin/sh -c`, exits 0), combined with
`and(...)`, `or(...)` and `not(...)`. Inside those, a condition ends at a comma or closing
parenthesis outside quotes and its own parentheses. Parsing is pure: the loader checks every
`wait.until` with it, so `kron validate` reports a bad condition with its field and line.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from kron.model.errors import ValueProblem, excerpt
from kron.model.kinds import Kind, kind_named

__all__ = [
    "AllOf",
    "AnyOf",
    "CmdProbe",
    "Condition",
    "DockerProbe",
    "FileProbe",
    "HttpProbe",
    "KubeProbe",
    "Not",
    "Probe",
    "TcpProbe",
    "check_condition",
    "check_http_url",
    "condition_warnings",
    "parse_condition",
]

_FUNCTION = re.compile(r"(and|or|not)\s*\(")
_STATUS = re.compile(r"[1-5](\d\d|xx)")
_MAX_NESTING = 16  # and(...), or(...) and not(...) inside one another
_KNOWN = "http://, https://, tcp://, file:, docker:, k8s:, cmd:, and(...), or(...), not(...)"
# Kubernetes' own validation: a namespace is a DNS label, an object name a DNS subdomain, a
# condition type a name with an optional DNS-subdomain prefix (`example.com/feature-1`).
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_NAMESPACE = re.compile(_DNS_LABEL)
_OBJECT_NAME = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_CONDITION_TYPE = re.compile(
    rf"({_DNS_LABEL}(\.{_DNS_LABEL})*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)
_STATUSES = {"true": "True", "false": "False", "unknown": "Unknown"}
_K8S_USAGE = (
    "write k8s:KIND/NAMESPACE/NAME:CONDITION, or k8s:KIND/NAME:CONDITION for cluster-wide kinds"
)


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
class KubeProbe:
    """A Kubernetes object whose status condition `condition` must have `status`."""

    text: str
    kind: Kind
    namespace: str | None  # None for cluster-wide kinds (nodes, CRDs)
    name: str
    condition: str  # the condition type, as written (matched ignoring case, as kubectl wait)
    status: str  # True, False or Unknown

    @property
    def object(self) -> str:
        """`deployments.apps "api"`, as Kubernetes names an object in its messages."""
        return f'{self.kind.resource} "{self.name}"'


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


Probe = HttpProbe | TcpProbe | FileProbe | DockerProbe | KubeProbe | CmdProbe
Condition = Probe | AllOf | AnyOf | Not


@lru_cache(maxsize=256)
def parse_condition(text: str) -> Condition:
    """Parse a `wait.until` expression; raise ValueProblem saying what is wrong and where."""
    return _Parser(text).parse()


def check_condition(text: str) -> str:
    """Return `text` if it parses as a condition; raise ValueProblem saying why not."""
    parse_condition(text)
    return text


def condition_warnings(text: str) -> list[str]:
    """What looks wrong in a condition that parses: a condition type its kind never has."""
    found: list[str] = []
    stack: list[Condition] = [parse_condition(text)]
    while stack:
        item = stack.pop()
        if isinstance(item, AllOf | AnyOf):
            stack.extend(reversed(item.items))
        elif isinstance(item, Not):
            stack.append(item.item)
        elif isinstance(item, KubeProbe) and (message := _unknown_condition(item)):
            found.append(message)
    return found


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
    if atom.startswith("k8s:"):
        return _kube_probe(atom)
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


def _kube_probe(atom: str) -> KubeProbe:
    """`k8s:deployment/prod/api:Available`, `k8s:node/worker-1:Ready=False`."""
    ref, colon, wanted = (part.strip() for part in atom[4:].strip().partition(":"))
    if not colon or not wanted:
        raise ValueProblem(f"{atom!r} names no condition; {_K8S_USAGE}")
    parts = [part.strip() for part in ref.split("/")]
    kind = kind_named(parts[0], within=atom)
    if len(parts) != (3 if kind.namespaced else 2) or not all(parts):
        where = "live in a namespace" if kind.namespaced else "are cluster-wide"
        shape = "NAMESPACE/NAME" if kind.namespaced else "NAME"
        raise ValueProblem(
            f"{kind.plural} {where}: write k8s:{parts[0]}/{shape}:{wanted} (not {atom!r})"
        )
    namespace = parts[1] if kind.namespaced else None
    name = parts[-1]
    if namespace is not None and (len(namespace) > 63 or not _NAMESPACE.fullmatch(namespace)):
        raise ValueProblem(
            f"bad namespace {namespace!r} in {atom!r}: "
            "lowercase letters, digits and '-', at most 63 characters"
        )
    if len(name) > 253 or not _OBJECT_NAME.fullmatch(name):
        raise ValueProblem(
            f"bad object name {name!r} in {atom!r}: "
            "lowercase letters, digits, '-' and '.', at most 253 characters"
        )
    condition, equals, status = (part.strip() for part in wanted.partition("="))
    if not _CONDITION_TYPE.fullmatch(condition) or len(condition) > 316:
        raise ValueProblem(f"bad condition type {condition!r} in {atom!r}; {_K8S_USAGE}")
    if equals and status.lower() not in _STATUSES:
        raise ValueProblem(
            f"bad status {status!r} in {atom!r}; write {condition}=True, =False or =Unknown"
        )
    return KubeProbe(
        text=atom,
        kind=kind,
        namespace=namespace,
        name=name,
        condition=condition,
        status=_STATUSES[status.lower()] if equals else "True",
    )


def _unknown_condition(probe: KubeProbe) -> str | None:
    known = probe.kind.conditions
    if known is None or probe.condition.lower() in (c.lower() for c in known):
        return None
    if not known:
        return (
            f"Kubernetes sets no conditions on {probe.kind.plural}: {probe.text!r} holds only "
            f"if another controller sets {probe.condition!r}"
        )
    close = difflib.get_close_matches(probe.condition, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (
        f"{probe.kind.plural} have the conditions {', '.join(known)}: "
        f"{probe.condition!r} is none of them{hint}"
    )
