"""`kron run` without a daemon: one run of one job in this process, recorded like any other.

`run_once` is `kron run` when no daemon answers: records go to the records files. `run_here` is
`kron run --here`, what a pod of `kron export kubernetes` runs: records go to a stream (stdout)
as NDJSON, the jobs the run triggers run in this process too, and a slot the CronJob controller
fires that kron's own schedule would not (the second pass of a repeated autumn hour) is not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from kron.config.discovery import job_id_for
from kron.config.loader import load_job
from kron.config.settings import load_settings
from kron.engine.streamstore import StreamRecordStore
from kron.model.clock import Clock, RealClock
from kron.model.dst import is_second_pass
from kron.model.errors import SpecError
from kron.model.job import Job
from kron.model.run import Outcome, Trigger
from kron.model.schedule import AtSchedule, ScheduleKind, jitter_offset
from kron.model.settings import Settings
from kron.model.times import format_time
from kron.service.runtime import Runtime
from kron.service.signals import Signals

__all__ = ["not_a_slot", "run_here", "run_once"]

log = logging.getLogger("kron.daemon")


async def run_once(path: Path, *, jobs_dir: Path) -> dict[str, Any]:
    """Fire the job in `path` now (trigger manual), wait for its end, return its final record.

    Deliveries and pings go out as the daemon sends them; triggers are not followed, as they
    need the daemon's whole job set.
    """
    settings, _ = load_settings(jobs_dir)
    job, _ = load_job(path, jobs_dir=jobs_dir, settings=settings)
    clock = RealClock()
    runtime = Runtime(jobs_dir, settings, clock=clock, chains=False, audit=False)
    now = clock.now()
    runtime.scheduler.add(job, cursor=now, paused=True, now=now)
    run = runtime.run_now(job.id)
    ended = await run.task if run is not None and run.task is not None else None
    await runtime.drain()
    if ended is None:
        last = runtime.store.last_terminal(job.id)
        return last.to_json() if last else {"job": job.id, "outcome": "skipped"}
    return ended.to_json()


def not_a_slot(job: Job, slot: datetime) -> str | None:
    """Why kron's own schedule would not fire `job` at `slot`, the time a CronJob controller
    scheduled a Job for; None when it would."""
    schedule = job.schedule
    if schedule.kind in (ScheduleKind.MANUAL, ScheduleKind.REBOOT):
        return f"{schedule.expr.strip()} never fires by schedule"
    if isinstance(schedule, AtSchedule) and slot != schedule.at:
        return f"{schedule.expr.strip()} fires once, at {format_time(schedule.at)}"
    if is_second_pass(schedule, slot):
        wall = slot.astimezone(schedule.zone).strftime("%H:%M")
        return (
            f"{wall} in {schedule.zone.key} comes twice as daylight saving time ends; kron runs a "
            "fixed-time job at the first"
        )
    return None


async def run_here(
    path: Path,
    *,
    jobs_dir: Path,
    out: TextIO,
    slot: datetime | None = None,
    clock: Clock | None = None,
) -> Outcome | None:
    """Run the job in `path` in this process; records go to `out` as NDJSON.

    Args:
        path: the job file.
        jobs_dir: its jobs directory (kron.toml, and the files of the jobs it triggers).
        out: where each record goes, as one JSON line.
        slot: the scheduled time a CronJob controller started this run for: the run is recorded
            as that slot (trigger `schedule`), after the job's jitter; None runs it now
            (trigger `manual`).
        clock: the time (tests drive a fake one).

    Returns:
        The job's final outcome, or None when `slot` is not a slot of the job (nothing ran).

    Raises:
        SpecError: the job file is invalid.
    """
    clock = clock or RealClock()
    settings, _ = load_settings(jobs_dir)
    job, _ = load_job(path, jobs_dir=jobs_dir, settings=settings)
    if slot is not None and (why := not_a_slot(job, slot)) is not None:
        log.warning("job %s: %s is not a slot of this job (%s); not run", job.id, slot, why)
        return None
    store = StreamRecordStore(out)
    runtime = Runtime(jobs_dir, settings, clock=clock, audit=False, store=store)
    now = clock.now()
    # The scheduler's loop never runs here: adding jobs arms nothing that could fire by itself.
    for member in _chain(job, jobs_dir=jobs_dir, settings=settings):
        runtime.scheduler.add(member, cursor=now, now=now)
    if slot is not None and job.jitter:
        await clock.sleep_until(slot + jitter_offset(job.id, job.jitter))
    stop = asyncio.Event()
    signals = Signals(asyncio.get_running_loop())
    for signum in (signal.SIGTERM, signal.SIGINT):
        signals.on(signum, stop.set)
    try:
        run = runtime.scheduler.fire(
            job.id,
            slot=slot or now.replace(microsecond=0),
            trigger=Trigger.SCHEDULE if slot is not None else Trigger.MANUAL,
        )
        outcome = await _until_done(runtime, run.task if run else None, stop, settings)
        await runtime.drain()
    finally:
        signals.close()
    return outcome


async def _until_done(
    runtime: Runtime, main: asyncio.Future[Any] | None, stop: asyncio.Event, settings: Settings
) -> Outcome | None:
    """Wait for the run and every run it triggers; on SIGTERM stop them all, as a daemon
    stops at shutdown (each recorded `cancelled`)."""
    scheduler = runtime.scheduler
    stopping = asyncio.ensure_future(stop.wait())
    ended: Any = None
    try:
        if main is not None:
            await asyncio.wait({main, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if main.done():
                ended = main.result()
        while not stopping.done() and (alive := scheduler.running()):
            tasks = {run.task for run in alive if run.task is not None}
            await asyncio.wait({*tasks, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stopping.done():
            log.warning("stopping: signalling the runs of this process")
            await scheduler.shutdown(settings.shutdown_grace)
            if main is not None and ended is None:
                ended = await main
    finally:
        stopping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopping
    return ended.outcome if ended is not None else None


def _chain(job: Job, *, jobs_dir: Path, settings: Settings) -> list[Job]:
    """The job and every job its triggers fire, loaded from the jobs directory; a target that
    does not load is left out (the chain logs it and records nothing, as a daemon does)."""
    chain = [job]
    seen = {job.id}
    index = 0
    while index < len(chain):
        for target in chain[index].triggers:
            if target in seen:
                continue
            seen.add(target)
            found = _find_file(target, jobs_dir)
            if found is None:
                continue
            try:
                member, _ = load_job(found, jobs_dir=jobs_dir, settings=settings)
            except SpecError as exc:
                log.warning("job %s: triggered job %s does not load: %s", job.id, target, exc)
                continue
            chain.append(member)
        index += 1
    return chain


def _find_file(job_id: str, jobs_dir: Path) -> Path | None:
    for suffix in (".toml", ".yaml", ".yml"):
        candidate = jobs_dir / f"{job_id}{suffix}"
        if candidate.is_file() and job_id_for(candidate, jobs_dir) == job_id:
            return candidate
    return None
