"""`kron validate`: load files with the daemon's own loader and report every problem."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from kron.config.catalog import LoadResult, in_parallel, load_dir, worker_count
from kron.config.loader import (
    check_graph,
    compile_job_schema,
    discover,
    job_id_for,
    load_job,
    load_settings,
)
from kron.model import job as spec
from kron.model.errors import Problem, SpecError
from kron.model.trust import Trust


@dataclass(frozen=True, kw_only=True, slots=True)
class JobSummary:
    """What the report says of a valid job (small, so workers can send it back cheaply)."""

    id: str
    path: Path
    schedule: str
    timezone: str
    timezone_explicit: bool
    triggers: tuple[str, ...]
    next_fire: datetime | None

    @classmethod
    def of(
        cls, job: spec.Job, now: datetime, nexts: dict[Any, datetime | None] | None = None
    ) -> JobSummary:
        """Summarise a job; `nexts` shares next-fire times between jobs on one schedule."""
        nexts = {} if nexts is None else nexts
        if job.schedule not in nexts:
            nexts[job.schedule] = job.schedule.next_fire(now)
        return cls(
            id=job.id,
            path=job.path,
            schedule=job.schedule.expr,
            timezone=job.timezone.key,
            timezone_explicit=job.timezone_explicit,
            triggers=job.triggers,
            next_fire=nexts[job.schedule],
        )


@dataclass(kw_only=True, slots=True)
class Report:
    """What validation found across every requested path."""

    files: list[Path] = field(default_factory=list)
    jobs: list[JobSummary] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity != "error"]


def _jobs_dir_for(path: Path, default_dir: Path) -> Path:
    """The jobs directory a file belongs to: --jobs-dir when it holds the file, else its folder."""
    try:
        path.resolve().relative_to(default_dir.resolve())
    except ValueError:
        return path.parent
    return default_dir


def validate(paths: Sequence[Path], *, jobs_dir: Path, now: datetime | None = None) -> Report:
    """Validate files and folders; a folder is a jobs directory, a file is checked in its own."""
    report = Report()
    now = now or datetime.now(UTC)
    if not paths:
        paths = [jobs_dir]
    wanted_by_dir: dict[Path, set[Path] | None] = {}
    for path in paths:
        if path.is_dir():
            wanted_by_dir[path] = None
        else:
            home = _jobs_dir_for(path, jobs_dir)
            chosen = wanted_by_dir.setdefault(home, set())
            if chosen is not None:
                chosen.add(path)
    for home, wanted in wanted_by_dir.items():
        if wanted is None:
            _check_folder(home, report, now)
            continue
        result = _load_files(home, wanted)
        report.files.extend(result.files)
        report.jobs.extend(
            JobSummary.of(j, now) for j in sorted(result.jobs.values(), key=lambda j: j.id)
        )
        report.problems.extend(result.problems)
    return report


# What a valid job looks like in the report, apart from its id and path: 10,000 jobs usually
# share a few dozen, so workers send each once and a number per file.
_Shape = tuple[str, str, bool, tuple[str, ...], datetime | None]


@dataclass(kw_only=True, slots=True)
class _Checked:
    """One chunk's verdicts, position by position (small, so a worker sends it back cheaply)."""

    ids: list[str] = field(default_factory=list)
    shape_of: list[int] = field(default_factory=list)  # index into shapes; -1 when invalid
    shapes: list[_Shape] = field(default_factory=list)
    problems: dict[int, list[Problem]] = field(default_factory=dict)  # by position, if any


def _check_files(
    paths: list[Path], jobs_dir: Path, settings: spec.Settings, now: datetime, trust: Trust
) -> _Checked:
    """Load each file as the daemon would; keep only what the report needs."""
    checked = _Checked()
    known: dict[_Shape, int] = {}
    nexts: dict[Any, datetime | None] = {}
    folders: dict[str, list[str]] = {}
    for position, path in enumerate(paths):
        job_id = job_id_for(path, jobs_dir)
        checked.ids.append(job_id)
        try:
            job, warnings = load_job(
                path,
                jobs_dir=jobs_dir,
                settings=settings,
                job_id=job_id,
                folders_seen=folders,
                trust=trust,
            )
        except SpecError as exc:
            checked.shape_of.append(-1)
            checked.problems[position] = exc.problems
            continue
        if warnings:
            checked.problems[position] = warnings
        schedule = job.schedule
        if schedule not in nexts:
            nexts[schedule] = schedule.next_fire(now)
        shape = (
            schedule.expr,
            job.timezone.key,
            job.timezone_explicit,
            job.triggers,
            nexts[schedule],
        )
        number = known.get(shape)
        if number is None:
            number = known[shape] = len(checked.shapes)
            checked.shapes.append(shape)
        checked.shape_of.append(number)
    return checked


