"""Turn checked values into model values, each problem kept with its field and line.

The Builder is what `build` (a job's fields), `build_action` (its action and deliveries) and
`settings` (kron.toml) share: conversion with a fallback, durations with their bounds, zones.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kron.config.documents import Document
from kron.model.errors import Problem, Severity, ValueProblem, did_you_mean, excerpt
from kron.model.units import format_duration, parse_duration

__all__ = [
    "MIN_KILL_GRACE",
    "MIN_TIMEOUT",
    "MIN_WAIT_EVERY",
    "Builder",
    "integer",
    "zone_named",
]

T = TypeVar("T")

_ZERO = timedelta(0)
# Least values where a smaller one breaks the job rather than tunes it: a `timeout` of 0s times
# out every run, a `wait.every` of 0s polls in a busy loop, a `kill_grace` of 0s is no grace.
MIN_TIMEOUT = timedelta(milliseconds=100)
MIN_KILL_GRACE = timedelta(milliseconds=100)
MIN_WAIT_EVERY = timedelta(milliseconds=100)


@functools.lru_cache(maxsize=256)
def zone_named(key: str) -> ZoneInfo:
    """The zone of an IANA name; ValueProblem with the nearest names when there is none."""
    try:
        if len(key) > _LONGEST_ZONE_NAME:
            raise ValueError(key)
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a folder of the zone database (`America`), a name too long for a file name.
        advice = did_you_mean(key, _zone_names(), cutoff=0.7)
        advice = advice or "; use an IANA name like 'Europe/Berlin'"
        raise ValueProblem(f"unknown time zone {excerpt(key)}{advice}") from None


_LONGEST_ZONE_NAME = 64  # the longest IANA name has 32 characters


@functools.cache
def _zone_names() -> list[str]:
    return sorted(zoneinfo.available_timezones())


class Builder:
    """Turn a validated mapping into model values, collecting every problem with its field."""

    def __init__(self, doc: Document, defaults_origin: Mapping[str, str] | None = None) -> None:
        self.doc = doc
        self.defaults_origin = defaults_origin or {}
        self.problems: list[Problem] = []

    def problem(
        self, pointer: list[str | int], message: str, severity: Severity = Severity.ERROR
    ) -> None:
        field = pointer[0] if pointer else None
        if isinstance(field, str) and field not in self.doc.data:
            origin = self.defaults_origin.get(field)
            if origin is not None:  # the job file does not show it: say where it is written
                message += f" (the value comes from [defaults] in {origin})"
        self.problems.append(self.doc.problem(pointer, message, severity))

    def convert(
        self, pointer: list[str | int], fn: Callable[[Any], T], value: Any, fallback: T
    ) -> T:
        try:
            return fn(value)
        except ValueProblem as exc:
            self.problem(pointer, str(exc))
            return fallback

    def duration(
        self,
        data: Mapping[str, Any],
        key: str,
        default: timedelta,
        *at: str | int,
        minimum: timedelta = _ZERO,
    ) -> timedelta:
        value = data.get(key)
        if value is None:
            return default
        return self.convert([*at, key], functools.partial(_duration, minimum), value, default)

    def maybe_duration(
        self, data: Mapping[str, Any], key: str, *at: str | int, minimum: timedelta = _ZERO
    ) -> timedelta | None:
        value = data.get(key)
        if value is None:
            return None
        return self.convert([*at, key], functools.partial(_duration, minimum), value, None)


def _duration(minimum: timedelta, text: str) -> timedelta:
    """A duration no shorter than `minimum` (and, as every duration, no longer than ten years)."""
    value = parse_duration(text)
    if value < minimum:
        raise ValueProblem(
            f"{excerpt(text)} is shorter than {format_duration(minimum)}, the least kron takes here"
        )
    return value


def integer(value: Any) -> Any:
    """An integer the schema accepted: JSON Schema counts 1.0 as an integer, Python does not."""
    return int(value) if isinstance(value, float) else value
