"""Slots as the scheduler sees them: which are due, which count as missed, and the next fire."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from kron.model.schedule import Schedule, ScheduleKind

__all__ = ["LATE_TOLERANCE", "MAX_MISSED_LISTED", "RANGE_NOTE", "NextFires", "due_slots"]

# A slot is run on schedule when the daemon wakes for it no later than this; a slot found
# later than that (a stalled or suspended host, a forward clock step) counts as missed and
# its job's catch-up policy decides.
LATE_TOLERANCE = timedelta(seconds=60)
# At most this many missed slots are listed one by one after a long outage; older ones are
# summed up in a single record, so a year of downtime of a seconds job costs no more.
MAX_MISSED_LISTED = 1000
# How the record of the oldest listed slot says it stands for the unlisted ones before it too.
RANGE_NOTE = "and every slot from here until"
MEMO_SIZE = 16384  # schedules whose last next-fire answer is kept


class NextFires:
    """schedule.next_fire, remembered as the span each answer holds for.

    A schedule's slots are a fixed set of instants, so the answer `r` for `after = t` holds for
    every `after` in [t, r): 10,000 jobs on one expression, each with its own cursor, cost one
    computation at start-up, and 500 due together cost one per fire.
    """

    __slots__ = ("_memo",)

    def __init__(self) -> None:
        self._memo: dict[Schedule, tuple[datetime, datetime | None]] = {}

    def after(self, schedule: Schedule, after: datetime) -> datetime | None:
        span = self._memo.get(schedule)
        if span is not None:
            asked, answer = span
            if asked <= after and (answer is None or after < answer):
                return answer
        answer = schedule.next_fire(after)
        if len(self._memo) > MEMO_SIZE:
            self._memo.clear()
        self._memo[schedule] = (after, answer)
        return answer


def due_slots(
    schedule: Schedule, cursor: datetime, horizon: datetime
) -> tuple[list[datetime], datetime | None]:
    """Slots in (cursor, horizon], at most MAX_MISSED_LISTED of the newest; and the first
    slot of the older ones left out, if any."""
    if horizon <= cursor or schedule.kind in (ScheduleKind.MANUAL, ScheduleKind.REBOOT):
        return [], None
    interval = schedule.min_interval()
    earlier = None
    start = cursor
    if interval and (horizon - cursor) / interval > MAX_MISSED_LISTED:
        start = horizon - interval * MAX_MISSED_LISTED
        earlier = schedule.next_fire(cursor)
        if earlier is not None and earlier > start:
            earlier = None
    slots = list(itertools.islice(schedule.slots_between(start, horizon), MAX_MISSED_LISTED + 1))
    if len(slots) > MAX_MISSED_LISTED:
        earlier = earlier or slots[0]
        slots = slots[-MAX_MISSED_LISTED:]
    return slots, earlier
