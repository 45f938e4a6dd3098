"""When and whether jobs fire: the timer heap, overlap, catch-up, triggers' entry, shutdown.

How one run goes from its first attempt to its record is kron.engine.attempts; which slots are
due is kron.engine.slots.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from kron.actions.base import ActionResult
from kron.actions.dispatch import execute
from kron.engine.attempts import Attempts, Execute
from kron.engine.coordinator import Coordinator
from kron.engine.runs import JobState, Run, stop_runs
from kron.engine.slots import (
    LATE_TOLERANCE,
    NextFires,
    catchup_choice,
    due_slots,
    missed_records,
    passed_unrun,
    slot_record,
)
from kron.model.clock import Clock
from kron.model.job import Concurrency, Job
from kron.model.policy import Policy
from kron.model.run import Event, Outcome, RunEnded, RunState, Trigger
from kron.model.schedule import Schedule, jitter_offset

__all__ = ["Scheduler"]

log = logging.getLogger("kron.runner")


class Scheduler:
    """Fires jobs on their schedules; the daemon, `kron run` and the tests drive it."""

    def __init__(
        self,
        *,
        clock: Clock,
        max_concurrent: int | None = None,
        execute_action: Execute = execute,
        policy: Policy | None = None,
        coordinator: Coordinator | None = None,
        on_queue: Callable[[str, list[tuple[datetime, Trigger]]], None] | None = None,
    ) -> None:
        """Args:
        clock: the time; tests drive a fake one.
        max_concurrent: the global limit on running runs (kron.toml); more wait their turn.
        execute_action: runs one attempt of a job (kron.actions.dispatch.execute).
        policy: `[policy]`, checked again whenever an attempt fires.
        coordinator: asked before every launch; None grants them all.
        on_queue: told a job's catch-up queue whenever it changes, to keep it across a crash.
        """
        self._clock = clock
        self._on_queue = on_queue
        self._coordinator = coordinator
        # Other daemons serve the same jobs: overlap is decided at the claim, across them, and
        # a slot that does not run is recorded once claimed.
        self._cluster = coordinator is not None and coordinator.cluster_wide
        self._held = False  # fire nothing: the cluster's database is out of reach
        self._attempts = Attempts(
            clock=clock,
            execute=execute_action,
            emit=self._emit,
            coordinator=coordinator,
            policy=policy or Policy(),
            max_concurrent=max_concurrent,
        )
        self._jobs: dict[str, JobState] = {}
        self._heap: list[tuple[datetime, int, str, int]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._stopping = False
        self._listeners: list[Callable[[Event], None]] = []
        self._next_fires = NextFires()
        self._due_memo: dict[
            tuple[Schedule, datetime, datetime], tuple[list[datetime], datetime | None]
        ] = {}
        self._ended_listeners: list[Callable[[Job, RunEnded], None]] = []

    # -- wiring -----------------------------------------------------------------------------

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """Call `listener` with every event, synchronously, in order."""
        self._listeners.append(listener)

    def on_run_ended(self, listener: Callable[[Job, RunEnded], None]) -> None:
        """Call `listener` with the final record of every run (after its retries)."""
        self._ended_listeners.append(listener)

    @property
    def stopping(self) -> bool:
        """True once stop() was called: nothing new fires."""
        return self._stopping

    def emit(self, event: Event) -> None:
        """Record an event the scheduler did not make itself (a dependency_failed slot)."""
        self._emit(event)

    def _emit(self, event: Event) -> None:
        if isinstance(event, RunEnded) and (js := self._jobs.get(event.job)) is not None:
            js.note(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed for run %s", event.run_id)

    @property
    def jobs(self) -> Mapping[str, JobState]:
        return self._jobs

    def running(self) -> list[Run]:
        return [r for js in self._jobs.values() for r in js.alive]

    # -- the job set ------------------------------------------------------------------------

    def add(
        self,
        job: Job,
        *,
        cursor: datetime,
        paused: bool = False,
        now: datetime | None = None,
        last: RunEnded | None = None,
        last_success: datetime | None = None,
        catchup: Sequence[tuple[datetime, Trigger]] | None = None,
    ) -> None:
        """Schedule a job whose slots up to `cursor` were handled.

        Slots between `cursor` and now passed while kron was not running: they are missed, and
        the job's catch-up policy decides which of them run. Nothing else fires before the next
        slot, so starting at 10:00:30 never runs a `* * * * *` job before 10:01:00. `catchup`
        holds slots decided before a stop or a crash that never ran: they go first.
        """
        now = now or self._clock.now()
        js = JobState(job=job, cursor=cursor, paused=paused)
        old = self._jobs.get(job.id)
        if old is not None:
            js.follow(old)
        if last is not None:  # what the records say of the job before this start
            js.note(last)
            js.last_success_at = last_success or js.last_success_at
        self._jobs[job.id] = js
        if catchup and job.enabled and not paused:
            queued = {slot for slot, _ in js.catchup}
            js.queue().extend(item for item in sorted(catchup) if item[0] not in queued)
        offset = jitter_offset(job.id, job.jitter)
        horizon = now - offset if offset else now  # one datetime for the jobs loaded together
        if cursor < horizon:
            first = self._next_fires.after(job.schedule, cursor)
            if job.enabled and not paused and first is not None and first <= horizon:
                slots, earlier = due_slots(job.schedule, cursor, horizon)
                self.handle_missed(js, slots, now, earlier=earlier)
            js.cursor = max(js.cursor, horizon)
        self._arm(js)
        self._next_catchup(js)

    def update(self, job: Job) -> None:
        """Swap a job's definition; running runs finish under the one they started with."""
        js = self._jobs.get(job.id)
        if js is None:
            self.add(job, cursor=self._clock.now())
            return
        if job.schedule != js.job.schedule or job.timezone != js.job.timezone:
            # A new schedule starts now: its slots before the change were never promised.
            js.cursor = max(js.cursor, self._clock.now())
        js.job = job
        js.generation += 1
        self._arm(js)

    def remove(self, job_id: str) -> None:
        """Forget a job; it never fires again. Its running runs finish."""
        js = self._jobs.pop(job_id, None)
        if js is not None:
            js.generation += 1
            js.clear_catchup()
            self._queue_changed(js)
            self._wake.set()

    @property
    def policy(self) -> Policy:
        return self._attempts.policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        self._attempts.policy = policy

    def set_max_concurrent(self, limit: int | None) -> None:
        """Change the global limit; runs already holding a place keep it."""
        self._attempts.limit = asyncio.Semaphore(limit) if limit else None

    def set_paused(self, job_id: str, paused: bool) -> None:
        js = self._jobs[job_id]
        js.paused = paused
        if not paused:
            js.cursor = max(js.cursor, self._clock.now())
        js.generation += 1
        self._arm(js)

    def _arm(self, js: JobState) -> None:
        """Push the job's next fire onto the heap (stale entries are skipped by generation)."""
        job = js.job
        js.fire_at = None
        if not job.enabled or js.paused:
            return
        slot = self._next_fires.after(job.schedule, js.cursor)
        if slot is None:
            return
        offset = jitter_offset(job.id, job.jitter)
        # Without jitter, the jobs due together share the one datetime of their slot.
        js.fire_at = slot + offset if offset else slot
        heapq.heappush(self._heap, (js.fire_at, next(self._seq), job.id, js.generation))
        self._wake.set()

    # -- the loop ---------------------------------------------------------------------------

    async def run_forever(self) -> None:
        """Sleep until the earliest fire, handle what is due, repeat until stop()."""
        while not self._stopping:
            if self._held:
                self._wake.clear()
                await self._sleep(None)
                continue
            now = self._clock.now()
            self._due_memo.clear()  # valid for one `now` only
            while self._heap and self._heap[0][0] <= now:
                _, _, job_id, generation = heapq.heappop(self._heap)
                js = self._jobs.get(job_id)
                if js is not None and js.generation == generation:
                    self._tick(js, now)
            self._wake.clear()
            if self._stopping:
                break
            await self._sleep(self._heap[0][0] if self._heap else None)

    async def _sleep(self, until: datetime | None) -> None:
        waiter = asyncio.ensure_future(self._wake.wait())
        tasks: set[asyncio.Future[Any]] = {waiter}
        if until is not None:
            tasks.add(asyncio.ensure_future(self._clock.sleep_until(until)))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()

    def _tick(self, js: JobState, now: datetime) -> None:
        """Handle every slot of one job that is due by `now`, then arm its next fire."""
        job = js.job
        offset = jitter_offset(job.id, job.jitter)
        key = (job.schedule, js.cursor, now - offset)
        if key not in self._due_memo:
            self._due_memo[key] = due_slots(*key)
        slots, earlier = self._due_memo[key]
        if slots:
            newest = slots[-1]
            on_time = now - (newest + offset) <= LATE_TOLERANCE
            missed = slots[:-1] if on_time else slots
            self.handle_missed(js, missed, now, earlier=earlier)
            js.cursor = newest
            if on_time:
                self.fire(job.id, slot=newest, trigger=Trigger.SCHEDULE)
        self._arm(js)

    # -- missed slots and catch-up ----------------------------------------------------------

    def handle_missed(
        self,
        js: JobState,
        missed: list[datetime],
        now: datetime,
        *,
        earlier: datetime | None = None,
    ) -> None:
        """Apply the job's catch-up policy to slots that passed unrun (downtime, clock step)."""
        if not missed and earlier is None:
            return
        job = js.job
        chosen = catchup_choice(job, missed, now)
        for ended in missed_records(job, missed, chosen, now, earlier=earlier):
            self.record(ended)
        if chosen:
            js.cursor = max(js.cursor, chosen[-1])
            # All through the kept queue, the first too: a crash before a slot's run is
            # recorded must find it there.
            js.queue().extend((slot, Trigger.CATCHUP) for slot in chosen)
            self._queue_changed(js)
            self._next_catchup(js)

    def _record_slot(
        self,
        job: Job,
        slot: datetime,
        outcome: Outcome,
        now: datetime,
        why: str,
        *,
        trigger: Trigger = Trigger.SCHEDULE,
        upstream: str | None = None,
    ) -> RunEnded:
        """Record a slot that did not run (skipped); return the record."""
        ended = slot_record(job, slot, outcome, now, why, trigger=trigger, upstream=upstream)
        self._emit(ended)
        return ended

    def record(self, ended: RunEnded) -> None:
        """Record a slot or an attempt that did not run (missed); in a cluster, only once this
        daemon has claimed it, so that the cluster records it once."""
        if self._coordinator is None:
            self._emit(ended)
        else:
            self._coordinator.record_once(ended, self._emit)

    # -- firing -----------------------------------------------------------------------------

    def fire(
        self,
        job_id: str,
        *,
        slot: datetime,
        trigger: Trigger,
        upstream: str | None = None,
        queued: bool = False,
    ) -> Run | None:
        """Start a run of the job under its overlap policy; None when the slot is skipped."""
        js = self._jobs[job_id]
        job = js.job
        alive = js.alive
        if trigger is Trigger.CATCHUP and not queued and (alive or js.catchup):
            # Catch-up slots run one after another, oldest first, whatever the policy.
            js.queue().append((slot, trigger))
            self._queue_changed(js)
            return None
        if self._cluster:
            alive = []  # overlap is decided at the claim, with the runs of every node
        if alive and job.concurrency is Concurrency.FORBID:
            self._record_slot(
                job,
                slot,
                Outcome.SKIPPED,
                self._clock.now(),
                f"run {alive[0].run_id} is still alive (concurrency = forbid)",
                trigger=trigger,
                upstream=upstream,
            )
            return None
        waits_for: list[Run] = []
        if alive and job.concurrency is Concurrency.REPLACE:
            for old in alive:
                log.info("job %s: replacing run %s with a new run", job.id, old.run_id)
                old.stop(Outcome.REPLACED)
            waits_for = alive
            while js.catchup:
                dropped, _ = js.pop_catchup()
                self._record_slot(
                    job,
                    dropped,
                    Outcome.SKIPPED,
                    self._clock.now(),
                    "catch-up dropped: a newer slot replaced it",
                )
                self._queue_changed(js)
        run = Run(job=job, slot=slot, trigger=trigger, upstream=upstream)
        js.add_run(run)
        run.task = asyncio.ensure_future(self._run(js, run, waits_for))
        return run

    async def _run(
        self, js: JobState, run: Run, waits_for: list[Run], wait_s: float = 0.0
    ) -> RunEnded | None:
        try:
            if waits_for:
                await asyncio.gather(*(r.task for r in waits_for if r.task), return_exceptions=True)
            ended = await self._attempts.run(run, wait_s=wait_s)
        except Exception:
            log.exception("job %s: run %s failed inside kron", run.job.id, run.run_id)
            ended = self._attempts.end(
                run, Outcome.FAILED, ActionResult(error="internal error in kron; see the log")
            )
        finally:
            run.state = RunState.DONE
            js.discard_run(run)
            if run.trigger is Trigger.CATCHUP:
                self._queue_changed(js)  # its record is written: it leaves the kept queue
            if self._coordinator is not None:
                self._coordinator.finish(run.run_id)
        if ended is None:  # another daemon runs this slot
            self._next_catchup(js)
            return None
        for listener in self._ended_listeners:
            try:
                listener(run.job, ended)
            except Exception:
                log.exception("run-ended listener failed for run %s", run.run_id)
        self._next_catchup(js)
        return ended

    def resume(self, job_id: str, ended: RunEnded, *, at: datetime) -> Run:
        """Go on with the attempts of a run whose retry a stop or a crash left pending: the next
        attempt of the launch `ended` recorded, at `at`."""
        js = self._jobs[job_id]
        run = Run(
            job=js.job,
            slot=ended.slot,
            trigger=ended.trigger,
            upstream=ended.upstream,
            attempt=ended.attempt + 1,
            state=RunState.RETRY_WAIT,
        )
        js.add_run(run)
        wait_s = max(0.0, (at - self._clock.now()).total_seconds())
        log.info("job %s: resuming attempt %d of slot %s", job_id, run.attempt, ended.slot)
        run.task = asyncio.ensure_future(self._run(js, run, [], wait_s=wait_s))
        return run

    def _next_catchup(self, js: JobState) -> None:
        if js.catchup and not js.alive and self._jobs.get(js.job.id) is js and not self._stopping:
            # The slot stays in the kept queue until its run has ended (see _run): a crash
            # before its started record is written must not lose it.
            slot, trigger = js.pop_catchup()
            self.fire(js.job.id, slot=slot, trigger=trigger, queued=True)

    def _queue_changed(self, js: JobState) -> None:
        """Tell the keeper of the queue (kron's state file) that it changed. A stop clears the
        queue in memory only: the next start runs what is left of it."""
        if self._on_queue is not None:
            self._on_queue(js.job.id, list(js.catchup))

    # -- the cluster's database out of reach ---------------------------------------------

    @property
    def held(self) -> bool:
        return self._held

    def hold(self) -> None:
        """Fire nothing until unhold(): no claim can be made, and a slot is skipped rather than
        run twice."""
        self._held = True
        self._wake.set()

    def unhold(self, unclaimed: Mapping[str, list[datetime]]) -> None:
        """Fire again. The slots that came due while held, and those whose claims failed
        (`unclaimed`, by job), were run by no node: each job's catch-up policy decides them,
        as after downtime; their claims make that once across the cluster."""
        self._held = False
        now = self._clock.now()
        for js in list(self._jobs.values()):
            if js.job.enabled and not js.paused:
                missed, earlier, cursor = passed_unrun(js.job, js.cursor, now, unclaimed)
                self.handle_missed(js, missed, now, earlier=earlier)
                js.cursor, js.generation = max(js.cursor, cursor), js.generation + 1
                self._arm(js)
        self._wake.set()

    # -- stopping ---------------------------------------------------------------------------

    def cancel(self, run_id: str) -> Run | None:
        """Stop one run (its tree, as on timeout); it is recorded `cancelled`."""
        for run in self.running():
            if run.run_id == run_id:
                run.stop(Outcome.CANCELLED)
                return run
        return None

    def stop(self) -> None:
        """Stop firing; running runs go on until shutdown() decides."""
        self._stopping = True
        self._wake.set()

    async def shutdown(self, grace: timedelta) -> None:
        """Signal every run, wait up to `grace`, kill what is left; all are recorded."""
        self.stop()
        runs = self.running()
        for js in self._jobs.values():
            js.clear_catchup()
        await stop_runs(runs, grace)