def _check_folder(home: Path, report: Report, now: datetime) -> None:
    """A whole jobs directory, on every core when it is large (the report travels, not jobs)."""
    settings, problems = load_settings(home)
    files, found = discover(home)
    report.problems.extend(problems)
    report.problems.extend(found)
    trust = Trust.current()
    workers = worker_count(len(files))
    if workers > 1:
        compile_job_schema()
    chunks = [files[i::workers] for i in range(workers)]
    parts = in_parallel(lambda chunk: _check_files(chunk, home, settings, now, trust), chunks)
    # Chunk i holds files i, i + workers, ...: put the verdicts back in file order.
    ids: list[str] = [""] * len(files)
    summaries: list[JobSummary | None] = [None] * len(files)
    problems_of: dict[int, list[Problem]] = {}
    for first, part in enumerate(parts):
        ids[first::workers] = part.ids
        for position, (job_id, number) in enumerate(zip(part.ids, part.shape_of, strict=True)):
            index = first + position * workers
            if number >= 0:
                schedule, zone, explicit, triggers, next_fire = part.shapes[number]
                summaries[index] = JobSummary(
                    id=job_id,
                    path=files[index],
                    schedule=schedule,
                    timezone=zone,
                    timezone_explicit=explicit,
                    triggers=triggers,
                    next_fire=next_fire,
                )
        for position, found_here in part.problems.items():
            problems_of[first + position * workers] = found_here
    by_id: dict[str, list[int]] = {}
    for index, job_id in enumerate(ids):
        by_id.setdefault(job_id, []).append(index)
    valid: dict[str, JobSummary] = {}
    for index, job_id in enumerate(ids):
        report.problems.extend(problems_of.get(index, ()))
        sharing = by_id[job_id]
        if len(sharing) > 1:
            also = ", ".join(str(files[i]) for i in sharing if i != index)
            path = files[index]
            report.problems.append(
                Problem(path=str(path), message=f"job id {job_id!r} is also defined by {also}")
            )
        elif (summary := summaries[index]) is not None:
            valid[job_id] = summary
    files_by_id = {job_id: files[indexes[0]] for job_id, indexes in by_id.items()}
    report.problems.extend(check_graph(valid, files_by_id=files_by_id))
    report.files.extend(files)
    report.jobs.extend(valid[k] for k in sorted(valid))


def _load_files(home: Path, wanted: set[Path]) -> LoadResult:
    """Load the whole folder for context (duplicates, triggers); keep what concerns `wanted`."""
    missing = [p for p in wanted if not p.exists() and not p.is_symlink()]
    result = load_dir(home)
    names = {os.path.normpath(p) for p in wanted}
    keep_settings = result.settings.path is not None
    result.problems = [
        p
        for p in result.problems
        if os.path.normpath(p.path) in names
        or (keep_settings and p.path == str(result.settings.path))
    ]
    result.problems.extend(Problem(path=str(p), message="no such file") for p in missing)
    result.jobs = {k: j for k, j in result.jobs.items() if os.path.normpath(j.path) in names}
    result.files = [f for f in result.files if os.path.normpath(f) in names]
    return result


def print_text(report: Report, out: TextIO, *, verbose: bool, now: datetime) -> None:
    for problem in report.problems:
        print(problem, file=out)
    if verbose:
        for job in report.jobs:
            nxt = _local(job)
            when = nxt or "never by schedule"
            zone = job.timezone + ("" if job.timezone_explicit else " (default)")
            print(f"ok {job.id}: {job.schedule!r} in {zone}, next {when}", file=out)
    invalid = len({p.path for p in report.errors})
    print(
        f"{len(report.files)} files: {len(report.jobs)} valid, {invalid} with errors, "
        f"{len(report.warnings)} warnings",
        file=out,
    )


def print_json(report: Report, out: TextIO, *, now: datetime) -> None:
    def problem(p: Problem) -> dict[str, Any]:
        return {
            "path": p.path,
            "line": p.line,
            "column": p.column,
            "field": p.field,
            "pointer": p.pointer,
            "severity": p.severity,
            "message": p.message,
        }

    jobs = []
    for job in report.jobs:
        jobs.append(
            {
                "id": job.id,
                "path": str(job.path),
                "schedule": job.schedule,
                "timezone": job.timezone,
                "timezone_explicit": job.timezone_explicit,
                "next": _local(job),
            }
        )
    body = {
        "files": len(report.files),
        "valid": len(jobs),
        "errors": [problem(p) for p in report.errors],
        "warnings": [problem(p) for p in report.warnings],
        "jobs": jobs,
    }
    json.dump(body, out, indent=2, ensure_ascii=False)
    out.write("\n")


def _escape_github(text: str, *, prop: bool) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def print_github(report: Report, out: TextIO) -> None:
    """GitHub Actions workflow commands: annotations on the pull request's files."""
    for p in report.problems:
        level = "error" if p.severity == "error" else "warning"
        props = [f"file={_escape_github(p.path, prop=True)}"]
        if p.line is not None:
            props.append(f"line={p.line}")
        if p.column is not None:
            props.append(f"col={p.column}")
        props.append("title=kron validate")
        message = f"{p.field}: {p.message}" if p.field else p.message
        print(f"::{level} {','.join(props)}::{_escape_github(message, prop=False)}", file=out)
    print(
        f"{len(report.files)} files, {len(report.errors)} errors, {len(report.warnings)} warnings",
        file=out,
    )


def now_utc() -> datetime:
    return datetime.now(UTC)


def _local(job: JobSummary) -> str | None:
    """The next fire in the job's own zone, ISO 8601 with its offset."""
    if job.next_fire is None:
        return None
    return job.next_fire.astimezone(ZoneInfo(job.timezone)).isoformat()
