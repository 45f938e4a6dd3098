"""Daylight-saving changes as a schedule meets them: fixed-time slots in a repeated or skipped hour.

kron follows ISC cron (kron.model.schedule): a fixed-time slot (an hour field without `*` or `/`)
runs once when the clocks go back, at the first pass of the repeated hour, and once when they go
forward, at the first instant after the gap. The Kubernetes CronJob controller steps through real
hours instead (robfig/cron's `Next`), so it runs such a slot at both passes of a repeated hour
(kubernetes #121594) and not at all on the day its time is skipped. This module finds where a
schedule meets those hours, and tells the second pass of a repeated hour from the first.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from kron.model.schedule import CronSchedule, Schedule, offset_change

__all__ = ["Shift", "is_second_pass", "shifts", "slots_in_shifts"]

_ONE_SECOND = timedelta(seconds=1)
_STEP = timedelta(hours=12)  # zones change their offset at most twice a year, never twice a day


@dataclass(frozen=True, kw_only=True, slots=True)
class Shift:
    """One change of a zone's offset and the wall-clock hour it repeats or skips."""

    at: datetime  # the instant of the change, UTC
    wall_start: datetime  # naive: where the repeated or skipped wall-clock span begins
    length: timedelta
    repeated: bool  # True when the clocks go back: the span's wall times happen twice

    @property
    def wall_end(self) -> datetime:
        return self.wall_start + self.length


def shifts(zone: ZoneInfo, start: datetime, end: datetime) -> tuple[Shift, ...]:
    """Return the offset changes of `zone` in [start, end), oldest first.

    Args:
        zone: an IANA zone.
        start: an aware datetime.
        end: an aware datetime.
    """
    return _shifts(zone, start.astimezone(UTC), end.astimezone(UTC))


@functools.lru_cache(maxsize=256)
def _shifts(zone: ZoneInfo, start: datetime, end: datetime) -> tuple[Shift, ...]:
    found = []
    low = start
    while low < end:
        high = min(low + _STEP, end)
        before, after = low.astimezone(zone).utcoffset(), high.astimezone(zone).utcoffset()
        if before is not None and after is not None and before != after:
            at = offset_change(zone, low, high)
            found.append(
                Shift(
                    at=at,
                    wall_start=(at + min(before, after)).replace(tzinfo=None),
                    length=abs(after - before),
                    repeated=after < before,
                )
            )
        low = high
    return tuple(found)


def slots_in_shifts(
    schedule: Schedule, start: datetime, end: datetime
) -> list[tuple[Shift, datetime]]:
    """Return each offset change in [start, end) whose repeated or skipped span holds a slot of
    a fixed-time cron `schedule`, with that slot's wall time (naive); [] for other schedules.

    Periodic schedules (`*/15 * * * *`, an hour field with `*` or `/`) are left out: ISC cron
    and the CronJob controller both run them in every real hour.
    """
    if not isinstance(schedule, CronSchedule) or schedule.periodic:
        return []
    hours = _hours(schedule)
    found = []
    for shift in shifts(schedule.zone, start, end):
        if hours is not None and not hours & _hours_of(shift):
            continue  # the schedule's hours miss the span: no need to ask croniter
        wall = _next_wall(schedule, shift.wall_start - _ONE_SECOND)
        if wall is not None and wall < shift.wall_end:
            found.append((shift, wall))
    return found


def is_second_pass(schedule: Schedule, slot: datetime) -> bool:
    """Whether `slot` is the second pass of a repeated hour for a fixed-time cron `schedule`:
    ISC cron (and kron) ran that wall time at its first pass, so this one is not a slot.

    Args:
        schedule: the job's schedule.
        slot: an aware instant, e.g. the time a CronJob controller scheduled a Job for.
    """
    if not isinstance(schedule, CronSchedule) or schedule.periodic:
        return False
    wall = slot.astimezone(schedule.zone).replace(tzinfo=None)
    first = wall.replace(tzinfo=schedule.zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=schedule.zone, fold=1).astimezone(UTC)
    if first == second or slot.astimezone(UTC) != second:
        return False
    return _next_wall(schedule, wall - _ONE_SECOND) == wall


@functools.lru_cache(maxsize=1024)
def _hours(schedule: CronSchedule) -> frozenset[int] | None:
    """The hours the schedule's hour field names; None for a wildcard."""
    # croniter.expand lists minutes, hours, ... first, and a seconds field last.
    expanded, _ = croniter.expand(schedule.fields, second_at_beginning=schedule.with_seconds)
    hour_field = expanded[1]
    return None if "*" in hour_field else frozenset(int(h) for h in hour_field)


def _hours_of(shift: Shift) -> set[int]:
    """The wall-clock hours a repeated or skipped span touches."""
    found = set()
    hour = shift.wall_start.replace(minute=0, second=0, microsecond=0)
    while hour < shift.wall_end:
        found.add(hour.hour)
        hour += timedelta(hours=1)
    return found


def _next_wall(schedule: CronSchedule, wall: datetime) -> datetime | None:
    """The first naive wall-clock slot strictly after the naive `wall`."""
    cron: Any = croniter(
        schedule.fields,
        wall,
        ret_type=datetime,
        day_or=schedule.day_or,
        second_at_beginning=schedule.with_seconds,
    )
    try:
        found: datetime = cron.get_next(datetime)
    except CroniterBadDateError:
        return None
    return found
