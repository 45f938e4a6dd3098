"""When and whether jobs run: the timer heap, overlap, catch-up, retries, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import os
import signal
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import tenacity

from kron.actions.dispatch import ActionResult, execute, mask, secret_values
from kron.config.loader import policy_violation
from kron.engine.records import format_time, parse_time
from kron.model import job as spec
from kron.model.clock import Clock
from kron.model.job import Concurrency, Outcome, Trigger
from kron.model.run import Event, RunEnded, RunStarted, new_run_id, to_record
from kron.model.schedule import Schedule, ScheduleKind, jitter_offset

log = logging.getLogger("kron.runner")

# A slot is run on schedule when the daemon wakes for it no later than this; a slot found
# later than that (a stalled or suspended host, a forward clock step) counts as missed and
# its job's catch-up policy decides.
LATE_TOLERANCE = timedelta(seconds=60)
# At most this many missed slots are listed one by one after a long outage; older ones are
# summed up in a single record, so a year of downtime of a seconds job costs no more.
MAX_MISSED_LISTED = 1000
MEMO_SIZE = 16384  # schedules whose last next-fire answer is kept (see Scheduler._next_fire)

Execute = Callable[..., Awaitable[ActionResult]]


@dataclass(eq=False, kw_only=True)
class Run:
    """One firing of a job: its attempts, from queued to the last record."""

    job: spec.Job
    slot: datetime
    trigger: Trigger
    upstream: str | None = None
    run_id: str = field(default_factory=new_run_id)
    attempt: int = 1
    state: str = "queued"  # queued, running, retry-wait, done
    stop_reason: Outcome | None = None
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    pgid: int | None = None
    task: asyncio.Task[RunEnded | None] | None = None
    started_at: datetime | None = None
    last: RunEnded | None = None

    def stop(self, reason: Outcome) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop_event.set()


@dataclass(eq=False, kw_only=True)
class JobState:
    """The runner's view of one job: its definition, cursor and live runs."""

    job: spec.Job
    cursor: datetime  # newest slot already handled (run, skipped or recorded missed)
    generation: int = 0
    fire_at: datetime | None = None
    runs: set[Run] = field(default_factory=set)
    catchup: deque[tuple[datetime, Trigger]] = field(default_factory=deque)
    paused: bool = False
    last_outcome: str | None = None  # of the newest record (status, list, metrics)
    last_ended_at: datetime | None = None
    last_success_at: datetime | None = None
    last_record: dict[str, Any] | None = None

    def note(self, record: Mapping[str, Any]) -> None:
        """Remember the newest terminal record of this job."""
        self.last_record = dict(record)
        self.last_outcome = str(record.get("outcome"))
        ended = record.get("ended_at")
        self.last_ended_at = parse_time(ended) if isinstance(ended, str) else None
        if self.last_outcome == Outcome.SUCCEEDED.value:
            self.last_success_at = self.last_ended_at

    @property
    def alive(self) -> list[Run]:
        return [r for r in self.runs if r.state != "done"]


