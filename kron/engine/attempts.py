"""A run's attempts: claimed, queued for max_concurrent, executed, retried, recorded.

Retry, back-off and the outcome of an attempt are small policies computed from data
(`retries.retry_wait`, `classify`); tenacity drives the loop between attempts of a job that
retries (`kron.engine.retries`, loaded by the first such job).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from kron.actions.base import ActionResult
from kron.engine.coordinator import Claim, Coordinator
from kron.engine.recovery import note_for
from kron.engine.runs import Run
from kron.model.clock import Clock
from kron.model.job import Concurrency, Job
from kron.model.policy import Policy
from kron.model.run import Event, Outcome, RunEnded, RunStarted, RunState, Trigger, new_run_id
from kron.model.times import format_time

__all__ = ["Attempts", "Execute", "classify"]

log = logging.getLogger("kron.runner")

Execute = Callable[..., Awaitable[ActionResult]]


class Attempts:
    """Takes runs through their attempts; the scheduler decides when and whether they fire."""

    def __init__(
        self,
        *,
        clock: Clock,
        execute: Execute,
        emit: Callable[[Event], None],
        coordinator: Coordinator | None,
        policy: Policy,
        max_concurrent: int | None,
    ) -> None:
        self._clock = clock
        self._execute = execute
        self._emit = emit
        self._coordinator = coordinator
        self.policy = policy
        self.limit = asyncio.Semaphore(max_concurrent) if max_concurrent else None

    async def run(self, run: Run, *, wait_s: float = 0.0) -> RunEnded | None:
        """Every attempt of `run` from `run.attempt` on (None when another daemon claimed it);
        the final record.

        Args:
            run: the run; its `attempt` is 1, or the one a restart resumes.
            wait_s: time to wait before the first of them (a resumed retry's back-off).
        """
        if wait_s > 0:
            await self._retry_sleep(run, wait_s)
        policy = run.job.retry
        first = run.attempt
        left = policy.attempts - first + 1
        if left <= 1:
            return await self._attempt(run)  # nothing to retry: skip tenacity's set-up per run
        # Lazy (memory, start-up): tenacity is loaded by the first job that retries.
        from kron.engine.retries import retrying

        ended: RunEnded | None = None
        async for attempt in retrying(
            run, policy, first=first, left=left, sleep=lambda s: self._retry_sleep(run, s)
        ):
            with attempt:
                run.attempt = first + attempt.retry_state.attempt_number - 1
                if attempt.retry_state.attempt_number > 1:
                    run.run_id = new_run_id()
                ended = await self._attempt(run, continues=run.attempt > first)
            if attempt.retry_state.outcome and not attempt.retry_state.outcome.failed:
                attempt.retry_state.set_result(ended)
        return ended

    async def _retry_sleep(self, run: Run, seconds: float) -> None:
        run.state = RunState.RETRY_WAIT
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        stopper = asyncio.ensure_future(run.stop_event.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()

    async def _attempt(self, run: Run, *, continues: bool = False) -> RunEnded | None:
        """One attempt; None when it is not this daemon's to run or record.

        Args:
            continues: a later attempt of this run, which holds its lease already.
        """
        job = run.job
        if run.stop_reason is not None:
            return self.end(run, run.stop_reason, ActionResult(error="stopped before it started"))
        run.state = RunState.QUEUED
        coordinator = self._coordinator
        # Where runs hold leases that can be lost (a cluster); never asked on one host.
        leases = coordinator if coordinator is not None and coordinator.cluster_wide else None
        if coordinator is not None:
            claim = _claim(run, continues=continues)
            grant = await coordinator.claim(claim)
            if not grant.won:
                why = grant.why or "another daemon's"
                log.debug("job %s: slot %s not run here: %s", job.id, format_time(run.slot), why)
                return None
            if grant.holder is not None:  # a live run of the job, on this node or another
                replace = job.concurrency is Concurrency.REPLACE
                # A catch-up slot waits its turn, as on one host (kron.engine.scheduler.fire).
                if not replace and run.trigger is not Trigger.CATCHUP:
                    where = f" on node {grant.holder_node}" if grant.holder_node else ""
                    self.end(
                        run,
                        Outcome.SKIPPED,
                        ActionResult(
                            error=f"run {grant.holder}{where} is still alive (concurrency = forbid)"
                        ),
                    )
                    return None  # as on one host: a skipped slot is a record, not a run
                if replace:
                    log.info("job %s: replacing run %s with a new run", job.id, grant.holder)
                if not await coordinator.take_turn(claim, grant, run.stop_event, replace=replace):
                    return self.end(
                        run,
                        run.stop_reason or Outcome.CANCELLED,
                        ActionResult(error="stopped while waiting for the run before it"),
                    )
        limit = self.limit
        if limit is not None and not await self._acquire(run, limit):
            return self.end(
                run,
                run.stop_reason or Outcome.CANCELLED,
                ActionResult(error="stopped while queued for max_concurrent"),
            )
        try:
            if leases is not None and (lost := await leases.confirm(run.run_id)) is not None:
                return self.end(
                    run, Outcome.ABANDONED, ActionResult(error=f"not started: {lost}"), late=lost
                )
            run.state = RunState.RUNNING
            run.started_at = self._clock.now()
            if coordinator is not None:
                coordinator.hold(run.run_id)
            self._emit(
                RunStarted(
                    run_id=run.run_id,
                    job=job.id,
                    slot=run.slot,
                    trigger=run.trigger,
                    attempt=run.attempt,
                    started_at=run.started_at,
                    config_sha=job.config_sha,
                    upstream=run.upstream,
                )
            )
            result = await self._execute(
                job,
                run_env=_run_env(run),
                stop=run.stop_event,
                on_spawn=lambda pid: self._spawned(run, pid),
                policy=self.policy,
            )
            outcome = classify(job, result, run.stop_reason)
            # A node frozen or cut off past dead_after may have lost the run to a survivor,
            # which recorded it abandoned: this record is then kept as late, never its result.
            lost = await leases.confirm(run.run_id) if leases is not None else None
            return self.end(run, outcome, result, late=lost)
        finally:
            if limit is not None:
                limit.release()
            if coordinator is not None:
                coordinator.release(run.run_id)

    def _spawned(self, run: Run, pid: int) -> None:
        """The run's process group started: note where it is, for a daemon after a crash."""
        run.pgid = pid
        self._emit(note_for(run.run_id, run.job.id, pid))

    async def _acquire(self, run: Run, limit: asyncio.Semaphore) -> bool:
        acquire = asyncio.ensure_future(limit.acquire())
        stopper = asyncio.ensure_future(run.stop_event.wait())
        await asyncio.wait({acquire, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if acquire.done() and not acquire.cancelled():
            if run.stop_reason is None:
                return True
            limit.release()
            return False
        acquire.cancel()
        return False

    def end(
        self, run: Run, outcome: Outcome, result: ActionResult, *, late: str | None = None
    ) -> RunEnded:
        """Record the end of the run's current attempt (the result is masked already).

        Args:
            late: how this daemon lost the run's lease, when it did (cluster mode).
        """
        output = result.output()
        if late is not None:
            output["extra"] = {**output["extra"], "late": True, "lease_lost": late}
        ended = RunEnded(
            run_id=run.run_id,
            job=run.job.id,
            slot=run.slot,
            trigger=run.trigger,
            attempt=run.attempt,
            outcome=outcome,
            started_at=run.started_at if run.state is RunState.RUNNING else None,
            ended_at=self._clock.now(),
            config_sha=run.job.config_sha,
            upstream=run.upstream,
            **output,
        )
        run.last = ended
        self._emit(ended)
        level = logging.INFO if outcome is Outcome.SUCCEEDED else logging.WARNING
        log.log(
            level,
            "job %s: run %s attempt %d %s%s",
            run.job.id,
            run.run_id,
            run.attempt,
            outcome.value,
            f" ({ended.error})" if ended.error else "",
        )
        return ended


def _claim(run: Run, *, continues: bool) -> Claim:
    return Claim(
        job=run.job.id,
        slot=run.slot,
        trigger=run.trigger,
        attempt=run.attempt,
        upstream=run.upstream,
        run_id=run.run_id,
        config_sha=run.job.config_sha,
        exclusive=run.job.concurrency is not Concurrency.ALLOW,
        continues=continues,
    )


def _run_env(run: Run) -> dict[str, str]:
    """The KRON_* variables a run's processes see."""
    return {
        "KRON_JOB": run.job.id,
        "KRON_RUN_ID": run.run_id,
        "KRON_SLOT": format_time(run.slot),
        "KRON_TRIGGER": run.trigger.value,
        "KRON_ATTEMPT": str(run.attempt),
    }


def classify(job: Job, result: ActionResult, stop_reason: Outcome | None) -> Outcome:
    """Turn what an action produced into the run's outcome."""
    if result.stopped and stop_reason is not None:
        return stop_reason
    if result.outcome is not None:
        return result.outcome
    if result.timed_out:
        return Outcome.TIMEOUT
    if result.ok is not None:
        return Outcome.SUCCEEDED if result.ok else Outcome.FAILED
    if result.exit_code is not None and result.exit_code in job.success_codes:
        return Outcome.SUCCEEDED
    return Outcome.FAILED
