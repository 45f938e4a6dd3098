"""Drive a Scheduler or Daemon in a test: collect its events, wait for them with deadlines."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from kron.config.loader import load_job
from kron.config.settings import load_settings
from kron.model.job import Job
from kron.model.run import Event, RunEnded, RunStarted

DEADLINE_S = 20.0


class Events:
    """Every event a scheduler emits, and a way to await one."""

    def __init__(self) -> None:
        self.all: list[Event] = []
        self._changed = asyncio.Event()

    def __call__(self, event: Event) -> None:
        self.all.append(event)
        self._changed.set()

    def ended(self, job: str | None = None) -> list[RunEnded]:
        return [e for e in self.all if isinstance(e, RunEnded) and (job is None or e.job == job)]

    def started(self, job: str | None = None) -> list[RunStarted]:
        return [e for e in self.all if isinstance(e, RunStarted) and (job is None or e.job == job)]

    def outcomes(self, job: str | None = None) -> list[str]:
        return [e.outcome.value for e in self.ended(job)]

    async def until(self, predicate: Callable[[Events], bool], timeout: float = DEADLINE_S) -> None:
        async def wait() -> None:
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)


def write_job(jobs_dir: Path, name: str, text: str) -> Path:
    path = jobs_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def make_job(jobs_dir: Path, name: str, text: str) -> Job:
    """Write a job file and load it with the real loader."""
    path = write_job(jobs_dir, name, text)
    settings, problems = load_settings(jobs_dir)
    assert not problems, problems
    job, _ = load_job(path, jobs_dir=jobs_dir, settings=settings)
    return job


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a records file, process notes included."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_records(path: Path) -> list[dict[str, Any]]:
    """The run records and delivery notes of a records file: the lines a reader of runs sees
    (the process notes a run writes when its processes start are for crash recovery)."""
    return [line for line in read_lines(path) if "process" not in line]


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


async def until_true(predicate: Callable[[], bool], timeout: float = DEADLINE_S) -> None:
    """Wait for a condition outside the loop's events (a file, a process), with a deadline."""

    async def wait() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), timeout)
