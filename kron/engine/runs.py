"""The scheduler's live objects: a job as it stands (`JobState`) and a run in flight (`Run`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import deque
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
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


@dataclass(eq=False, kw_only=True, slots=True)
class JobState:
    """The scheduler's view of one job: its definition, cursor and live runs."""

    job: Job
    cursor: datetime  # newest slot already handled (run, skipped or recorded missed)
    generation: int = 0
    fire_at: datetime | None = None
    paused: bool = False
    last: RunEnded | None = None  # the newest terminal record (status, list, metrics)
    last_success_at: datetime | None = None
    # Made when first needed and dropped when empty again: an empty set and deque take 850
    # bytes, and most jobs of a large daemon are idle (10,000 of them: 8 MB).
    _runs: set[Run] | None = field(default=None, init=False, repr=False)
    _catchup: deque[tuple[datetime, Trigger]] | None = field(default=None, init=False, repr=False)

    def note(self, record: RunEnded) -> None:
        """Remember the newest terminal record of this job."""
        self.last = record
        if record.outcome is Outcome.SUCCEEDED:
            self.last_success_at = record.ended_at

    def follow(self, old: JobState) -> None:
        """Take over what a job's previous state knew: its live runs and its last record."""
        self._runs, self.generation = old._runs, old.generation + 1
        self.last, self.last_success_at = old.last, old.last_success_at

    @property
    def runs(self) -> AbstractSet[Run]:
        """The job's runs in flight (read-only: `add_run`, `discard_run` change them)."""
        return self._runs if self._runs is not None else _NO_RUNS

    def add_run(self, run: Run) -> None:
        if self._runs is None:
            self._runs = set()
        self._runs.add(run)

    def discard_run(self, run: Run) -> None:
        if self._runs is not None:
            self._runs.discard(run)
            if not self._runs:
                self._runs = None

    @property
    def catchup(self) -> Sequence[tuple[datetime, Trigger]]:
        """Catch-up slots waiting their turn, oldest first (read-only: `queue` changes them)."""
        return self._catchup if self._catchup is not None else ()

    def queue(self) -> deque[tuple[datetime, Trigger]]:
        """The catch-up queue, to change."""
        if self._catchup is None:
            self._catchup = deque()
        return self._catchup

    def pop_catchup(self) -> tuple[datetime, Trigger]:
        """Take the oldest catch-up slot off the queue."""
        assert self._catchup is not None
        item = self._catchup.popleft()
        if not self._catchup:
            self._catchup = None
        return item

    def clear_catchup(self) -> None:
        self._catchup = None

    @property
    def last_outcome(self) -> Outcome | None:
        return self.last.outcome if self.last is not None else None

    @property
    def last_ended_at(self) -> datetime | None:
        return self.last.ended_at if self.last is not None else None

    @property
    def alive(self) -> list[Run]:
        if self._runs is None:
            return []
        return [r for r in self._runs if r.state is not RunState.DONE]


_NO_RUNS: frozenset[Run] = frozenset()


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
