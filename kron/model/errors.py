"""One exception hierarchy; every message is short, specific and names the field."""

from __future__ import annotations

from dataclasses import dataclass


class KronError(Exception):
    """Base of every error kron raises on purpose."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Problem:
    """One finding about one file: an error, or a warning that fails only under --strict."""

    path: str
    message: str
    pointer: str = ""
    line: int | None = None
    column: int | None = None
    severity: str = "error"

    @property
    def field(self) -> str:
        """The field as a dotted path (`retry.attempts`), or "" for the whole file."""
        return ".".join(part for part in self.pointer.split("/") if part)

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.field}:" if self.field else ""
        tag = "" if self.severity == "error" else f" {self.severity}:"
        return f"{where}:{tag}{field} {self.message}"


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
    """The control socket does not answer (exit 3)."""
