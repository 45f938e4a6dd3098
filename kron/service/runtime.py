"""The engine of one jobs directory, wired: records, state, coordinator, scheduler, and what
follows runs (chains, deliveries, pings). `kron daemon` and `kron run` without a daemon both
build one; the control API acts through its `Operations`."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kron.actions.dispatch import execute
from kron.config.catalog import Changes
from kron.engine.audit import AuditLog
from kron.engine.budget import AgentBudget
from kron.engine.chain import Chains
from kron.engine.coordinator import Coordinator, JobsDirLock, LocalCoordinator
from kron.engine.recovery import find_by_environment, group_alive, stop_group
from kron.engine.runs import Run
from kron.engine.scheduler import Scheduler
from kron.engine.startup import Startup, abandoned, missed_retry, retry_is_late, where_it_stands
from kron.engine.state import State, kron_dir
from kron.engine.store import FileRecordStore, RecordStore
from kron.engine.stuck import StuckRuns
from kron.model.clock import Clock
from kron.model.errors import KronError
from kron.model.job import DockerAction, Job
from kron.model.run import ProcessNote, RunStarted, Trigger
from kron.model.schedule import ScheduleKind
from kron.model.settings import Settings
from kron.notify.deliveries import Deliveries
from kron.notify.healthcheck import Healthchecks

if TYPE_CHECKING:
    from kron.engine.cluster.node import ClusterNode

__all__ = ["DELIVERY_DRAIN_S", "Runtime"]

log = logging.getLogger("kron.daemon")
_CRASHED = "the daemon stopped while this run was alive (crash, kill -9 or power loss)"
DELIVERY_DRAIN_S = 5.0  # at shutdown, after the runs: systemd's TimeoutStopSec allows for it


class Runtime:
    """Everything a loaded jobs directory needs to run its jobs.

    Args:
        jobs_dir: the jobs directory.
        settings: its kron.toml.
        clock: the time.
        records_dir: `--records-dir`, over kron.toml's `records_dir`.
        lock: the jobs directory's lock, held by a daemon; None for a one-off `kron run`.
        chains: follow `triggers` (a daemon, which has the whole job set, does).
        audit: keep the audit log (a daemon does).
        store: where records go (default: NDJSON files beside the job files, or under
            records_dir); `kron run --here` writes them to stdout.
        cluster: be a node of kron.toml's `[cluster]`, if it has one (a daemon is).
    """

    def __init__(
        self,
        jobs_dir: Path,
        settings: Settings,
        *,
        clock: Clock,
        records_dir: Path | None = None,
        lock: JobsDirLock | None = None,
        chains: bool = True,
        audit: bool = True,
        store: RecordStore | None = None,
        cluster: bool = False,
    ) -> None:
        records_dir = records_dir or settings.records_dir
        self.records_root = records_dir or jobs_dir
        self.clock = clock
        files = FileRecordStore(jobs_dir=jobs_dir, records_dir=records_dir, clock=clock)
        self.store: RecordStore = store or files
        self.state = State.load(kron_dir(self.records_root) / "state.json")
        self._lock = lock
        self._tasks: set[asyncio.Future[Any]] = set()
        self.cluster: ClusterNode | None = None
        self.coordinator: Coordinator
        if cluster and settings.cluster is not None:
            # Lazy: psycopg and the cluster's modules load only for a daemon with [cluster].
            from kron.engine.cluster.node import ClusterNode

            self.cluster = ClusterNode(settings.cluster, local=files, clock=clock)
            self.store, self.coordinator = self.cluster.store, self.cluster.coordinator
        else:
            self.coordinator = LocalCoordinator(self.state, lock=lock, started_at=clock.now())
        # One agent budget: kron.toml's daily limits, counted from the records.
        self.budget = AgentBudget.from_settings(settings, store=self.store, now=clock.now)
        self.scheduler = Scheduler(
            clock=clock,
            max_concurrent=settings.max_concurrent,
            policy=settings.policy,
            execute_action=functools.partial(execute, budget=self.budget),
            coordinator=self.coordinator,
            on_queue=self._keep_queue,
        )
        self.scheduler.subscribe(self.store.append)
        if self.cluster is not None:
            self.cluster.attach(self.scheduler)
        # After the record writer: a delivery or a trigger always follows a written record.
        if chains:
            Chains().attach(self.scheduler)
        self.deliveries = Deliveries(store=self.store, clock=clock)
        self.deliveries.attach(self.scheduler)
        self.healthchecks = Healthchecks()
        self.healthchecks.attach(self.scheduler)
        self.stuck = StuckRuns(store=self.store, clock=clock)
        self.stuck.attach(self.scheduler)
        self.stuck.on_stuck(self.deliveries.run_stuck)
        self.audit = AuditLog(kron_dir(self.records_root) / "audit.jsonl", clock) if audit else None

    # -- the job set ------------------------------------------------------------------------

    async def start(
        self,
        jobs: Mapping[str, Job],
        *,
        now: datetime,
        boot_id: str,
        stop: asyncio.Event | None = None,
    ) -> bool:
        """Arm every job as the records and the state left it; False when `stop` was set
        while a cluster node waited for its database.

        Before anything fires: runs a crash left alive are recorded `abandoned`, and those whose
        processes still live are stopped first, so `forbid` and `replace` hold across the
        crash. Then catch-up slots decided before the stop run first, retries left pending are
        resumed (or recorded missed when too late), and `@reboot` jobs fire on the first start
        of a boot. A cluster node first joins its cluster: where each job stands is then the
        cluster's.
        """
        if self.cluster is not None:
            if not await self.cluster.open(jobs, stop or asyncio.Event()):
                return False
            now = self.clock.now()
        state = self.state
        startups = {job.id: where_it_stands(job, self.store, state, now) for job in jobs.values()}
        orphans = []
        unnoted = {
            started.run_id: job.id
            for job in jobs.values()
            for started in startups[job.id].abandoned
            if startups[job.id].standing.process_of(started.run_id) is None
        }
        # Killed between starting a run's processes and noting them: look for them by name.
        found = find_by_environment(unnoted) if unnoted else {}
        for job in jobs.values():
            state.first_seen.setdefault(job.id, now)
            standing = startups[job.id].standing
            for started in startups[job.id].abandoned:
                note = standing.process_of(started.run_id) or found.get(started.run_id)
                if isinstance(job.action, DockerAction):
                    orphans.append(self._stop_container(job, started))
                elif note is not None and group_alive(note):
                    orphans.append(self._stop_orphan(job, started, note))
                else:
                    self._abandon(job, started, now)
        if orphans:
            await asyncio.gather(*orphans)
        if self.cluster is not None:
            self.cluster.take_left(_CRASHED)
        for job in jobs.values():
            startup = startups[job.id]
            if job.enabled and not self.coordinator.is_paused(job.id):
                state.catchup.pop(job.id, None)  # the scheduler takes (and keeps) the queue
            self._add(job, cursor=startup.cursor, now=now, standing=startup)
            for last, due in startup.retries:
                if retry_is_late(job, due, now):
                    self.scheduler.emit(missed_retry(job, last, due, now))
                else:
                    self.scheduler.resume(job.id, last, at=due)
        if state.boot_id != boot_id:
            state.boot_id = boot_id
            for job in jobs.values():
                reboot = job.schedule.kind is ScheduleKind.REBOOT
                if reboot and job.enabled and not self.coordinator.is_paused(job.id):
                    self.scheduler.fire(job.id, slot=now, trigger=Trigger.REBOOT)
        state.save_logged()
        if self.cluster is not None:
            self.cluster.resume_left()
            self.cluster.start()
        return True

    def _abandon(
        self, job: Job, started: RunStarted, at: datetime, stopped: str | None = None
    ) -> None:
        """Record a run the previous daemon left alive `abandoned` (in a cluster: unless another
        node did, and with its next attempt claimed)."""
        if self.cluster is None:
            # Through the scheduler, as every record: the store writes it, metrics count.
            self.scheduler.emit(abandoned(job, started, at, stopped=stopped))
            return
        how = _CRASHED + (
            f"; it still ran at this start and was stopped ({stopped})" if stopped else ""
        )
        self.cluster.abandon_own(started, at, how)

    def apply(self, changes: Changes, settings: Settings) -> None:
        """Bring the scheduler and the state in line with a catalog change (a reload)."""
        now = self.clock.now()
        if changes.settings_changed:
            self.scheduler.policy = settings.policy
            self.scheduler.set_max_concurrent(settings.max_concurrent)
            self.budget.max_runs_per_day = settings.max_runs_per_day
            self.budget.max_tokens_per_day = settings.max_tokens_per_day
        for job in changes.added:
            self.state.first_seen.setdefault(job.id, now)
            self._add(job, cursor=now, now=now)
        for job in changes.updated:
            self.store.set_retention(job.id, job.records)
            self.scheduler.update(job)
        for job_id in changes.removed:
            self.scheduler.remove(job_id)
            self.store.set_retention(job_id, None)
        if changes.added:
            self.state.save_logged()
        if self.cluster is not None and changes:
            self._publish()

    def _publish(self) -> None:
        """Tell the other nodes this node's job set: drift shows in their status."""
        cluster = self.cluster
        assert cluster is not None
        shas = {job_id: js.job.config_sha for job_id, js in self.scheduler.jobs.items()}
        task = asyncio.ensure_future(cluster.coordinator.publish(shas))
        self._tasks.add(task)  # keep a reference: the loop holds tasks only weakly
        task.add_done_callback(self._tasks.discard)

    def _add(
        self, job: Job, *, cursor: datetime, now: datetime, standing: Startup | None = None
    ) -> None:
        self.store.set_retention(job.id, job.records)
        self.scheduler.add(
            job,
            cursor=cursor,
            paused=self.coordinator.is_paused(job.id),
            now=now,
            last=standing.last if standing else None,
            last_success=standing.last_success if standing else None,
            catchup=standing.catchup if standing else None,
        )

    async def _stop_orphan(self, job: Job, started: RunStarted, note: ProcessNote) -> None:
        """Stop what a crashed daemon's run left running, then record the run abandoned."""
        log.warning(
            "job %s: run %s of the previous daemon still runs (process group %d); stopping it",
            job.id,
            started.run_id,
            note.pgid,
        )
        sent = await stop_group(note, job.kill_grace)
        self._abandon(job, started, self.clock.now(), stopped=sent)

    async def _stop_container(self, job: Job, started: RunStarted) -> None:
        """Stop and remove the container a crashed daemon's run left, then record the run."""
        from kron.actions.container import stop_left_behind  # lazy: the docker SDK

        sent = await stop_left_behind(job, started.run_id)
        self._abandon(job, started, self.clock.now(), stopped=sent)

    def _keep_queue(self, job_id: str, queue: list[tuple[datetime, Trigger]]) -> None:
        """Keep a job's catch-up queue in the state file, so a crash does not lose it."""
        if queue:
            self.state.catchup[job_id] = [(slot, trigger.value) for slot, trigger in queue]
        elif self.state.catchup.pop(job_id, None) is None:
            return
        self.state.save_logged()

    # -- operations (the control API's) ---------------------------------------------------

    def run_now(self, job_id: str, *, via: str | None = None) -> Run | None:
        """Fire a job now (trigger manual); None when its overlap policy skips the slot.

        `via` names the front end that asked (`mcp`); such a run goes to the audit log.
        """
        if self.cluster is not None and not self.cluster.db.reachable:
            raise KronError(
                "the cluster database is out of reach: nothing fires on this node until it "
                "answers (kron status)"
            )
        now = self.clock.now().replace(microsecond=0)
        run = self.scheduler.fire(job_id, slot=now, trigger=Trigger.MANUAL)
        if via is not None and self.audit is not None:
            self.audit.write(
                "run",
                job=job_id,
                error=None if run else "skipped",
                via=via,
                run_id=run.run_id if run else None,
            )
        return run

    def set_paused(
        self, job_id: str, paused: bool, *, via: str | None = None
    ) -> asyncio.Future[Any] | None:
        """Pause or resume a job's schedule; kept by the coordinator, so it survives restarts.
        In a cluster, the pause is stored in the database: await the answer to know it is."""
        if self.cluster is not None and not self.cluster.db.reachable:
            raise KronError(
                "the cluster database is out of reach: a pause or resume cannot be stored now "
                "(kron status)"
            )
        self.coordinator.set_paused(job_id, paused)
        self.scheduler.set_paused(job_id, paused)
        if self.audit is not None:
            self.audit.write("pause" if paused else "resume", job=job_id, via=via)
        log.info(
            "job %s %s%s", job_id, "paused" if paused else "resumed", f" (via {via})" if via else ""
        )
        if self.cluster is not None:
            return self.cluster.coordinator.takeover.pause_write(job_id)
        return None

    def cancel(self, run_id: str, *, via: str | None = None) -> Run | None:
        """Stop one run's process tree; it is recorded `cancelled`. `via` names the front end
        that asked (`web`); such a cancel goes to the audit log."""
        run = self.scheduler.cancel(run_id)
        if run is not None and via is not None and self.audit is not None:
            self.audit.write("cancel", job=run.job.id, via=via, run_id=run.run_id)
        return run

    # -- stopping ---------------------------------------------------------------------------

    def remember_cursors(self) -> None:
        """Where each job stands at a clean stop (disabled and paused jobs: now)."""
        now = self.clock.now()
        for job_id, js in self.scheduler.jobs.items():
            idle = not js.job.enabled or js.paused
            self.state.cursors[job_id] = now if idle else js.cursor

    async def drain(self) -> None:
        """Give messages about the runs just stopped a short while to leave."""
        await asyncio.gather(
            self.deliveries.drain(DELIVERY_DRAIN_S), self.healthchecks.drain(DELIVERY_DRAIN_S)
        )

    async def leave(self, flush_s: float) -> None:
        """A cluster node's clean stop: its records reach the database, it leaves."""
        if self.cluster is not None:
            await self.cluster.stop(flush_s)

    def close(self) -> None:
        self.coordinator.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None
