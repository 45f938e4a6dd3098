"""`kron run` without a daemon: one run of one job in this process, recorded like any other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kron.config.loader import load_job
from kron.config.settings import load_settings
from kron.model.clock import RealClock
from kron.service.runtime import Runtime

__all__ = ["run_once"]


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
