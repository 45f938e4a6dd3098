"""The scheduler's live objects: a job as it stands (`JobState`) and a run in flight (`Run`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from kron.model.job import Job
from kron.model.run import Outcome, RunEnded, RunState, Trigger, new_run_id

__all__ = ["JobState", "Run", "stop_runs"]

log = logging.getLogger("kron.runner")


@dataclass(eq=False, kw_only=True)
class Run:
    """One firing of a job: its attempts, from queued to the last record."""

    job: Job
    slot: datetime
    trigger: Trigger
    upstream: str | None = None
    run_id: str = field(default_factory=new_run_id)
    attempt: int = 1
    state: RunState = RunState.QUEUED
    stop_reason: Outcome | None = None
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    pgid: int | None = None
    task: asyncio.Task[RunEnded | None] | None = None
    started_at: datetime | None = None
    last: RunEnded | None = None
    stuck: str | None = None  # why it is called stuck (kron.engine.stuck), while it runs

    def stop(self, reason: Outcome) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop_event.set()


@dataclass(eq=False, kw_only=True)
class JobState:
    """The scheduler's view of one job: its definition, cursor and live runs."""

    job: Job
    cursor: datetime  # newest slot already handled (run, skipped or recorded missed)
    generation: int = 0
    fire_at: datetime | None = None
    runs: set[Run] = field(default_factory=set)
    catchup: deque[tuple[datetime, Trigger]] = field(default_factory=deque)
    paused: bool = False
    last: RunEnded | None = None  # the newest terminal record (status, list, metrics)
    last_success_at: datetime | None = None

    def note(self, record: RunEnded) -> None:
        """Remember the newest terminal record of this job."""
        self.last = record
        if record.outcome is Outcome.SUCCEEDED:
            self.last_success_at = record.ended_at

    @property
    def last_outcome(self) -> Outcome | None:
        return self.last.outcome if self.last is not None else None

    @property
    def last_ended_at(self) -> datetime | None:
        return self.last.ended_at if self.last is not None else None

    @property
    def alive(self) -> list[Run]:
        return [r for r in self.runs if r.state is not RunState.DONE]


async def stop_runs(runs: list[Run], grace: timedelta) -> None:
    """Stop every run (recorded `cancelled`), wait up to `grace`, SIGKILL the process groups
    of those still alive (a shutdown)."""
    for run in runs:
        run.stop(Outcome.CANCELLED)
    tasks = [r.task for r in runs if r.task]
    if not tasks:
        return
    log.info("stopping %d running run(s); waiting up to %s", len(tasks), grace)
    _, pending = await asyncio.wait(tasks, timeout=grace.total_seconds())
    if not pending:
        return
    for run in runs:
        if run.task in pending and run.pgid:
            log.warning(
                "job %s: run %s still alive after shutdown grace; SIGKILL", run.job.id, run.run_id
            )
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(run.pgid, signal.SIGKILL)
    await asyncio.wait(pending, timeout=10)
