"""`kron run` without a daemon: one run of one job in this process, recorded like any other."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any

from kron.actions.agent import AgentBudget
from kron.actions.dispatch import execute
from kron.config.loader import load_job, load_settings
from kron.engine import records
from kron.engine.scheduler import Scheduler
from kron.model.clock import RealClock
from kron.model.job import Trigger
from kron.model.run import to_record
from kron.notify.deliveries import Deliveries
from kron.notify.healthcheck import Healthchecks
from kron.service.daemon import DELIVERY_DRAIN_S, RecordSink


async def run_once(path: Path, *, jobs_dir: Path) -> dict[str, Any]:
    """Fire the job in `path` now (trigger manual), wait for its end, return its final record."""
    settings, _ = load_settings(jobs_dir)
    job, _ = load_job(path, jobs_dir=jobs_dir, settings=settings)
    clock = RealClock()
    now = clock.now()
    sink = RecordSink(jobs_dir=jobs_dir, records_dir=settings.records_dir, clock=clock)
    budget = AgentBudget.from_settings(settings, records_root=settings.records_dir or jobs_dir)
    scheduler = Scheduler(
        clock=clock,
        policy=settings.policy,
        execute_action=functools.partial(execute, budget=budget),
    )
    scheduler.subscribe(sink)
    # Deliveries and pings as the daemon sends them; triggers need the daemon's whole job set.
    deliveries = Deliveries(records_path=sink.path, clock=clock)
    deliveries.attach(scheduler)
    healthchecks = Healthchecks()
    healthchecks.attach(scheduler)
    scheduler.add(job, cursor=now, paused=True, now=now)
    run = scheduler.fire(job.id, slot=now.replace(microsecond=0), trigger=Trigger.MANUAL)
    if run is None or run.task is None:
        last = records.read_tail(sink.path(job.id))
        return last[-1] if last else {"job": job.id, "outcome": "skipped"}
    ended = await run.task
    await asyncio.gather(deliveries.drain(DELIVERY_DRAIN_S), healthchecks.drain(DELIVERY_DRAIN_S))
    if ended is None:  # pragma: no cover - a run always ends with a record
        return {"job": job.id, "outcome": "failed"}
    return to_record(ended)
