"""When a job fires: cron expressions, macros and DST rules as pure functions of time.

Cron fields are matched by croniter on naive wall-clock datetimes (calendar arithmetic only);
this module then maps each wall time to real instants with zoneinfo, following ISC cron's DST
rules. Nothing here reads the clock: every answer is a function of the `after` it is given.
"""

from __future__ import annotations

import copy
import enum
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter

from kron.model.digests import sha256
from kron.model.errors import ValueProblem, excerpt
from kron.model.units import parse_duration

__all__ = [
    "AtSchedule",
    "CronSchedule",
    "EverySchedule",
    "Schedule",
    "ScheduleKind",
    "jitter_offset",
    "offset_change",
    "parse_schedule",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Naive on purpose: croniter is only ever asked calendar questions, never zone questions.
_REFERENCE_WALL = datetime(2000, 1, 1)  # noqa: DTZ001 - a wall time, not an instant
# A later instant can only have an earlier wall time right after a backward DST shift; real
# zones shift by at most 2 h, so looking 3 h ahead of `after` finds every shift that matters.
_MAX_SHIFT = timedelta(hours=3)
_ONE_SECOND = timedelta(seconds=1)
_NO_JITTER = timedelta(0)
_MAX_STEPS = 16  # candidates tried per search: at most one gap and one repeated hour are skipped
# An @at time lies in these years: nothing fires before the epoch, and a slot must leave room
# to add the longest duration (units.MAX_DURATION, ten years) before datetime's year 9999.
_AT_FIRST_YEAR = 1970
_LONGEST_EXPR = 1000  # characters: every minute listed, `0,1,...,59`, takes 170
_AT_LAST_YEAR = 9000

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_KNOWN_MACROS = (*_MACROS, "@every", "@at", "@manual", "@reboot")

_FIELD_NAMES = {
    5: ("minute", "hour", "day-of-month", "month", "day-of-week"),
    6: ("second", "minute", "hour", "day-of-month", "month", "day-of-week"),
}
_FIELD_HINTS = {
    "second": "0-59",
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31 or L",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT, with 5L or MON#2",
}
_NUMERIC = "0123456789*,-/"
_FIELD_CHARS = dict.fromkeys(("second", "minute", "hour", "month"), _NUMERIC) | {
    "day-of-month": _NUMERIC + "l?",
    "day-of-week": _NUMERIC + "l#?",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_WORD = re.compile(r"[a-z]{3}")
_LAST_WEEKDAY = re.compile(r"([0-7]|[a-z]{3})l")


class ScheduleKind(enum.Enum):
    """The forms a schedule can take."""

    CRON = "cron"
    EVERY = "every"
    AT = "at"
    MANUAL = "manual"
    REBOOT = "reboot"


@dataclass(frozen=True, kw_only=True, slots=True)
class Schedule:
    """A parsed schedule; used as is for @manual and @reboot, which never fire on their own."""

    expr: str
    zone: ZoneInfo
    kind: ScheduleKind

    def __reduce__(self) -> tuple[Any, tuple[str, ZoneInfo]]:
        # Rebuilt through the parse cache: jobs loaded in worker processes share one object
        # per expression again, and unpickling costs a dictionary lookup.
        return (parse_schedule, (self.expr, self.zone))

    def next_fire(self, after: datetime) -> datetime | None:
        """Return the first slot strictly after `after`, in UTC, or None when there is none.

        Args:
            after: an aware datetime in any zone; microseconds are allowed.

        Returns:
            An aware datetime with `tzinfo=datetime.UTC`, or None.
        """
        _require_aware(after)
        return None

    def slots_between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Yield every slot in (start, end], oldest first, in UTC (catch-up after downtime)."""
        slot = self.next_fire(start)
        while slot is not None and slot <= end:
            yield slot
            slot = self.next_fire(slot)

    def min_interval(self) -> timedelta | None:
        """Return the smallest gap between two consecutive slots, or None for one-shot kinds."""
        return None


@dataclass(frozen=True, kw_only=True, slots=True)
class CronSchedule(Schedule):
    """A 5- or 6-field cron expression (macros like @daily included) in a zone."""

    fields: str  # lower-cased croniter text, `5L` rewritten as croniter's `L5`
    with_seconds: bool  # a leading seconds field is present
    day_or: bool  # Vixie cron: day-of-month OR day-of-week only when both are restricted
    periodic: bool  # a time field starts with `*` (ISC wildcard job): gaps skip, repeats fire

    def next_fire(self, after: datetime) -> datetime | None:
        """Return the first slot strictly after `after`, in UTC, or None when there is none."""
        after = _require_aware(after).astimezone(UTC)
        cron = _prototype(self.fields, self.day_or, self.with_seconds)
        try:
            first = _first_in_wall_order(cron, self.zone, self.periodic, after)
            if not self.periodic:
                return first
            return _first_in_repeated_hour(cron, self.zone, after, first) or first
        except CroniterBadDateError:
            return None

    def min_interval(self) -> timedelta | None:
        """Return the smallest wall-clock gap among the first 20 slots after a fixed instant."""
        return _min_wall_gap(self.fields, self.day_or, self.with_seconds)


@dataclass(frozen=True, kw_only=True, slots=True)
class EverySchedule(Schedule):
    """`@every 90s`: slots at every multiple of the interval since the Unix epoch."""

    interval: timedelta

    def next_fire(self, after: datetime) -> datetime | None:
        """Return the first epoch-aligned slot strictly after `after`, in UTC."""
        elapsed = _require_aware(after) - _EPOCH
        return _EPOCH + (elapsed // self.interval + 1) * self.interval

    def min_interval(self) -> timedelta | None:
        """Return the interval."""
        return self.interval


@dataclass(frozen=True, kw_only=True, slots=True)
class AtSchedule(Schedule):
    """`@at 2026-12-01T10:00`: one slot."""

    at: datetime  # UTC

    def next_fire(self, after: datetime) -> datetime | None:
        """Return the one slot if it lies strictly after `after`, else None."""
        return self.at if self.at > _require_aware(after) else None


def parse_schedule(expr: str, zone: ZoneInfo) -> Schedule:
    """Parse a schedule expression; results are cached, so equal inputs give the same object.

    Args:
        expr: a cron expression (5 fields, or 6 with leading seconds) or a macro
            (`@daily`, `@every 90s`, `@at 2026-12-01T10:00`, `@manual`, `@reboot`, ...).
        zone: the zone wall-clock times are read in.

    Returns:
        A frozen `Schedule` (a `CronSchedule`, `EverySchedule` or `AtSchedule` where it fires).

    Raises:
        ValueProblem: the expression is malformed or can never fire.
    """
    return _parse_cached(expr, zone)


def jitter_offset(job_id: str, jitter: timedelta) -> timedelta:
    """Return a stable offset in [0, jitter) derived from sha256 of the job id.

    Args:
        job_id: the job's id; the same id gives the same offset in every process.
        jitter: the width of the window; zero gives zero.
    """
    if jitter < timedelta(0):
        raise ValueError(f"jitter must not be negative, got {jitter}")
    if not jitter:
        return _NO_JITTER  # most jobs: no hash to compute, and one shared value
    span_us = jitter // timedelta(microseconds=1)
    fraction = int.from_bytes(sha256(job_id.encode()).digest()[:8], "big")
    return timedelta(microseconds=(fraction * span_us) >> 64)


# Keyed on the ZoneInfo object: `ZoneInfo(key)` returns one shared object per key, so this is
# keyed on (expr, zone.key) in practice, while `ZoneInfo.no_cache` zones stay apart.
@functools.lru_cache(maxsize=4096)
def _parse_cached(expr: str, zone: ZoneInfo) -> Schedule:
    text = expr.strip()
    if not text:
        raise ValueProblem("schedule is empty")
    if len(text) > _LONGEST_EXPR:
        # croniter expands a list of 150,000 minutes for seconds; no real schedule is that long.
        raise ValueProblem(f"schedule is longer than {_LONGEST_EXPR} characters")
    if not text.startswith("@"):
        return _parse_cron(expr, text, zone)
    head, *tail = text.split(maxsplit=1)
    name, arg = head.lower(), "".join(tail)
    if name not in _KNOWN_MACROS:
        raise ValueProblem(f"unknown macro {excerpt(name)}; known: {', '.join(_KNOWN_MACROS)}")
    if name == "@every":
        return _parse_every(expr, arg, zone)
    if name == "@at":
        return _parse_at(expr, arg, zone)
    if arg:
        raise ValueProblem(f"{name} takes no argument; got {excerpt(arg)}")
    if name in _MACROS:
        return _parse_cron(expr, _MACROS[name], zone)
    return Schedule(expr=expr, zone=zone, kind=ScheduleKind(name.removeprefix("@")))


def _parse_cron(expr: str, text: str, zone: ZoneInfo) -> CronSchedule:
    fields = text.split()
    if len(fields) not in _FIELD_NAMES:
        raise ValueProblem(
            f"cron expressions have 5 fields (or 6 with leading seconds); got {len(fields)}"
        )
    names = _FIELD_NAMES[len(fields)]
    lowered = [_to_croniter(name, field) for name, field in zip(names, fields, strict=True)]
    with_seconds = len(fields) == 6
    dom, dow = fields[-3], fields[-1]
    # ISC cron: a `*` (or `?`) at the start of either day field makes the two an AND.
    day_or = not (dom.startswith(("*", "?")) or dow.startswith(("*", "?")))
    normalized = " ".join(lowered)
    try:
        _prototype(normalized, day_or, with_seconds)
    except (CroniterError, ValueError, TypeError, OverflowError):
        raise _field_problem(names, fields, lowered, with_seconds) from None
    if _never_fires(normalized, day_or, with_seconds):
        raise ValueProblem(f"never fires: no date matches {excerpt(text)}")
    return CronSchedule(
        expr=expr,
        zone=zone,
        kind=ScheduleKind.CRON,
        fields=normalized,
        with_seconds=with_seconds,
        day_or=day_or,
        # ISC cron's "wildcard" jobs (MIN_STAR or HR_STAR: the minute or the hour field begins
        # with `*`) run in every real hour of a DST change; the others are fixed-time. A
        # leading seconds field, kron's own, counts as one of them.
        periodic=any(field.startswith("*") for field in fields[:-3]),
    )


def _to_croniter(name: str, field: str) -> str:
    """Lower-case one field, refuse what kron does not support, rewrite `5L` as `L5`."""
    low = field.lower()
    words = _MONTHS if name == "month" else _WEEKDAYS if name == "day-of-week" else ()
    bare = _WORD.sub(lambda m: "" if m.group() in words else m.group(), low)
    if not set(bare) <= set(_FIELD_CHARS[name]):
        raise ValueProblem(
            f"{name} field {excerpt(field)} is not valid; expected {_FIELD_HINTS[name]}"
        )
    if name != "day-of-week":
        return low
    return ",".join(_last_weekday(part) for part in low.split(","))


def _last_weekday(part: str) -> str:
    match = _LAST_WEEKDAY.fullmatch(part)
    if match is None:
        return part
    day = match.group(1)
    number = _WEEKDAYS.index(day) if day in _WEEKDAYS else int(day) % 7
    return f"l{number}"


def _field_problem(
    names: tuple[str, ...], fields: list[str], lowered: list[str], with_seconds: bool
) -> ValueProblem:
    """Name the first field croniter refuses on its own."""
    for index, name in enumerate(names):
        probe = ["*"] * len(names)
        probe[index] = lowered[index]
        try:
            croniter.expand(" ".join(probe), second_at_beginning=with_seconds)
        except (CroniterError, ValueError, TypeError, OverflowError):
            return ValueProblem(
                f"{name} field {excerpt(fields[index])} is not valid; expected {_FIELD_HINTS[name]}"
            )
    return ValueProblem(f"not a valid cron expression: {excerpt(' '.join(fields))}")


def _parse_every(expr: str, arg: str, zone: ZoneInfo) -> EverySchedule:
    if not arg:
        raise ValueProblem("@every needs an interval, e.g. '@every 90s'")
    try:
        interval = parse_duration(arg)
    except ValueProblem as exc:
        raise ValueProblem(f"@every: {exc}") from None
    if interval < _ONE_SECOND or interval % _ONE_SECOND:
        raise ValueProblem(
            f"@every {excerpt(arg)}: the interval must be whole seconds, at least 1s"
        )
    return EverySchedule(expr=expr, zone=zone, kind=ScheduleKind.EVERY, interval=interval)


def _parse_at(expr: str, arg: str, zone: ZoneInfo) -> AtSchedule:
    example = "write e.g. '@at 2026-12-01T10:00' or '@at 2026-12-01T10:00:00+01:00'"
    if not arg:
        raise ValueProblem(f"@at needs a date and time; {example}")
    try:
        date.fromisoformat(arg)
    except ValueError:
        pass
    else:
        raise ValueProblem(f"@at needs a time as well as a date; {example}")
    try:
        when = datetime.fromisoformat(arg)
    except ValueError:
        raise ValueProblem(f"@at {excerpt(arg)} is not an ISO date-time; {example}") from None
    if when.microsecond:
        raise ValueProblem(f"@at {excerpt(arg)}: give whole seconds")
    if not _AT_FIRST_YEAR <= when.year <= _AT_LAST_YEAR:
        raise ValueProblem(
            f"@at {excerpt(arg)}: the year must be from {_AT_FIRST_YEAR} to {_AT_LAST_YEAR}"
        )
    # A naive @at is a fixed-time slot in the job's zone, with the same DST handling.
    instant = _resolve(when, zone)[0] if when.tzinfo is None else when.astimezone(UTC)
    return AtSchedule(expr=expr, zone=zone, kind=ScheduleKind.AT, at=instant)


@functools.lru_cache(maxsize=4096)
def _prototype(fields: str, day_or: bool, with_seconds: bool) -> Any:
    """Build croniter once per expression (it costs ~250 µs); callers search on a copy."""
    return croniter(
        fields,
        _REFERENCE_WALL,
        ret_type=datetime,
        day_or=day_or,
        second_at_beginning=with_seconds,
    )


@functools.lru_cache(maxsize=4096)
def _never_fires(fields: str, day_or: bool, with_seconds: bool) -> bool:
    """Search croniter's bounded window (50 years, a few ms) for any matching date."""
    try:
        _next_wall(_prototype(fields, day_or, with_seconds), _REFERENCE_WALL)
    except CroniterBadDateError:
        return True
    return False


@functools.lru_cache(maxsize=1024)
def _min_wall_gap(fields: str, day_or: bool, with_seconds: bool) -> timedelta:
    cron = _prototype(fields, day_or, with_seconds)
    walls = [_next_wall(cron, _REFERENCE_WALL)]
    for _ in range(20):
        walls.append(_next_wall(cron, walls[-1]))
    return min(later - earlier for earlier, later in pairwise(walls))


def _next_wall(cron: Any, wall: datetime) -> datetime:
    """Return the first naive slot strictly after the naive wall time `wall`."""
    slot: datetime = copy.copy(cron).get_next(datetime, wall)
    return slot


def _first_in_wall_order(cron: Any, zone: ZoneInfo, periodic: bool, after: datetime) -> datetime:
    """Walk slots from `after`'s own wall time and return the first real instant past it."""
    wall = _wall(after, zone)
    for _ in range(_MAX_STEPS):
        wall = _next_wall(cron, wall)
        earlier, later, in_gap = _resolve(wall, zone)
        if in_gap:
            # ISC cron: a fixed-time slot in a spring-forward gap runs once as the gap ends;
            # a periodic one only runs in real hours. `earlier` is the transition instant.
            if not periodic and earlier > after:
                return earlier
            wall = _wall(earlier, zone) - _ONE_SECOND
        elif earlier > after:
            return earlier
        elif periodic and later > after:
            return later
        elif later > after:
            # ISC cron runs a fixed-time slot once in a repeated hour, at its first occurrence,
            # which `after` has passed: skip the rest of the repeated hour.
            wall = _wall(offset_change(zone, earlier, later) - _ONE_SECOND, zone)
    raise RuntimeError(f"no slot found after {after.isoformat()} in {_MAX_STEPS} steps")


def _first_in_repeated_hour(
    cron: Any, zone: ZoneInfo, after: datetime, first: datetime
) -> datetime | None:
    """Return a periodic slot in the second pass of a repeated hour that precedes `first`.

    After the clocks go back, wall times run again from an earlier value, so a slot that is
    later in real time can be earlier on the wall than `after` was.
    """
    horizon = min(first, after + _MAX_SHIFT)
    offset_before = after.astimezone(zone).utcoffset()
    offset_after = horizon.astimezone(zone).utcoffset()
    if offset_before is None or offset_after is None or offset_after >= offset_before:
        return None
    turn = offset_change(zone, after, horizon)
    repeat_start = _wall(turn, zone)
    wall = _next_wall(cron, repeat_start - _ONE_SECOND)
    if wall >= repeat_start + (offset_before - offset_after):
        return None  # the slot is past the repeated hour, where wall order is real order again
    candidate = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return candidate if candidate < first else None


def _resolve(wall: datetime, zone: ZoneInfo) -> tuple[datetime, datetime, bool]:
    """Map a naive wall time to (earlier, later, in_gap) UTC instants.

    Unambiguous: earlier == later. Repeated (autumn): the two occurrences. Nonexistent
    (spring gap): both are the transition instant, the first real instant after the gap.
    """
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        return first, first, False
    if _wall(first, zone) != wall:
        # In a gap fold=0 uses the offset from before the gap, which lands after it (PEP 495).
        turn = offset_change(zone, min(first, second), max(first, second))
        return turn, turn, True
    return first, second, False


def offset_change(zone: ZoneInfo, low: datetime, high: datetime) -> datetime:
    """Return the first whole-second instant in (low, high] whose offset is `high`'s (the
    zone's offset changes once between them: a bisection)."""
    target = high.astimezone(zone).utcoffset()
    low_s, high_s = int(low.timestamp() // 1), -int(-high.timestamp() // 1)
    while high_s - low_s > 1:
        middle = (low_s + high_s) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == target:
            high_s = middle
        else:
            low_s = middle
    return datetime.fromtimestamp(high_s, UTC)


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _require_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"schedules need an aware datetime, got naive {moment.isoformat()}")
    return moment
