"""Where each job stands when the daemon (re)starts: from its records and kron's state."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from kron.engine.state import State
from kron.engine.store import RecordStore
from kron.model.job import Job
from kron.model.run import Outcome, RunEnded, RunStarted

__all__ = ["Startup", "abandoned", "where_it_stands"]

log = logging.getLogger("kron.daemon")


@dataclass(kw_only=True, slots=True)
class Startup:
    """A job's cursor (its newest handled slot), and what its records say of it."""

    cursor: datetime
    abandoned: list[RunStarted]
    last: RunEnded | None
    last_success: datetime | None = None


def where_it_stands(job: Job, store: RecordStore, state: State, now: datetime) -> Startup:
    """The newest of: its last recorded slot, when kron first saw it, where it stood at the
    last clean stop; now for a job never seen."""
    standing = store.standing(job.id)
    candidates = [
        t
        for t in (standing.last_slot, state.first_seen.get(job.id), state.cursors.get(job.id))
        if t
    ]
    return Startup(
        cursor=max(candidates) if candidates else now,
        abandoned=standing.unfinished,
        last=standing.last,
        last_success=standing.last_success.ended_at if standing.last_success else None,
    )


def abandoned(job: Job, started: RunStarted, now: datetime) -> RunEnded:
    """The record of a run that was alive when the previous daemon stopped."""
    log.warning(
        "job %s: run %s was alive when the daemon stopped; recorded abandoned",
        job.id,
        started.run_id,
    )
    return RunEnded(
        run_id=started.run_id,
        job=job.id,
        slot=started.slot,
        trigger=started.trigger,
        attempt=started.attempt,
        outcome=Outcome.ABANDONED,
        started_at=started.started_at,
        ended_at=now,
        config_sha=started.config_sha,
        error="the daemon stopped while this run was alive (crash, kill -9 or power loss)",
    )
