"""Notifications: after a run's final record, a message to each of the job's `notify` targets.

Deliveries start once the run's final record (after its retries) is on disk, each in a task of
its own with its own timeout and retries (`retries` more attempts after the first, waiting 1 s,
2 s, 4 s ... at most 30 s between them), so a slow or dead endpoint never delays a job. Each
delivery leaves one line in the job's records file, beside the run it reports on:
`{"v": 1, "run_id": ..., "job": ..., "delivery": {"target": "slack", "ok": false, "attempts": 3,
"error": "..."}, "at": ...}`. The line has no `outcome`, so readers of outcomes pass over it.

When a delivery fires (`on`):

- `success`: the run succeeded.
- `failure`: it failed for good: `failed`, `timeout`, `wait_timeout`, `cancelled`, `abandoned`
  (the outcomes that break a chain, see kron.engine.chain).
- `recovery`: it succeeded and the job's previous success-or-failure was a failure. `skipped` and
  `replaced` runs, and records of slots that never ran, are neither and are passed over. The
  previous one is kept in memory, first read from the records, so a restart does not forget it.
- `always`: every final outcome of a run, `skipped` and `replaced` included.
- `stuck`: sent while the run still runs, once, when kron.engine.stuck finds it stuck.

Records of slots that never ran (`missed`, `skipped` by overlap, `dependency_failed`) are not
runs and notify nothing: the upstream job's own failure is the one worth a message.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping

from kron.actions.base import RunEnvironment
from kron.engine.runs import Run
from kron.engine.store import RecordStore
from kron.engine.stuck import Stuck
from kron.model.clock import Clock, RealClock
from kron.model.job import Delivery, Job
from kron.model.run import FAILED_FOR_GOOD, HOST, DeliveryNote, Event, Outcome, RunEnded
from kron.model.secrets import Secrets
from kron.notify.channels import DeliveryError, Target, resolve_target, send, target_secrets
from kron.notify.message import Message, build_message, stuck_message
from kron.notify.sender import Sender

__all__ = ["MAX_BACKOFF_S", "Deliveries", "backoff_s", "wants"]

log = logging.getLogger("kron.notify")

MAX_BACKOFF_S = 30.0


def wants(on: frozenset[str], outcome: Outcome, *, recovery: bool) -> bool:
    """Whether a delivery with these `on` values fires for a run's final outcome."""
    return (
        "always" in on
        or ("success" in on and outcome is Outcome.SUCCEEDED)
        or ("recovery" in on and recovery)
        or ("failure" in on and outcome in FAILED_FOR_GOOD)
    )


