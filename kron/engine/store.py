"""The record store: where run records go and where they are read back.

`RecordStore` is the seam: the scheduler, `kron run`, the control API, history and the status
page use only it. `FileRecordStore` keeps each job's records in `<job>.runs.jsonl` beside the
job file, or mirrored under `records_dir` (kron.engine.records does the file work); a cluster
keeps them in its database as well.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from kron.engine import records
from kron.model.clock import Clock
from kron.model.job import Retention
from kron.model.run import (
    DeliveryNote,
    Outcome,
    ProcessNote,
    RunEnded,
    RunRecord,
    RunStarted,
    read_line,
)

__all__ = ["NO_STANDING", "FileRecordStore", "Line", "RecordStore", "Standing", "last_outcomes"]

log = logging.getLogger("kron.records")

Line = RunRecord | DeliveryNote | ProcessNote


@dataclass(frozen=True, kw_only=True, slots=True)
class Standing:
    """What a job's records say when the daemon (re)starts."""

    last_slot: datetime | None = None  # the newest slot that started or ended
    unfinished: list[RunStarted] = field(default_factory=list)  # started, never ended
    last: RunEnded | None = None  # the newest terminal record
    last_success: RunEnded | None = None
    recent: list[Line] = field(default_factory=list)  # the tail of its records, oldest first

    def process_of(self, run_id: str) -> ProcessNote | None:
        """Where a run's processes were, if it got as far as starting them."""
        for line in reversed(self.recent):
            if isinstance(line, ProcessNote) and line.run_id == run_id:
                return line
        return None


NO_STANDING = Standing()  # a job without records; shared, as nothing changes a Standing


