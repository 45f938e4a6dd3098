"""Slots as the scheduler sees them: which are due, which count as missed, and the next fire."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import datetime, timedelta

from kron.model.job import Catchup, Job
from kron.model.run import Outcome, RunEnded, Trigger, new_run_id
from kron.model.schedule import Schedule, ScheduleKind, jitter_offset
from kron.model.times import format_time

__all__ = [
    "LATE_TOLERANCE",
    "MAX_MISSED_LISTED",
    "RANGE_NOTE",
    "NextFires",
    "catchup_choice",
    "due_slots",
    "missed_records",
    "passed_unrun",
    "slot_record",
]

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


def passed_unrun(
    job: Job, cursor: datetime, now: datetime, unclaimed: Mapping[str, list[datetime]]
) -> tuple[list[datetime], datetime | None, datetime]:
    """The slots that passed unrun while a cluster node could not claim: those due since
    `cursor`, and those whose claims failed; the first slot summed up before them, if any; and
    the job's cursor once they are decided."""
    horizon = now - jitter_offset(job.id, job.jitter)
    slots, earlier = due_slots(job.schedule, cursor, horizon)
    missed = sorted({*slots, *unclaimed.get(job.id, ())})
    return missed, earlier, max(missed[-1], cursor) if missed else max(cursor, horizon)


def catchup_choice(job: Job, missed: list[datetime], now: datetime) -> list[datetime]:
    """Which missed slots the job's catch-up policy runs (younger than starting_deadline)."""
    fresh = [s for s in missed if job.starting_deadline is None or now - s <= job.starting_deadline]
    if job.catchup is Catchup.LAST:
        return fresh[-1:]
    if job.catchup is Catchup.ALL:
        return fresh[-job.catchup_max :]
    return []


def missed_records(
    job: Job,
    missed: list[datetime],
    chosen: list[datetime],
    now: datetime,
    *,
    earlier: datetime | None = None,
) -> list[RunEnded]:
    """The `missed` records of the slots the catch-up policy does not run (and one for those
    before `earlier`, summed up)."""
    why = f"not run: the daemon was down or the clock jumped (catchup = {job.catchup.value})"
    found = []
    if earlier is not None:
        first = missed[0] if missed else now
        until = f"{why}; {RANGE_NOTE} {format_time(first)}"
        found.append(slot_record(job, earlier, Outcome.MISSED, now, until))
    taken = set(chosen)
    found += [slot_record(job, s, Outcome.MISSED, now, why) for s in missed if s not in taken]
    return found


def slot_record(
    job: Job,
    slot: datetime,
    outcome: Outcome,
    now: datetime,
    why: str,
    *,
    trigger: Trigger = Trigger.SCHEDULE,
    upstream: str | None = None,
) -> RunEnded:
    """The record of a slot that did not run (missed, skipped)."""
    return RunEnded(
        run_id=new_run_id(),
        job=job.id,
        slot=slot,
        trigger=trigger,
        upstream=upstream,
        attempt=1,
        outcome=outcome,
        started_at=None,
        ended_at=now,
        config_sha=job.config_sha,
        error=why,
    )