def backoff_s(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt`: 1, 2, 4, 8, ... at most 30."""
    return min(float(2 ** (attempt - 1)), MAX_BACKOFF_S)


class Deliveries(Sender):
    """Sends each run's notifications in the background and records how each went.

    Attach it to the scheduler after the record writer, so that a run's record is on disk
    before its message goes out.
    """

    late_message = "stopped %d notification(s) still in flight at shutdown"

    def __init__(
        self,
        *,
        store: RecordStore,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        host: str = HOST,
    ) -> None:
        """Args:
        store: where delivery lines go, beside the runs they report on.
        clock: stamps the `at` of delivery lines.
        sleep: waits between attempts (tests pass one that returns at once).
        host: the host name the message gives.
        """
        super().__init__(log)
        self._store = store
        self._clock = clock or RealClock()
        self._sleep = sleep
        self._host = host
        # Whether each job's newest success-or-failure was a failure; read from its records
        # on first sight (only for jobs with a `recovery` delivery), then kept up to date.
        self._last_failed: dict[str, bool] = {}

    def event(self, event: Event) -> None:
        """Learn a job's previous outcome from its records before this run's lines count."""
        if event.job in self._last_failed or self._scheduler is None:
            return
        js = self._scheduler.jobs.get(event.job)
        if js is not None and _wants_recovery(js.job):
            self._last_failed[event.job] = self._previous_failed(event.job, event.run_id)

    def run_ended(self, job: Job, ended: RunEnded) -> None:
        """Start the deliveries that this final outcome calls for; return at once."""
        if job.id not in self._last_failed and _wants_recovery(job):
            self._last_failed[job.id] = self._previous_failed(job.id, ended.run_id)
        succeeded = ended.outcome is Outcome.SUCCEEDED
        recovery = succeeded and self._last_failed.get(job.id, False)
        if succeeded or ended.outcome in FAILED_FOR_GOOD:
            self._last_failed[job.id] = not succeeded
        chosen = [
            index
            for index, delivery in enumerate(job.notify)
            if wants(delivery.on, ended.outcome, recovery=recovery)
        ]
        if not chosen:
            return
        env, secrets = _environment(job)
        targets: dict[int, Target | DeliveryError] = {}
        for index, delivery in enumerate(job.notify):
            try:
                target = resolve_target(delivery, env)
            except DeliveryError as exc:
                targets[index] = exc
            else:
                targets[index] = target
                secrets += target_secrets(target)
        message = build_message(
            job, ended, recovery=recovery, secrets=secrets.values, host=self._host
        )
        for index in chosen:
            self._start(
                self._deliver(
                    job,
                    job.notify[index],
                    targets[index],
                    message=message,
                    env=env,
                    secrets=secrets,
                )
            )

    def run_stuck(self, job: Job, run: Run, stuck: Stuck) -> None:
        """Send the `stuck` deliveries of a run found stuck; it goes on running."""
        chosen = [d for d in job.notify if "stuck" in d.on]
        if not chosen or run.started_at is None:
            return
        env, secrets = _environment(job)
        targets: list[tuple[Delivery, Target | DeliveryError]] = []
        for delivery in chosen:
            try:
                target = resolve_target(delivery, env)
            except DeliveryError as exc:
                targets.append((delivery, exc))
            else:
                targets.append((delivery, target))
                secrets += target_secrets(target)
        message = stuck_message(
            job,
            run.run_id,
            slot=run.slot,
            started_at=run.started_at,
            attempt=run.attempt,
            trigger=run.trigger.value,
            reason=stuck.reason,
            now=self._clock.now(),
            host=self._host,
        )
        for delivery, resolved in targets:
            self._start(
                self._deliver(job, delivery, resolved, message=message, env=env, secrets=secrets)
            )

    def _previous_failed(self, job_id: str, run_id: str) -> bool:
        """Whether the job's newest success-or-failure on record (not `run_id`) was a failure."""
        try:
            tail = self._store.recent(job_id)
        except OSError as exc:
            log.warning("job %s: cannot read its records for recovery: %s", job_id, exc)
            return False
        for line in reversed(tail):
            if not isinstance(line, RunEnded) or line.run_id == run_id:
                continue
            if line.outcome is Outcome.SUCCEEDED:
                return False
            if line.outcome.failed_for_good:
                return True
        return False

    async def _deliver(
        self,
        job: Job,
        delivery: Delivery,
        target: Target | DeliveryError,
        *,
        message: Message,
        env: Mapping[str, str],
        secrets: Secrets,
    ) -> None:
        attempts = 0
        error: str | None = None
        try:
            if isinstance(target, DeliveryError):
                error = secrets.mask(str(target))
            else:
                while True:
                    attempts += 1
                    try:
                        await send(
                            target,
                            message,
                            job=job,
                            env=env,
                            limit=delivery.timeout,
                            http=self._http,
                        )
                    except DeliveryError as exc:
                        error = secrets.mask(str(exc))
                        if exc.permanent or attempts > delivery.retries:
                            break
                        wait_s = backoff_s(attempts)
                        log.info(
                            "job %s: run %s: %s delivery attempt %d failed (%s); retrying in %gs",
                            job.id,
                            message.run_id,
                            delivery.kind,
                            attempts,
                            error,
                            wait_s,
                        )
                        await self._sleep(wait_s)
                    else:
                        error = None
                        break
        except asyncio.CancelledError:
            error = "the daemon stopped before the delivery finished"
            self._record(job.id, message.run_id, delivery.kind, attempts, error)
            raise
        except Exception:
            log.exception("job %s: %s delivery failed inside kron", job.id, delivery.kind)
            error = "internal error in kron; see the log"
        self._record(job.id, message.run_id, delivery.kind, attempts, error)

    def _record(
        self, job_id: str, run_id: str, kind: str, attempts: int, error: str | None
    ) -> None:
        ok = error is None
        (log.info if ok else log.warning)(
            "job %s: run %s: %s delivery %s after %d attempt(s)%s",
            job_id,
            run_id,
            kind,
            "sent" if ok else "failed",
            attempts,
            "" if ok else f": {error}",
        )
        self._store.append(
            DeliveryNote(
                run_id=run_id,
                job=job_id,
                target=kind,
                ok=ok,
                attempts=attempts,
                error=error,
                at=self._clock.now(),
            )
        )


def _wants_recovery(job: Job) -> bool:
    return any("recovery" in delivery.on for delivery in job.notify)


def _environment(job: Job) -> tuple[dict[str, str], Secrets]:
    """The variables tokens and passwords are read from (the job's own environment), and the
    job's secrets."""
    try:
        environment = RunEnvironment.read(job)
    except (OSError, ValueError) as exc:
        log.warning("job %s: env_file unreadable for notifications: %s", job.id, exc)
        return {**os.environ, **job.env}, Secrets.of_job(job)
    return environment.for_process({}), environment.secrets
