"""`kron check-records`: the records read back against the promises kron makes about them.

Every line is whole; every started run has its terminal record; no slot is recorded twice;
and no slot of a job's schedule passes without a record, across a restart or a crash too.
The crash test and operators use the same check.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kron.engine import records
from kron.engine.slots import RANGE_NOTE
from kron.model.job import Job
from kron.model.run import Outcome, RunEnded, RunRecord, RunStarted, Trigger, read_line
from kron.model.schedule import ScheduleKind
from kron.model.times import format_time, parse_time

__all__ = ["Finding", "Report", "check_records"]

# The triggers whose runs stand for a slot of the schedule: each slot has one of them, once.
_SLOT_TRIGGERS = frozenset({Trigger.SCHEDULE, Trigger.CATCHUP, Trigger.REBOOT})
# Audit events after which a job's slots follow another definition, or none for a while.
_BREAKS = frozenset({"add", "change", "remove", "pause", "resume"})
_GAPS_LISTED = 20  # unrecorded slots listed per gap; the rest are counted


@dataclass(frozen=True, kw_only=True, slots=True)
class Finding:
    """One broken promise, with where to look."""

    kind: str  # torn, unfinished, twice, gap
    path: Path
    line: int | None
    job: str | None
    message: str
    run_ids: tuple[str, ...] = ()
    slot: datetime | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": str(self.path),
            "line": self.line,
            "job": self.job,
            "slot": format_time(self.slot) if self.slot else None,
            "run_ids": list(self.run_ids),
            "message": self.message,
        }


@dataclass(kw_only=True, slots=True)
class Report:
    files: int = 0
    runs: int = 0
    findings: list[Finding] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "runs": self.runs,
            "ok": not self.findings,
            "findings": [f.to_json() for f in self.findings],
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class _Line:
    number: int
    record: RunRecord


def check_records(
    root: Path,
    *,
    jobs: Mapping[str, Job],
    running: Collection[str] = (),
    since_check: datetime | None = None,
) -> Report:
    """Check every records file below `root`.

    Args:
        root: the records location (kron.toml's records_dir, else the jobs directory).
        jobs: the jobs as loaded now: their schedules say which slots were due.
        running: run ids a live daemon is running: started, rightly without an end yet.
        since_check: when the check began; a run started after it may still be running.
    """
    report = Report()
    audit = _audit_breaks(root / ".kron" / "audit.jsonl")
    for path in records.record_files(root):
        job_id = str(path.relative_to(root))[: -len(records.RECORD_SUFFIX)]
        report.files += 1
        lines = list(_read(path, job_id, report.findings))
        report.runs += len({line.record.run_id for line in lines})
        report.findings += _unfinished(path, lines, running, since_check)
        report.findings += _twice(path, lines)
        job = jobs.get(job_id)
        if job is not None:
            report.findings += _gaps(path, job, lines, audit.get(job_id, []))
    return report


def _read(path: Path, job_id: str, findings: list[Finding]) -> Iterator[_Line]:
    """The run records of a file; a line that is not whole JSON is a finding (never quoted:
    a torn line is a piece of some run's output)."""
    with path.open("rb") as f:
        data = f.read()
    raw_lines = data.split(b"\n")
    cut = len(raw_lines)  # the piece after the last newline: empty when the file ends whole
    for number, raw in enumerate(raw_lines, 1):
        if not raw.strip():
            continue
        try:
            decoded = json.loads(raw)
        except ValueError:
            decoded = None
        if number == cut or not isinstance(decoded, dict):
            what = "the last line is cut off (no newline)" if number == cut else "torn line"
            findings.append(
                Finding(
                    kind="torn",
                    path=path,
                    line=number,
                    job=job_id,
                    message=f"{what}: {len(raw)} bytes that are not one whole record",
                )
            )
            continue
        line = read_line(decoded)
        if isinstance(line, RunRecord):
            yield _Line(number=number, record=line)


def _unfinished(
    path: Path, lines: list[_Line], running: Collection[str], since_check: datetime | None
) -> Iterator[Finding]:
    ended = {line.record.run_id for line in lines if isinstance(line.record, RunEnded)}
    for line in lines:
        started = line.record
        if not isinstance(started, RunStarted) or started.run_id in ended:
            continue
        if started.run_id in running:
            continue
        if since_check is not None and started.started_at >= since_check:
            continue  # began while the check read: alive, as far as anyone can tell
        yield Finding(
            kind="unfinished",
            path=path,
            line=line.number,
            job=started.job,
            run_ids=(started.run_id,),
            slot=started.slot,
            message=f"run {started.run_id} (slot {format_time(started.slot)}) started at "
            f"{format_time(started.started_at)} and has no terminal record",
        )


def _twice(path: Path, lines: list[_Line]) -> Iterator[Finding]:
    """A slot (or, for a triggered run, an upstream run) with more than one run per attempt."""
    first: dict[tuple[object, ...], _Line] = {}
    said: set[tuple[tuple[object, ...], str]] = set()
    for line in lines:
        record = line.record
        if record.trigger in _SLOT_TRIGGERS:
            key: tuple[object, ...] = ("slot", record.slot, record.attempt)
        elif record.trigger is Trigger.DEPENDENCY and record.upstream:
            key = ("upstream", record.upstream, record.attempt)
        else:
            continue  # manual runs: each request is its own
        seen = first.setdefault(key, line)
        if seen.record.run_id == record.run_id or (key, record.run_id) in said:
            continue  # the same run's other line
        said.add((key, record.run_id))
        what = (
            f"slot {format_time(record.slot)}"
            if key[0] == "slot"
            else f"upstream run {record.upstream}"
        )
        yield Finding(
            kind="twice",
            path=path,
            line=line.number,
            job=record.job,
            run_ids=(seen.record.run_id, record.run_id),
            slot=record.slot,
            message=f"{what}, attempt {record.attempt}, recorded twice: run "
            f"{seen.record.run_id} (line {seen.number}) and run {record.run_id}",
        )


def _gaps(path: Path, job: Job, lines: list[_Line], breaks: list[datetime]) -> Iterator[Finding]:
    """Slots of the job's schedule with no record, between two records made under the job's
    present definition with no pause or change between them (the slots a restart must not
    lose: each is run, or recorded missed or skipped)."""
    if job.schedule.kind not in (ScheduleKind.CRON, ScheduleKind.EVERY) or not job.enabled:
        return
    slots: dict[datetime, _Line] = {}
    for line in lines:
        record = line.record
        if record.trigger in _SLOT_TRIGGERS:
            slots.setdefault(record.slot, line)
    ordered = sorted(slots.items())
    for (a, line_a), (b, line_b) in itertools.pairwise(ordered):
        if {line_a.record.config_sha, line_b.record.config_sha} != {job.config_sha}:
            continue  # made under another definition, whose slots may differ
        if _summarises(line_a.record) or any(a < t < b for t in breaks):
            continue
        lost = [s for s in _slots_between(job, a, b) if s not in slots]
        if not lost:
            continue
        listed = ", ".join(format_time(s) for s in lost[:_GAPS_LISTED])
        more = f" and {len(lost) - _GAPS_LISTED} more" if len(lost) > _GAPS_LISTED else ""
        yield Finding(
            kind="gap",
            path=path,
            line=line_b.number,
            job=job.id,
            slot=lost[0],
            run_ids=(line_a.record.run_id, line_b.record.run_id),
            message=f"{len(lost)} slot{'s' if len(lost) != 1 else ''} between "
            f"{format_time(a)} and {format_time(b)} have no record: {listed}{more}",
        )


def _slots_between(job: Job, a: datetime, b: datetime) -> Iterable[datetime]:
    for slot in job.schedule.slots_between(a, b):
        if slot < b:
            yield slot


def _summarises(record: RunRecord) -> bool:
    """A `missed` record standing for every slot up to the next one (a very long outage)."""
    return (
        isinstance(record, RunEnded)
        and record.outcome is Outcome.MISSED
        and RANGE_NOTE in (record.error or "")
    )


def _audit_breaks(path: Path) -> dict[str, list[datetime]]:
    """When each job was added, changed, removed, paused or resumed, from the audit log."""
    found: dict[str, list[datetime]] = defaultdict(list)
    for part in (path.with_name(path.name + ".1"), path):
        for line in records.read(part):
            if line.get("event") in _BREAKS and isinstance(line.get("job"), str):
                try:
                    found[line["job"]].append(parse_time(line["time"]))
                except (KeyError, TypeError, ValueError):
                    continue
    return found
