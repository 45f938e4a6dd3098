"""Durations (`1h30m`, `500ms`) and sizes (`64KiB`) as written in job files."""

from __future__ import annotations

import functools
import re
from datetime import timedelta

from kron.model.errors import ValueProblem, excerpt

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

# The longest duration a job file may write: ten years. Every duration is added to a time
# somewhere (a slot plus its jitter, a start plus its timeout, now minus a max_age), and a
# datetime ends in the year 9999; with dates bounded too (schedule.py), no sum can overflow.
MAX_DURATION = timedelta(days=3650)
_MAX_DURATION_S = MAX_DURATION.total_seconds()
# The largest size that can be written: 1 TiB, well above any size field's own limit, so a
# limit's message can name the value, and far below what breaks int() or the memory.
MAX_SIZE = 1024**4
_SIZE_DIGITS = 13  # 1 TiB in bytes has 13 digits
_LONGEST_DURATION = 100  # characters; `3650d` needs five


@functools.lru_cache(maxsize=1024)
def parse_duration(text: str) -> timedelta:
    """Turn `1h30m` into a timedelta; units ms, s, m, h, d, w may be combined, largest first.

    Raises:
        ValueProblem: not a duration, or longer than MAX_DURATION.
    """
    text = text.strip()
    pos = 0
    total_s = 0.0
    # Each part is matched where the last ended (finditer would search the rest of the text
    # from every position: quadratic, 6 s for ten thousand digits); no duration is that long.
    while len(text) <= _LONGEST_DURATION and (match := _DURATION_PART.match(text, pos)):
        # A number of a thousand digits is float('inf'), which the bound below refuses.
        total_s += float(match.group(1)) * _DURATION_UNITS_S[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueProblem(
            f"{excerpt(text)} is not a duration; write e.g. '30s', '5m', '1h30m', '500ms', '7d'"
        )
    if not total_s <= _MAX_DURATION_S:
        raise ValueProblem(
            f"{excerpt(text)} is longer than {format_duration(MAX_DURATION)}, "
            "the longest duration kron takes"
        )
    return timedelta(seconds=total_s)


@functools.lru_cache(maxsize=256)
def parse_size(text: str | int) -> int:
    """Turn `64KiB` into bytes; a bare integer is bytes.

    Raises:
        ValueProblem: not a size (a float, a negative number), or over MAX_SIZE.
    """
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ValueProblem(f"{excerpt(text)} is not a size; write e.g. '64KiB', '1MiB', '4096'")
    if isinstance(text, int):
        if not 0 <= text <= MAX_SIZE:
            raise ValueProblem(f"{excerpt(text)} is not a size from 0 to {MAX_SIZE} bytes")
        return text
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ValueProblem(f"{excerpt(text)} is not a size; write e.g. '64KiB', '1MiB', '4096'")
    digits = match.group(1).lstrip("0")
    # Checked before int(): a number of 5,000 digits is more than int() converts.
    size = int(digits or "0") * _SIZE_UNITS[match.group(2)] if len(digits) <= _SIZE_DIGITS else -1
    if not 0 <= size <= MAX_SIZE:
        raise ValueProblem(f"{excerpt(text)} is over {format_size(MAX_SIZE)}")
    return size


def format_size(size: int) -> str:
    """Write a byte count the way a job file would (`64KiB`, `1MiB`, `100B`)."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


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
