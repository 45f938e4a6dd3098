"""Triggers: a run that succeeds fires the jobs it lists; one that fails for good breaks the chain.

What a run's final outcome (after its retries) means for the jobs it triggers:

- `succeeded` fires each of them (trigger `dependency`, carrying the upstream run id).
- `failed`, `timeout`, `wait_timeout`, `cancelled` and `abandoned` are failures for good: the work
  did not get done, so each downstream job gets a `dependency_failed` record naming the upstream
  job, run and outcome, and so does every job below it, once each even where paths meet again.
- `skipped` (a wait with `on_timeout = "skip"`, a spent agent budget) and `replaced` (a newer run of
  the same job took over, and decides the chain in turn) fire nothing and record nothing.

A triggered run, and a `dependency_failed` record, carries the slot of the run that started the
chain, as every task of one Airflow DAG run shares its logical date: `kron history` then shows one
pipeline run as one slot. A triggered job that is paused or disabled (`enabled = false`) is not
run, as its schedule would not run it; it gets a `skipped` record saying why, so a chain never
stops without a trace. A triggered job that is not loaded (removed by a reload since the upstream
run started) is logged and recorded nowhere: there is no job to hold the record.
"""

from __future__ import annotations

import enum
import logging
from collections import deque

from kron.engine.scheduler import Scheduler
from kron.model.job import Job
from kron.model.run import FAILED_FOR_GOOD, Outcome, RunEnded, Trigger, new_run_id

__all__ = ["Chains", "Consequence", "consequence"]

log = logging.getLogger("kron.chain")


class Consequence(enum.Enum):
    """What a final outcome does to the jobs a run triggers."""

    FIRE = "fire"
    CASCADE = "cascade"  # record dependency_failed down the graph
    NOTHING = "nothing"


def consequence(outcome: Outcome) -> Consequence:
    """Say what a run's final outcome does to the jobs it triggers."""
    if outcome is Outcome.SUCCEEDED:
        return Consequence.FIRE
    if outcome in FAILED_FOR_GOOD:
        return Consequence.CASCADE
    return Consequence.NOTHING


class Chains:
    """Follows each job's `triggers` when its runs end; attach it to the daemon's scheduler."""

    def __init__(self) -> None:
        self._scheduler: Scheduler | None = None

    def attach(self, scheduler: Scheduler) -> None:
        """Act on the final record of every run of `scheduler`."""
        self._scheduler = scheduler
        scheduler.on_run_ended(self.run_ended)

    def run_ended(self, job: Job, ended: RunEnded) -> None:
        """Fire or fail the jobs that `job` triggers, from its run's final record."""
        if not job.triggers:
            return
        what = consequence(ended.outcome)
        if what is Consequence.FIRE:
            self._fire(job, ended)
        elif what is Consequence.CASCADE:
            self._cascade(job, ended)
        else:
            log.info(
                "job %s: run %s ended %s; its triggers (%s) are not fired",
                job.id,
                ended.run_id,
                ended.outcome.value,
                ", ".join(job.triggers),
            )

    def _fire(self, job: Job, ended: RunEnded) -> None:
        scheduler = self._attached()
        # Scheduler.stop() was called: a run started now would escape the shutdown's grace.
        if scheduler.stopping:
            log.warning(
                "job %s: run %s succeeded while the daemon is stopping; not firing %s",
                job.id,
                ended.run_id,
                ", ".join(job.triggers),
            )
            return
        for target in job.triggers:
            js = scheduler.jobs.get(target)
            if js is None:
                log.warning(
                    "job %s: triggered job %s is not loaded (removed or never valid); not run",
                    job.id,
                    target,
                )
                continue
            why = _not_runnable(js.job, paused=js.paused)
            if why is not None:
                log.info("job %s: triggered job %s not run: %s", job.id, target, why)
                self._record(js.job, ended, Outcome.SKIPPED, upstream=ended.run_id, error=why)
                continue
            log.info("job %s: run %s succeeded; firing %s", job.id, ended.run_id, target)
            scheduler.fire(
                target, slot=ended.slot, trigger=Trigger.DEPENDENCY, upstream=ended.run_id
            )

    def _cascade(self, job: Job, ended: RunEnded) -> None:
        """Record dependency_failed on every job below `job`, breadth first, once each."""
        scheduler = self._attached()
        origin = f'"{job.id}" run {ended.run_id}: {ended.outcome.value}'
        seen = {job.id}
        queue: deque[tuple[str, str, Outcome, tuple[str, ...]]] = deque(
            [(job.id, ended.run_id, ended.outcome, job.triggers)]
        )
        while queue:
            up_job, up_run, up_outcome, targets = queue.popleft()
            for target in targets:
                if target in seen:
                    continue
                seen.add(target)
                js = scheduler.jobs.get(target)
                if js is None:
                    log.warning(
                        "job %s: job %s below it is not loaded; no dependency_failed record",
                        job.id,
                        target,
                    )
                    continue
                error = f'upstream job "{up_job}" run {up_run} ended {up_outcome.value}'
                if up_job != job.id:
                    error += f" (the chain broke at {origin})"
                record = self._record(
                    js.job, ended, Outcome.DEPENDENCY_FAILED, upstream=up_run, error=error
                )
                log.warning("job %s: %s: %s", target, Outcome.DEPENDENCY_FAILED.value, error)
                queue.append((target, record.run_id, Outcome.DEPENDENCY_FAILED, js.job.triggers))

    def _record(
        self, job: Job, ended: RunEnded, outcome: Outcome, *, upstream: str, error: str
    ) -> RunEnded:
        record = RunEnded(
            run_id=new_run_id(),
            job=job.id,
            slot=ended.slot,
            trigger=Trigger.DEPENDENCY,
            attempt=1,
            outcome=outcome,
            started_at=None,
            ended_at=ended.ended_at,
            config_sha=job.config_sha,
            error=error,
            upstream=upstream,
        )
        # The path Scheduler._record_slot takes: every subscriber, the record writer first.
        self._attached().emit(record)
        return record

    def _attached(self) -> Scheduler:
        if self._scheduler is None:
            raise RuntimeError("Chains.attach(scheduler) was not called")
        return self._scheduler


def _not_runnable(job: Job, *, paused: bool) -> str | None:
    if not job.enabled:
        return "not run: the job is disabled (enabled = false)"
    if paused:
        return f"not run: the job is paused (kron resume {job.id})"
    return None
