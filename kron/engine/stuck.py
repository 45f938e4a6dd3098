"""Stuck runs: a run alive far longer than it should be, the failure nobody is told about.

A run is stuck past its job's `expected_duration`, or, without one, past 3x the 95th
percentile of the job's last 20 successful runs (at least 5 of them, and at least a minute).
It is flagged once, while it runs: a log line, `stuck` in status and list, a gauge, and the
`stuck` notifications. It is not stopped: that is `timeout`'s job.

One task watches every run. A run is looked at first when it could first be stuck (a minute
in, or at its expected duration), so the many short runs cost a dictionary entry each and
their job's history is never read.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from kron.engine.runs import Run
from kron.engine.scheduler import Scheduler
from kron.engine.store import RecordStore
from kron.model.clock import Clock
from kron.model.job import Job
from kron.model.run import Event, Outcome, RunEnded, RunStarted
from kron.model.units import format_duration

__all__ = ["HISTORY", "MIN_HISTORY", "MIN_THRESHOLD", "Stuck", "StuckRuns", "threshold_of"]

log = logging.getLogger("kron.runner")

HISTORY = 20  # successful runs judged
MIN_HISTORY = 5  # fewer successes say too little of what is normal
MIN_THRESHOLD = timedelta(minutes=1)
FACTOR = 3


@dataclass(frozen=True, kw_only=True, slots=True)
class Stuck:
    """Why a run is called stuck."""

    run_id: str
    job: str
    since: datetime
    threshold: timedelta
    basis: str  # "expected_duration" or "3x p95 of 20 successful runs"

    @property
    def reason(self) -> str:
        return f"running longer than {format_duration(self.threshold)} ({self.basis})"


def threshold_of(job: Job, successes: list[float]) -> tuple[timedelta, str] | None:
    """How long a run of `job` may take before it is stuck, and why; None when unknown.

    Args:
        successes: durations in seconds of its newest successful runs, newest first.
    """
    if job.expected_duration is not None:
        return job.expected_duration, "expected_duration"
    recent = successes[:HISTORY]
    if len(recent) < MIN_HISTORY:
        return None
    ordered = sorted(recent)
    p95 = ordered[math.ceil(0.95 * len(ordered)) - 1]  # nearest rank
    limit = max(timedelta(seconds=FACTOR * p95), MIN_THRESHOLD)
    return limit, f"{FACTOR}x the 95th percentile of its last {len(recent)} successful runs"


class StuckRuns:
    """Watches the runs of a scheduler and flags the stuck ones."""

    def __init__(self, *, store: RecordStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._scheduler: Scheduler | None = None
        self._due: dict[str, tuple[datetime, str]] = {}  # run id: (when to look, job id)
        self._started: dict[str, datetime] = {}
        self._successes: dict[str, deque[float]] = {}  # job id: newest first, once read
        self.stuck: dict[str, Stuck] = {}  # run id: why, while it runs
        self._listeners: list[Callable[[Job, Run, Stuck], None]] = []
        self._wake = asyncio.Event()
        self._target: datetime | None = None
        self._task: asyncio.Task[None] | None = None

    def attach(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        scheduler.subscribe(self.event)

    def on_stuck(self, listener: Callable[[Job, Run, Stuck], None]) -> None:
        """Call `listener` once for each run found stuck (notifications)."""
        self._listeners.append(listener)

    def event(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            job = self._job(event.job)
            if job is None:
                return
            first = job.expected_duration or MIN_THRESHOLD
            self._started[event.run_id] = event.started_at
            self._look_at(event.run_id, event.job, event.started_at + first)
        elif isinstance(event, RunEnded):
            self._started.pop(event.run_id, None)
            if self._due.pop(event.run_id, None) is not None and not self._due:
                self._target = None  # nothing left to look at; the task sleeps until woken
            if self.stuck.pop(event.run_id, None) is not None:
                log.info("job %s: stuck run %s ended %s", event.job, event.run_id, event.outcome)
            known = self._successes.get(event.job)
            if known is not None and event.outcome is Outcome.SUCCEEDED and event.duration_s:
                known.appendleft(event.duration_s)

    async def run_forever(self) -> None:
        """Look at each run when it is due; sleep while nothing is."""
        while True:
            if not self._due:
                self._wake.clear()
                await self._wake.wait()
                continue
            self._target = min(when for when, _ in self._due.values())
            if self._clock.now() < self._target:
                self._wake.clear()
                sleeper = asyncio.ensure_future(self._clock.sleep_until(self._target))
                woken = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait({sleeper, woken}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sleeper.cancel()
                    woken.cancel()
                continue
            self._look(self._clock.now())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self.run_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _look_at(self, run_id: str, job_id: str, when: datetime) -> None:
        self._due[run_id] = (when, job_id)
        if self._target is None or when < self._target:
            self._target = when
            self._wake.set()

    def _look(self, now: datetime) -> None:
        for run_id, (when, job_id) in list(self._due.items()):
            if when > now:
                continue
            del self._due[run_id]
            job = self._job(job_id)
            started = self._started.get(run_id)
            if job is None or started is None:
                continue
            judged = threshold_of(job, self._history(job))
            if judged is None:
                continue  # too little history: never stuck (unless expected_duration is set)
            limit, basis = judged
            if now - started < limit:
                self._due[run_id] = (started + limit, job_id)
                continue
            stuck = Stuck(run_id=run_id, job=job_id, since=now, threshold=limit, basis=basis)
            self._flag(job, run_id, stuck)

    def _flag(self, job: Job, run_id: str, stuck: Stuck) -> None:
        run = self._run(run_id)
        if run is None:
            return
        self.stuck[run_id] = stuck
        run.stuck = stuck.reason
        log.warning(
            "job %s: run %s is stuck: %s; it goes on (timeout stops runs, not this)",
            job.id,
            run_id,
            stuck.reason,
        )
        for listener in self._listeners:
            try:
                listener(job, run, stuck)
            except Exception:
                log.exception("stuck listener failed for run %s", run_id)

    def _history(self, job: Job) -> list[float]:
        known = self._successes.get(job.id)
        if known is None:
            known = self._successes[job.id] = deque(self._read(job.id), maxlen=HISTORY)
        return list(known)

    def _read(self, job_id: str) -> list[float]:
        """The durations of the job's newest successful runs, from its records."""
        try:
            runs = self._store.runs(job=job_id, outcome=Outcome.SUCCEEDED)
        except OSError as exc:
            log.warning("job %s: cannot read its records for stuck runs: %s", job_id, exc)
            return []
        return [
            run.duration_s
            for run in runs[:HISTORY]
            if isinstance(run, RunEnded) and run.duration_s is not None
        ]

    def _job(self, job_id: str) -> Job | None:
        if self._scheduler is None:
            return None
        js = self._scheduler.jobs.get(job_id)
        return js.job if js is not None else None

    def _run(self, run_id: str) -> Run | None:
        if self._scheduler is None:
            return None
        return next((r for r in self._scheduler.running() if r.run_id == run_id), None)
