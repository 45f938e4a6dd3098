"""One exception hierarchy, and the problems a check finds; every message names the field."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

EXCERPT_CHARS = 60  # of a value or key quoted in a message
MAX_MESSAGE_CHARS = 600  # of a whole message (a list of known fields takes about 400)


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """`value` quoted as a message shows it (`'...'`), cut to `limit` characters.

    Messages quote what a file says; a file that is not a job at all (a link to a secret, a
    binary) must not have its content copied whole into logs, records and pages.
    """
    text = repr(value) if isinstance(value, str) else repr(str(value))
    if len(text) <= limit:
        return text
    return text[: limit - 4] + "...'"


def shorten(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with `...` when longer (a parser's message, say)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def did_you_mean(word: object, options: Iterable[str], *, cutoff: float = 0.6) -> str:
    """`; did you mean 'forbid'?` for a near miss among `options`, else ""."""
    if not isinstance(word, str) or len(word) > 200:  # no near miss is that long: spare difflib
        return ""
    import difflib  # lazy (memory): a daemon loads it with the first misspelt field, if ever

    hint = difflib.get_close_matches(word, list(options), n=1, cutoff=cutoff)
    return f"; did you mean {hint[0]!r}?" if hint else ""


class KronError(Exception):
    """Base of every error kron raises on purpose."""


class Severity(enum.StrEnum):
    """How much a problem weighs: an error fails a check, a warning only under --strict."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, kw_only=True, slots=True)
class Problem:
    """One finding about one file: an error, or a warning that fails only under --strict."""

    path: str
    message: str
    pointer: str = ""
    line: int | None = None
    column: int | None = None
    severity: Severity = Severity.ERROR

    def __post_init__(self) -> None:
        # The last guard: whatever a message quotes, it never carries a whole file along.
        if len(self.message) > MAX_MESSAGE_CHARS:
            object.__setattr__(self, "message", self.message[: MAX_MESSAGE_CHARS - 3] + "...")
        if len(self.pointer) > MAX_MESSAGE_CHARS:
            object.__setattr__(self, "pointer", self.pointer[: MAX_MESSAGE_CHARS - 3] + "...")

    @property
    def field(self) -> str:
        """The field as a dotted path (`retry.attempts`), or "" for the whole file."""
        return ".".join(part for part in self.pointer.split("/") if part)

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.field}:" if self.field else ""
        tag = "" if self.is_error else f" {self.severity}:"
        return f"{where}:{tag}{field} {self.message}"


class Findings:
    """A mixin for whatever carries a `problems` list: its errors and its warnings."""

    __slots__ = ()
    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_error]


class SpecError(KronError):
    """A job file (or kron.toml) is not a valid definition."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ValueProblem(KronError):
    """A single value is wrong; the loader adds the file and the field."""


class UsageError(KronError):
    """The command line is wrong (exit 2)."""


class DaemonUnreachable(KronError):
    """The control socket does not answer (exit 3).

    `absent` is True when no daemon serves the directory (no socket, nothing listening, or a
    daemon for another directory), False when one may run but cannot be asked (permission,
    no answer in time): only the first lets `kron run` run the job itself.
    """

    def __init__(self, message: str, *, absent: bool = True) -> None:
        super().__init__(message)
        self.absent = absent