class Scheduler:
    """Fires jobs on their schedules; the daemon, `kron run` and the tests drive it."""

    def __init__(
        self,
        *,
        clock: Clock,
        max_concurrent: int | None = None,
        execute_action: Execute = execute,
        policy: spec.Policy | None = None,
    ) -> None:
        self._clock = clock
        self._execute = execute_action
        self.policy = policy or spec.Policy()
        self._jobs: dict[str, JobState] = {}
        self._heap: list[tuple[datetime, int, str, int]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._stopping = False
        self._limit = asyncio.Semaphore(max_concurrent) if max_concurrent else None
        self._listeners: list[Callable[[Event], None]] = []
        self._next_memo: dict[Schedule, tuple[datetime, datetime | None]] = {}
        self._due_memo: dict[
            tuple[Schedule, datetime, datetime], tuple[list[datetime], datetime | None]
        ] = {}
        self._ended_listeners: list[Callable[[spec.Job, RunEnded], None]] = []

    # -- wiring -----------------------------------------------------------------------------

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """Call `listener` with every event, synchronously, in order."""
        self._listeners.append(listener)

    def on_run_ended(self, listener: Callable[[spec.Job, RunEnded], None]) -> None:
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
            js.note(to_record(event))
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
        job: spec.Job,
        *,
        cursor: datetime,
        paused: bool = False,
        now: datetime | None = None,
        last: Mapping[str, Any] | None = None,
        last_success: datetime | None = None,
    ) -> None:
        """Schedule a job whose slots up to `cursor` were handled.

        Slots between `cursor` and now passed while kron was not running: they are missed, and
        the job's catch-up policy decides which of them run. Nothing else fires before the next
        slot, so starting at 10:00:30 never runs a `* * * * *` job before 10:01:00.
        """
        now = now or self._clock.now()
        js = JobState(job=job, cursor=cursor, paused=paused)
        old = self._jobs.get(job.id)
        if old is not None:
            js.runs, js.generation = old.runs, old.generation + 1
            js.last_record, js.last_outcome = old.last_record, old.last_outcome
            js.last_ended_at, js.last_success_at = old.last_ended_at, old.last_success_at
        if last is not None:  # what the records say of the job before this start
            js.note(last)
            js.last_success_at = last_success or js.last_success_at
        self._jobs[job.id] = js
        horizon = now - jitter_offset(job.id, job.jitter)
        if cursor < horizon:
            first = self._next_fire(job.schedule, cursor)
            if job.enabled and not paused and first is not None and first <= horizon:
                slots, earlier = due_slots(job.schedule, cursor, horizon)
                self.handle_missed(js, slots, now, earlier=earlier)
            js.cursor = max(js.cursor, horizon)
        self._arm(js)

    def update(self, job: spec.Job) -> None:
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
            js.catchup.clear()
            self._wake.set()

    def set_max_concurrent(self, limit: int | None) -> None:
        """Change the global limit; runs already holding a place keep it."""
        self._limit = asyncio.Semaphore(limit) if limit else None

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
        slot = self._next_fire(job.schedule, js.cursor)
        if slot is None:
            return
        js.fire_at = slot + jitter_offset(job.id, job.jitter)
        heapq.heappush(self._heap, (js.fire_at, next(self._seq), job.id, js.generation))
        self._wake.set()

    def _next_fire(self, schedule: Schedule, after: datetime) -> datetime | None:
        """schedule.next_fire, remembered as the span it answers for.

        A schedule's slots are a fixed set of instants, so the answer `r` for `after = t`
        holds for every `after` in [t, r): 10,000 jobs on one expression, each with its own
        cursor, cost one computation at start-up, and 500 due together cost one per fire.
        """
        span = self._next_memo.get(schedule)
        if span is not None:
            asked, answer = span
            if asked <= after and (answer is None or after < answer):
                return answer
        answer = schedule.next_fire(after)
        if len(self._next_memo) > MEMO_SIZE:
            self._next_memo.clear()
        self._next_memo[schedule] = (after, answer)
        return answer

    # -- the loop ---------------------------------------------------------------------------

    async def run_forever(self) -> None:
        """Sleep until the earliest fire, handle what is due, repeat until stop()."""
        while not self._stopping:
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
        fresh = [
            s for s in missed if job.starting_deadline is None or now - s <= job.starting_deadline
        ]
        if job.catchup is spec.Catchup.LAST:
            chosen = fresh[-1:]
        elif job.catchup is spec.Catchup.ALL:
            chosen = fresh[-job.catchup_max :]
        else:
            chosen = []
        why = f"not run: the daemon was down or the clock jumped (catchup = {job.catchup.value})"
        if earlier is not None:
            first = missed[0] if missed else now
            self._record_slot(
                job,
                earlier,
                Outcome.MISSED,
                now,
                f"{why}; and every slot from here until {format_time(first)}",
            )
        for slot in missed:
            if slot not in chosen:
                self._record_slot(job, slot, Outcome.MISSED, now, why)
        if chosen:
            js.cursor = max(js.cursor, chosen[-1])
        for slot in chosen:
            self.fire(job.id, slot=slot, trigger=Trigger.CATCHUP)

    def _record_slot(
        self,
        job: spec.Job,
        slot: datetime,
        outcome: Outcome,
        now: datetime,
        why: str,
        *,
        trigger: Trigger = Trigger.SCHEDULE,
        upstream: str | None = None,
    ) -> RunEnded:
        """Record a slot that did not run (missed, skipped); return the record."""
        ended = RunEnded(
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
        self._emit(ended)
        return ended

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
            js.catchup.append((slot, trigger))
            return None
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
                dropped, _ = js.catchup.popleft()
                self._record_slot(
                    job,
                    dropped,
                    Outcome.SKIPPED,
                    self._clock.now(),
                    "catch-up dropped: a newer slot replaced it",
                )
        run = Run(job=job, slot=slot, trigger=trigger, upstream=upstream)
        js.runs.add(run)
        run.task = asyncio.ensure_future(self._run(js, run, waits_for))
        return run

    async def _run(self, js: JobState, run: Run, waits_for: list[Run]) -> RunEnded | None:
        try:
            if waits_for:
                await asyncio.gather(*(r.task for r in waits_for if r.task), return_exceptions=True)
            ended = await self._attempts(run)
        except Exception:
            log.exception("job %s: run %s failed inside kron", run.job.id, run.run_id)
            ended = self._end(
                run, Outcome.FAILED, ActionResult(error="internal error in kron; see the log")
            )
        finally:
            run.state = "done"
            js.runs.discard(run)
        for listener in self._ended_listeners:
            try:
                listener(run.job, ended)
            except Exception:
                log.exception("run-ended listener failed for run %s", run.run_id)
        self._next_catchup(js)
        return ended

    def _next_catchup(self, js: JobState) -> None:
        if js.catchup and not js.alive and self._jobs.get(js.job.id) is js and not self._stopping:
            slot, trigger = js.catchup.popleft()
            self.fire(js.job.id, slot=slot, trigger=trigger, queued=True)

    async def _attempts(self, run: Run) -> RunEnded:
        policy = run.job.retry
        if policy.attempts == 1:
            return await self._attempt(run)  # nothing to retry: skip tenacity's set-up per run
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(policy.attempts),
            wait=retry_wait(policy),
            retry=tenacity.retry_if_result(
                lambda ended: ended.outcome in policy.on and run.stop_reason is None
            ),
            sleep=lambda seconds: self._retry_sleep(run, seconds),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
            before_sleep=lambda state: log.info(
                "job %s: attempt %d ended %s; retrying in %.1fs",
                run.job.id,
                state.attempt_number,
                state.outcome.result().outcome.value if state.outcome else "?",
                state.upcoming_sleep,
            ),
        )
        ended: RunEnded | None = None
        async for attempt in retrying:
            with attempt:
                run.attempt = attempt.retry_state.attempt_number
                if run.attempt > 1:
                    run.run_id = new_run_id()
                ended = await self._attempt(run)
            if attempt.retry_state.outcome and not attempt.retry_state.outcome.failed:
                attempt.retry_state.set_result(ended)
        assert ended is not None
        return ended

    async def _retry_sleep(self, run: Run, seconds: float) -> None:
        run.state = "retry-wait"
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        stopper = asyncio.ensure_future(run.stop_event.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()

    async def _attempt(self, run: Run) -> RunEnded:
        job = run.job
        if run.stop_reason is not None:
            return self._end(run, run.stop_reason, ActionResult(error="stopped before it started"))
        run.state = "queued"
        limit = self._limit
        if limit is not None and not await self._acquire(run, limit):
            return self._end(
                run,
                run.stop_reason or Outcome.CANCELLED,
                ActionResult(error="stopped while queued for max_concurrent"),
            )
        try:
            run.state = "running"
            run.started_at = self._clock.now()
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
            if why := policy_violation(job.action, self.policy):
                return self._end(
                    run, Outcome.FAILED, ActionResult(error=f"refused at fire time: {why}")
                )
            result = await self._execute(
                job,
                run_env=self._run_env(run),
                stop=run.stop_event,
                on_spawn=lambda pid: setattr(run, "pgid", pid),
            )
            return self._end(run, classify(job, result, run.stop_reason), result)
        finally:
            if limit is not None:
                limit.release()

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

    def _run_env(self, run: Run) -> dict[str, str]:
        return {
            "KRON_JOB": run.job.id,
            "KRON_RUN_ID": run.run_id,
            "KRON_SLOT": format_time(run.slot),
            "KRON_TRIGGER": run.trigger.value,
            "KRON_ATTEMPT": str(run.attempt),
        }

    def _end(self, run: Run, outcome: Outcome, result: ActionResult) -> RunEnded:
        secrets = secret_values(run.job)
        ended = RunEnded(
            run_id=run.run_id,
            job=run.job.id,
            slot=run.slot,
            trigger=run.trigger,
            attempt=run.attempt,
            outcome=outcome,
            started_at=run.started_at if run.state == "running" else None,
            ended_at=self._clock.now(),
            config_sha=run.job.config_sha,
            exit_code=result.exit_code,
            signal=result.signal,
            stdout=mask(result.stdout, secrets),
            stderr=mask(result.stderr, secrets),
            truncated=result.truncated,
            error=mask(result.error, secrets) if result.error else None,
            pid=result.pid,
            upstream=run.upstream,
            extra=result.extra,
        )
        run.last = ended
        run.state = "ended"
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
            js.catchup.clear()
        for run in runs:
            run.stop(Outcome.CANCELLED)
        tasks = [r.task for r in runs if r.task]
        if not tasks:
            return
        log.info("stopping %d running run(s); waiting up to %s", len(tasks), grace)
        _, pending = await asyncio.wait(tasks, timeout=grace.total_seconds())
        if pending:
            for run in runs:
                if run.task in pending and run.pgid:
                    log.warning(
                        "job %s: run %s still alive after shutdown grace; SIGKILL",
                        run.job.id,
                        run.run_id,
                    )
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(run.pgid, signal.SIGKILL)
            await asyncio.wait(pending, timeout=10)


def classify(job: spec.Job, result: ActionResult, stop_reason: Outcome | None) -> Outcome:
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


def retry_wait(policy: spec.RetryPolicy) -> tenacity.wait.wait_base:
    """The wait between attempts, as a tenacity strategy: fixed or exponential, plus jitter."""
    delay_s = policy.delay.total_seconds()
    if policy.backoff is spec.Backoff.FIXED:
        wait: tenacity.wait.wait_base = tenacity.wait_fixed(
            min(delay_s, policy.max_delay.total_seconds())
        )
    else:
        wait = tenacity.wait_exponential(
            multiplier=delay_s, min=0, max=policy.max_delay.total_seconds()
        )
    if policy.jitter:
        wait = wait + tenacity.wait_random(0, policy.jitter.total_seconds())
    return wait


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


def retry_timeline(policy: spec.RetryPolicy) -> list[float]:
    """Seconds waited before attempts 2..n (jitter excluded): the documented back-off table."""
    wait = retry_wait(
        spec.RetryPolicy(
            attempts=policy.attempts,
            backoff=policy.backoff,
            delay=policy.delay,
            max_delay=policy.max_delay,
            on=policy.on,
        )
    )
    waits = []
    for number in range(1, policy.attempts):
        state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = number
        waits.append(float(wait(state)))
    return waits
