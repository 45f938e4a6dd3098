"""Durations (`1h30m`, `500ms`) and sizes (`64KiB`) as written in job files."""

from __future__ import annotations

import functools
import re
from datetime import timedelta

from kron.model.errors import ValueProblem

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_SIZE = re.compile(r"(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "KiB": 1024,
    "MB": 1000**2,
    "MiB": 1024**2,
    "GB": 1000**3,
    "GiB": 1024**3,
}

DURATION_PATTERN = r"^(\d+(\.\d+)?(ms|s|m|h|d|w))+$"
SIZE_PATTERN = r"^\d+\s*(B|KB|KiB|MB|MiB|GB|GiB)?$"


@functools.lru_cache(maxsize=1024)
def parse_duration(text: str) -> timedelta:
    """Turn `1h30m` into a timedelta; units ms, s, m, h, d, w may be combined, largest first."""
    text = text.strip()
    pos = 0
    total_s = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total_s += float(match.group(1)) * _DURATION_UNITS_S[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueProblem(
            f"{text!r} is not a duration; write e.g. '30s', '5m', '1h30m', '500ms', '7d'"
        )
    return timedelta(seconds=total_s)


@functools.lru_cache(maxsize=256)
def parse_size(text: str | int) -> int:
    """Turn `64KiB` into bytes; a bare integer is bytes."""
    if isinstance(text, int):
        return text
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ValueProblem(f"{text!r} is not a size; write e.g. '64KiB', '1MiB', '4096'")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def format_duration(delta: timedelta) -> str:
    """Write a timedelta the way a job file would (`1h30m`, `500ms`)."""
    ms = round(delta.total_seconds() * 1000)
    if ms == 0:
        return "0s"
    parts = []
    for unit, size_ms in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, ms = divmod(ms, size_ms)
        if count:
            parts.append(f"{count}{unit}")
    if ms:
        parts.append(f"{ms}ms")
    return "".join(parts)


def plural(count: int, noun: str) -> str:
    """`1 file`, `2 files`: a count with its noun (nouns that take an s)."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
