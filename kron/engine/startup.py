"""Where each job stands when the daemon (re)starts, from its records and kron's state: its
cursor, the runs a crash left behind, the catch-up slots and the retry it left pending."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from kron.engine.slots import LATE_TOLERANCE
from kron.engine.state import State
from kron.engine.store import NO_STANDING, RecordStore, Standing
from kron.model.job import Job
from kron.model.run import Outcome, RunEnded, RunRecord, RunStarted, Trigger, new_run_id
from kron.model.times import format_time

__all__ = ["Startup", "abandoned", "missed_retry", "retry_is_late", "where_it_stands"]

log = logging.getLogger("kron.daemon")


@dataclass(kw_only=True, slots=True)
class Startup:
    """A job's cursor (its newest handled slot), and what its records say of it."""

    cursor: datetime
    abandoned: list[RunStarted]
    last: RunEnded | None
    last_success: datetime | None = None
    standing: Standing = NO_STANDING
    catchup: Sequence[tuple[datetime, Trigger]] = ()
    retries: Sequence[tuple[RunEnded, datetime]] = ()  # (last attempt, due)


def where_it_stands(job: Job, store: RecordStore, state: State, now: datetime) -> Startup:
    """The newest of: its last recorded slot, when kron first saw it, where it stood at the
    last clean stop, its queued catch-up slots; now for a job never seen. And what a stop or a
    crash left undone."""
    standing = store.standing(job.id)
    queued = state.catchup.get(job.id, ())
    candidates = [
        t
        for t in (
            standing.last_slot,
            state.first_seen.get(job.id),
            state.cursors.get(job.id),
            *(slot for slot, _ in queued),  # decided already: never a missed slot again
        )
        if t
    ]
    return Startup(
        cursor=max(candidates) if candidates else now,
        abandoned=standing.unfinished,
        last=standing.last,
        last_success=standing.last_success.ended_at if standing.last_success else None,
        standing=standing,
        catchup=_still_queued(queued, standing) if queued else (),
        retries=_pending_retries(job, standing) if standing.recent else (),
    )


def _still_queued(
    queued: Sequence[tuple[datetime, str]], standing: Standing
) -> list[tuple[datetime, Trigger]]:
    """Catch-up slots kept in the state file that no record shows started."""
    seen = {
        line.slot
        for line in standing.recent
        if isinstance(line, RunRecord) and line.trigger is Trigger.CATCHUP
    }
    return [(slot, Trigger(trigger)) for slot, trigger in queued if slot not in seen]


def _pending_retries(job: Job, standing: Standing) -> list[tuple[RunEnded, datetime]]:
    """Launches whose newest attempt failed with attempts left, and when the next was due."""
    policy = job.retry
    if policy.attempts <= 1:
        return []
    newest: dict[tuple[datetime, Trigger, str | None], RunRecord] = {}
    for line in standing.recent:
        if isinstance(line, RunRecord):
            key = (line.slot, line.trigger, line.upstream)
            if key not in newest or line.attempt >= newest[key].attempt:
                newest[key] = line
    if not newest:
        return []
    from kron.engine.retries import retry_timeline  # lazy: tenacity, for jobs that retry only

    waits = retry_timeline(policy)  # before attempts 2..n
    return [
        (record, record.ended_at + timedelta(seconds=waits[record.attempt - 1]))
        for record in newest.values()
        if isinstance(record, RunEnded)
        and record.outcome in policy.on
        and record.attempt < policy.attempts
    ]


def retry_is_late(job: Job, due: datetime, now: datetime) -> bool:
    """A pending retry runs unless it is later than the job's starting_deadline (or a minute)."""
    return now - due > (job.starting_deadline or LATE_TOLERANCE)


def missed_retry(job: Job, last: RunEnded, due: datetime, now: datetime) -> RunEnded:
    """The record of a retry that was due while the daemon was down, too long ago to run."""
    return RunEnded(
        run_id=new_run_id(),
        job=job.id,
        slot=last.slot,
        trigger=last.trigger,
        upstream=last.upstream,
        attempt=last.attempt + 1,
        outcome=Outcome.MISSED,
        started_at=None,
        ended_at=now,
        config_sha=job.config_sha,
        error=f"attempt {last.attempt + 1} was due at {format_time(due)}, while the daemon was "
        "down; too late to run (starting_deadline)",
    )


def abandoned(
    job: Job, started: RunStarted, ended_at: datetime, *, stopped: str | None = None
) -> RunEnded:
    """The record of a run that was alive when the previous daemon stopped.

    Args:
        stopped: the signal that ended its processes, when they still lived at this start.
    """
    log.warning(
        "job %s: run %s was alive when the daemon stopped; recorded abandoned",
        job.id,
        started.run_id,
    )
    how = f"; it still ran at the next start and was stopped ({stopped})" if stopped else ""
    return RunEnded(
        run_id=started.run_id,
        job=job.id,
        slot=started.slot,
        trigger=started.trigger,
        attempt=started.attempt,
        outcome=Outcome.ABANDONED,
        started_at=started.started_at,
        ended_at=ended_at,
        config_sha=started.config_sha,
        error="the daemon stopped while this run was alive (crash, kill -9 or power loss)" + how,
    )
