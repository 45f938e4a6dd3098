"""Secrets: which values must never appear in what kron writes, and how they are masked.

Secret values are `env` entries marked `secret = true` and every value of a job's `env_file`
(and, for a notification, its target's tokens and passwords). Records, logs, notifications and
`kron validate` output show `***` in their place. Longer values are masked first, so a secret
that contains another is masked whole.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from kron.model.errors import Problem
from kron.model.job import Job
from kron.model.run import Output
from kron.model.trust import refusals

__all__ = ["MASK", "NO_SECRETS", "Secrets", "read_env_file"]

MASK = "***"
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
AnyOutput = TypeVar("AnyOutput", bound=Output)


class Secrets:
    """A set of secret values, masked longest first."""

    __slots__ = ("_values",)

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values = tuple(sorted({v for v in values if v}, key=len, reverse=True))

    @classmethod
    def of_job(cls, job: Job, file_env: Mapping[str, str] | None = None) -> Secrets:
        """A job's secrets: its secret `env` entries and the values of its env_file, if read."""
        if not job.secret_env and not file_env:
            return NO_SECRETS  # most jobs: nothing to sort or to mask
        found = [job.env[name] for name in job.secret_env if job.env.get(name)]
        return cls([*found, *(file_env or {}).values()])

    @classmethod
    def in_tables(cls, *tables: Mapping[str, Any]) -> Secrets:
        """Secret `env` entries of raw job tables, as messages would quote them (the loader's
        messages are built before there is a Job)."""
        found = []
        for table in tables:
            env = table.get("env")
            for entry in env.values() if isinstance(env, dict) else ():
                if not isinstance(entry, dict) or not entry.get("secret"):
                    continue
                value = entry.get("value")
                if value is not None and value != "":
                    found.append(
                        value
                        if isinstance(value, str)
                        else json.dumps(value, ensure_ascii=False, default=str)
                    )
        return cls(found)

    def __bool__(self) -> bool:
        return bool(self._values)

    def __add__(self, values: Iterable[str]) -> Secrets:
        return Secrets([*self._values, *values])

    @property
    def values(self) -> tuple[str, ...]:
        return self._values

    def mask(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def mask_deep(self, value: Any) -> Any:
        """Mask every string inside nested mappings and lists."""
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, Mapping):
            return {key: self.mask_deep(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask_deep(item) for item in value]
        return value

    def mask_output(self, output: AnyOutput) -> AnyOutput:
        """Mask what an output carries to a record beside its streams: the error, and `extra`
        (a probe's reason, an HTTP status line). stdout and stderr are masked as they are read,
        before they are cut (`stream()`)."""
        if not self._values:
            return output
        return dataclasses.replace(
            output,
            error=self.mask(output.error) if output.error else output.error,
            extra=self.mask_deep(output.extra),
        )

    def stream(self) -> MaskingStream:
        """A masker for a byte stream read in pieces (a pipe, a response body)."""
        return MaskingStream(self._values)

    def mask_problems(self, problems: list[Problem]) -> list[Problem]:
        """Errors quote values too (`expected a string, got 12345`)."""
        if not self._values:
            return problems
        return [dataclasses.replace(p, message=self.mask(p.message)) for p in problems]


NO_SECRETS = Secrets()


class MaskingStream:
    """Masks secrets in a stream as it passes, before anything is cut from it.

    A secret may straddle two reads: the last (longest secret - 1) bytes are held back until
    the next piece shows whether they begin one. What passes on is masked; `flush` gives the
    rest at the end of the stream.
    """

    __slots__ = ("_held", "_hold", "_secrets")

    def __init__(self, values: Iterable[str]) -> None:
        self._secrets = [value.encode() for value in values]  # longest first, as given
        self._hold = max((len(s) for s in self._secrets), default=1) - 1
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        """Mask `chunk` (with what was held back); return what can safely pass on."""
        data = self._mask(self._held + chunk)
        cut = max(len(data) - self._hold, 0)
        self._held = data[cut:]
        return data[:cut]

    def flush(self) -> bytes:
        data, self._held = self._held, b""
        return data

    def _mask(self, data: bytes) -> bytes:
        for secret in self._secrets:
            if secret in data:
                data = data.replace(secret, MASK.encode())
        return data


def read_env_file(path: Path) -> dict[str, str]:
    """Parse `KEY=value` lines (`export`, quotes and `#` comments allowed).

    The file is trusted again here, at fire time: it may have changed since the job loaded.

    Raises:
        ValueError: the file is refused (owner, mode) or a line is not `KEY=value`.
        OSError: the file cannot be read.
    """
    if refused := refusals(path):
        raise ValueError("; ".join(refused))
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if not match:
            raise ValueError(f"{path}:{number}: not a KEY=value line")
        value = match.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[match.group(1)] = value
    return values
