"""What the cluster's coordinator does to this node's scheduler and record store: hold and
release the scheduler, stop runs, record a dead node's runs abandoned and resume their next
attempt, follow pauses and the newest outcomes of the other nodes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from kron.engine.cluster.nodes import Taken
from kron.model.clock import Clock
from kron.model.run import Outcome, RunEnded, Trigger, read_line

if TYPE_CHECKING:
    from kron.engine.scheduler import Scheduler

__all__ = ["Leases", "TakeOver", "taken_record"]

log = logging.getLogger("kron.cluster")


class Leases(Protocol):
    """Where lease ends go: the record store's writer, which ends them in the statement that
    writes the run's record (so the record's lateness is judged before the lease goes)."""

    def lease_ended(self, run_id: str, *, finished: bool) -> None: ...


class TakeOver:
    """The coordinator's hands on this node's scheduler (attach() before the loop runs)."""

    def __init__(self, node: str, clock: Clock) -> None:
        self.node = node
        self.clock = clock
        self.scheduler: Scheduler | None = None
        self.leases: Leases | None = None
        self.on_fatal: Callable[[str], None] = lambda why: None
        self._pause_writes: dict[str, asyncio.Future[Any]] = {}

    def attach(self, scheduler: Scheduler, leases: Leases) -> None:
        self.scheduler = scheduler
        self.leases = leases

    # -- runs -------------------------------------------------------------------------------

    def stop(self, run_id: str, outcome: Outcome, why: str) -> bool:
        """Stop this node's run (its process tree, as on timeout); False when not here."""
        if self.scheduler is None:
            return False
        for run in self.scheduler.running():
            if run.run_id == run_id:
                if run.stop_reason is None:
                    level = logging.ERROR if outcome is Outcome.ABANDONED else logging.INFO
                    log.log(level, "job %s: run %s: %s; stopping it", run.job.id, run_id, why)
                run.stop(outcome)
                return True
        return False

    def released(self, run_id: str) -> None:
        if self.leases is not None:
            self.leases.lease_ended(run_id, finished=False)

    def finished(self, run_id: str) -> None:
        if self.leases is not None:
            self.leases.lease_ended(run_id, finished=True)

    def dead_node_runs(self, node: str, silent_s: float, taken: Iterable[Taken]) -> None:
        """A dead node's live launches, now this node's to record: each running attempt is
        recorded `abandoned`, naming the node, and the next attempt is claimed where the job
        has one left."""
        for launch in taken:
            why = (
                f"node {node} died while this run was alive: silent for {silent_s:.1f}s "
                f"(more than dead_after); recorded by node {self.node}"
            )
            log.warning("job %s: run %s: %s", launch.job, launch.run_id, why)
            self.take(launch, why)

    def take(self, launch: Taken, why: str) -> None:
        """Record a taken launch's running attempt abandoned (unless it was between attempts),
        and resume its next attempt where the job has one left."""
        record = self.record(launch, why)
        self.resume(launch, why, record)

    def record(self, launch: Taken, why: str, *, late: bool = False) -> RunEnded | None:
        """Record a taken launch's running attempt abandoned (`late`: this node's late word on
        its own run, which another node took)."""
        if self.scheduler is None or not launch.running:
            return None
        record = taken_record(launch, why, self.clock.now(), late=late)
        self.scheduler.emit(record)
        return record

    def resume(self, launch: Taken, why: str, record: RunEnded | None) -> None:
        """Claim a taken launch's next attempt, where the job has one left."""
        scheduler = self.scheduler
        if scheduler is None:
            return
        at = self.clock.now()
        js = scheduler.jobs.get(launch.job)
        if js is None:
            log.warning(
                "job %s of node %s is not loaded here; its next attempt is not run",
                launch.job,
                launch.node,
            )
            return
        policy = js.job.retry
        if launch.attempt >= policy.attempts:
            return
        from kron.engine.retries import retry_timeline  # lazy: tenacity, for a job that retries

        waits = retry_timeline(policy)
        due = at + timedelta(seconds=waits[launch.attempt - 1]) if launch.running else at
        scheduler.resume(launch.job, record or taken_record(launch, why, at), at=due)

    # -- the scheduler as a whole -----------------------------------------------------------

    def hold(self) -> None:
        if self.scheduler is not None:
            self.scheduler.hold()

    def unhold(self, unclaimed: Mapping[str, list[datetime]]) -> None:
        if self.scheduler is not None:
            self.scheduler.unhold(unclaimed)

    def name_taken(self, node: str) -> None:
        why = (
            f"node name {node!r} was taken by another daemon while this one was silent; "
            "this daemon stops (give each node its own name)"
        )
        log.error("%s", why)
        self.on_fatal(why)

    # -- pauses and the other nodes' outcomes ---------------------------------------------

    def writing_pause(self, job_id: str, write: asyncio.Future[Any]) -> None:
        """A pause or resume being stored: until it is, a heartbeat's reading of the table
        does not undo it."""
        self._pause_writes[job_id] = write

    def pause_write(self, job_id: str) -> asyncio.Future[Any] | None:
        return self._pause_writes.get(job_id)

    def writing(self) -> set[str]:
        """Jobs whose pause or resume is not stored yet."""
        self._pause_writes = {j: w for j, w in self._pause_writes.items() if not w.done()}
        return set(self._pause_writes)

    def sync(self, paused: set[str], last: list[tuple[dict[str, Any], datetime | None]]) -> None:
        """Follow the pauses made on other nodes, and their runs' outcomes (status, list)."""
        scheduler = self.scheduler
        if scheduler is None:
            return
        for job_id, js in scheduler.jobs.items():
            want = job_id in paused
            if want != js.paused and job_id not in self._pause_writes:
                log.info("job %s %s on another node", job_id, "paused" if want else "resumed")
                scheduler.set_paused(job_id, want)
        for line, success_at in last:
            record = read_line(line)
            if not isinstance(record, RunEnded):
                continue
            state = scheduler.jobs.get(record.job)
            if state is None:
                continue
            js = state
            if js.last is None or record.ended_at >= js.last.ended_at:
                js.note(record)
            if success_at is not None and (
                js.last_success_at is None or success_at > js.last_success_at
            ):
                js.last_success_at = success_at


def taken_record(launch: Taken, why: str, at: datetime, *, late: bool = False) -> RunEnded:
    """The `abandoned` record of a taken launch's attempt, naming the node it was on."""
    extra: dict[str, Any] = {"dead_node": launch.node}
    if late:
        extra |= {"late": True, "lease_lost": why}
    return RunEnded(
        run_id=launch.run_id,
        job=launch.job,
        slot=launch.slot,
        trigger=Trigger(launch.trigger),
        upstream=launch.upstream,
        attempt=launch.attempt,
        outcome=Outcome.ABANDONED,
        started_at=launch.since,
        ended_at=max(at, launch.since),
        config_sha=launch.config_sha,
        error=why,
        extra=extra,
    )