class RecordStore(Protocol):
    """Appends run records and reads them back, job by job or across jobs."""

    failures: WriteFailures  # writes that fail now (a full disk), for status and metrics

    def append(self, line: Line) -> None:
        """Write one record; a failure is logged and counted, never raised."""
        ...

    def set_retention(self, job_id: str, retention: Retention | None) -> None:
        """Keep at most this of the job's records (None: the job is gone; keep them all)."""
        ...

    def prune(self, job_id: str, now: datetime) -> int:
        """Apply the job's retention now; return how many lines went."""
        ...

    def records(self, job_id: str) -> Iterator[Line]:
        """Every record of the job, oldest first."""
        ...

    def recent(self, job_id: str) -> list[Line]:
        """The job's newest records (the tail of its history), oldest first."""
        ...

    def last_terminal(self, job_id: str, outcome: Outcome | None = None) -> RunEnded | None:
        """The job's newest terminal record (with `outcome`, if given)."""
        ...

    def standing(self, job_id: str) -> Standing:
        """Where the job stood when the last daemon stopped."""
        ...

    def runs(
        self,
        *,
        job: str | None = None,
        outcome: Outcome | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        """Runs matching the filters, newest first (at most `limit`): each run's final record,
        or its started record while it runs. A late record (cluster mode) is never a run's
        final record."""
        ...

    def find(self, run_id: str) -> list[Line]:
        """Every line of the run whose id starts with `run_id`, in order; one line each of
        several runs when the prefix matches more than one."""
        ...


@dataclass(kw_only=True, slots=True)
class Failing:
    """A records file that cannot be written now."""

    error: str
    since: float  # time.time() of the first failure in a row
    count: int = 0  # failed writes in a row


@dataclass(kw_only=True, slots=True)
class _Said:
    """What the log was last told about a file; it outlives a streak of failures, because a
    nearly full disk takes short lines and refuses long ones, and must not flap in the log."""

    at: float  # time.monotonic() of the last "cannot write" line
    unsaid: int = 0  # failed writes since it
    streak_said: bool = False  # whether the current streak was logged


class WriteFailures:
    """Failed record writes, said at most once a minute per file with a count, not once per
    write (a full disk fails every write). Runs go on; `kron status` and the metrics say so."""

    LOG_EVERY_S = 60.0

    def __init__(self) -> None:
        self.failing: dict[Path, Failing] = {}
        self.total = 0  # failed writes since the daemon started
        self._said: dict[Path, _Said] = {}

    def failed(self, path: Path, exc: OSError) -> None:
        self.total += 1
        now = time.monotonic()
        error = str(exc.strerror or exc)
        entry = self.failing.get(path)
        if entry is None:
            entry = self.failing[path] = Failing(error=error, since=time.time())
        entry.count += 1
        entry.error = error
        said = self._said.get(path)
        if said is None:
            said = self._said[path] = _Said(at=now - self.LOG_EVERY_S)
        said.unsaid += 1
        if now - said.at >= self.LOG_EVERY_S:
            log.error(
                "cannot write records to %s: %s (%d failed writes%s; runs go on)",
                path,
                error,
                said.unsaid,
                "" if said.unsaid == entry.count else f", {entry.count} in a row",
            )
            said.at, said.unsaid, said.streak_said = now, 0, True

    def succeeded(self, path: Path, *, terminal: bool) -> None:
        """A write to `path` worked. Only a run's terminal record, the longest line of a run,
        ends a streak: on a nearly full disk the short lines still fit."""
        if not self.failing or not terminal:
            return
        entry = self.failing.pop(path, None)
        if entry is None:
            return
        said = self._said[path]
        if said.streak_said:
            log.warning(
                "records are written to %s again, after %d failed writes", path, entry.count
            )
            said.streak_said = False


class FileRecordStore:
    """Records as NDJSON files: one per job, beside its file or under `records_dir`."""

    def __init__(self, *, jobs_dir: Path, records_dir: Path | None, clock: Clock) -> None:
        self.jobs_dir = jobs_dir
        self.records_dir = records_dir
        self._clock = clock
        self._retention: dict[str, Retention] = {}
        self._since_prune: dict[str, int] = {}
        self._pruning: set[str] = set()
        self._tasks: set[asyncio.Future[None]] = set()
        self.failures = WriteFailures()

    @property
    def root(self) -> Path:
        """Where the records files are: `records_dir`, else the jobs directory."""
        return self.records_dir or self.jobs_dir

    def path(self, job_id: str) -> Path:
        return records.records_path(job_id, jobs_dir=self.jobs_dir, records_dir=self.records_dir)

    def _path_text(self, job_id: str) -> str:
        """`path(job_id)` as text, for a look (ids of loaded jobs are relative paths already)."""
        return f"{self.root}{os.sep}{job_id}{records.RECORD_SUFFIX}"

    # -- writing ----------------------------------------------------------------------------

    def append(self, line: Line) -> None:
        self.write(line.job, line.to_json(), terminal=isinstance(line, RunEnded))

    def write(self, job_id: str, data: dict[str, Any], *, terminal: bool) -> None:
        """Append one record, given as its line's fields (`append` of a typed record)."""
        path = self.path(job_id)
        try:
            records.append(path, data)
        except OSError as exc:
            self.failures.failed(path, exc)
            return
        self.failures.succeeded(path, terminal=terminal)
        if terminal:
            self._count(job_id)

    def set_retention(self, job_id: str, retention: Retention | None) -> None:
        if retention is None:
            self._retention.pop(job_id, None)
        else:
            self._retention[job_id] = retention

    def prune(self, job_id: str, now: datetime) -> int:
        retention = self._retention.get(job_id, Retention())
        return records.prune(
            self.path(job_id), keep=retention.keep, max_age=retention.max_age, now=now
        )

    def _count(self, job_id: str) -> None:
        """Prune now and then: every tenth of `keep` runs, at least every 10."""
        count = self._since_prune.get(job_id, 0) + 1
        self._since_prune[job_id] = count
        retention = self._retention.get(job_id, Retention())
        if count >= max(10, retention.keep // 10) and job_id not in self._pruning:
            self._since_prune[job_id] = 0
            self._prune_soon(job_id)

    def _prune_soon(self, job_id: str) -> None:
        """Prune in a worker thread: a large file never blocks the loop or a running job."""
        self._pruning.add(job_id)
        now = self._clock.now()

        async def prune() -> None:
            try:
                await asyncio.to_thread(self.prune, job_id, now)
            except OSError as exc:
                log.warning("job %s: pruning %s failed: %s", job_id, self.path(job_id), exc)
            finally:
                self._pruning.discard(job_id)

        task = asyncio.ensure_future(prune())
        self._tasks.add(task)  # keep a reference: the loop holds tasks only weakly
        task.add_done_callback(self._tasks.discard)

    # -- reading ----------------------------------------------------------------------------

    def has_job(self, job_id: str) -> bool:
        """Whether the job has records here."""
        return self.path(job_id).exists()

    def job_ids(self) -> list[str]:
        """The jobs that have records here (a removed job's records stay)."""
        root = str(self.root).rstrip("/") + "/"
        return sorted(
            str(path)[len(root) : -len(records.RECORD_SUFFIX)]
            for path in records.record_files(self.root)
        )

    def records(self, job_id: str) -> Iterator[Line]:
        return _typed(records.read(self.path(job_id)))

    def recent(self, job_id: str) -> list[Line]:
        return list(_typed(records.read_tail(self.path(job_id))))

    def last_terminal(self, job_id: str, outcome: Outcome | None = None) -> RunEnded | None:
        path = self.path(job_id)
        found = records.last_terminal(path, outcome=outcome)
        if found is None and path.exists() and path.stat().st_size > records.TAIL_BYTES:
            # The newest terminal line is longer than the tail window (large output).
            found = records.last_terminal(path, max_bytes=path.stat().st_size, outcome=outcome)
        line = read_line(found) if found is not None else None
        return line if isinstance(line, RunEnded) else None

    def standing(self, job_id: str) -> Standing:
        if not os.path.exists(self._path_text(job_id)):
            return NO_STANDING  # most jobs at a start: a stat, no path object
        path = self.path(job_id)
        return Standing(
            last_slot=records.last_slot(path),
            unfinished=[
                r for r in _typed(records.unfinished_runs(path)) if isinstance(r, RunStarted)
            ],
            last=self.last_terminal(job_id),
            last_success=self.last_terminal(job_id, Outcome.SUCCEEDED),
            recent=self.recent(job_id),
        )

    def runs(
        self,
        *,
        job: str | None = None,
        outcome: Outcome | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        paths = [self.path(job)] if job is not None else list(records.record_files(self.root))
        found: dict[str, RunRecord] = {}
        for path in paths:
            # Newest first: a run's terminal line comes before its started line, and lines are
            # appended in time order, so with `since` the older part of a file is never read.
            for line in _typed(records.read_reversed(path)):
                if not isinstance(line, RunRecord):
                    continue  # a delivery note
                if since is not None and _when(line) < since:
                    break
                if not line.late:
                    found.setdefault(line.run_id, line)
        selected = [r for r in found.values() if outcome is None or r.outcome is outcome]
        selected.sort(key=_when, reverse=True)
        return selected[:limit] if limit is not None else selected

    def find(self, run_id: str) -> list[Line]:
        matches: dict[str, list[Line]] = {}
        for path in records.record_files(self.root):
            for line in _typed(records.read(path)):
                if line.run_id.startswith(run_id):
                    matches.setdefault(line.run_id, []).append(line)
        if len(matches) == 1:
            return next(iter(matches.values()))
        return [lines[-1] for lines in matches.values()]


def _typed(lines: Iterable[dict[str, object]]) -> Iterator[Line]:
    for raw in lines:
        line = read_line(raw)
        if line is not None:
            yield line


def _when(record: RunRecord) -> datetime:
    """When a run last did something: its end, its start, or its slot."""
    return record.ended_at or record.started_at or record.slot


def last_outcomes(records_root: Path, job_ids: Iterable[str]) -> dict[str, str]:
    """Each job's newest terminal outcome, from the records files under `records_root`; jobs
    that have none are left out (`kron tree`)."""
    found = {}
    for job_id in job_ids:
        path = records.records_path(job_id, jobs_dir=records_root, records_dir=None)
        record = records.last_terminal(path)
        if record is None and path.exists() and path.stat().st_size > records.TAIL_BYTES:
            # The newest terminal line is longer than the tail window (large output).
            record = records.last_terminal(path, max_bytes=path.stat().st_size)
        if record is not None:
            found[job_id] = str(record["outcome"])
    return found
