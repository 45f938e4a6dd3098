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

from kron.config.catalog import LoadResult, load_dir
from kron.model.errors import Findings, Problem
from kron.model.job import Job
from kron.model.schedule import Schedule
from kron.model.units import plural


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
        cls, job: Job, now: datetime, nexts: dict[Schedule, datetime | None] | None = None
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
class Report(Findings):
    """What validation found across every requested path."""

    files: list[Path] = field(default_factory=list)
    jobs: list[JobSummary] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _jobs_dir_for(path: Path, default_dir: Path) -> Path | None:
    """The jobs directory `path` lies in: --jobs-dir when it holds it, else None."""
    try:
        path.resolve().relative_to(default_dir.resolve())
    except (ValueError, OSError):
        return None
    return default_dir


def validate(paths: Sequence[Path], *, jobs_dir: Path, now: datetime | None = None) -> Report:
    """Validate files and folders with the daemon's loader (the same Catalog, workers and checks).

    A path inside the jobs directory is judged exactly as the daemon judges it: the whole
    directory is loaded (kron.toml, ids, duplicates, triggers) and the problems of the files
    under that path are reported. A folder outside it is a jobs directory of its own; a file
    outside it is judged in its own folder.
    """
    report = Report()
    now = now or datetime.now(UTC)
    if not paths:
        paths = [jobs_dir]
    wanted_by_dir: dict[Path, set[Path] | None] = {}
    for path in paths:
        home = _jobs_dir_for(path, jobs_dir)
        if home is None:
            home = path if path.is_dir() else path.parent
        if path.is_dir() and os.path.samefile(path, home):
            wanted_by_dir[home] = None  # the whole directory
            continue
        chosen = wanted_by_dir.setdefault(home, set())
        if chosen is not None:
            chosen.add(path)
    nexts: dict[Schedule, datetime | None] = {}
    for home, wanted in wanted_by_dir.items():
        result = load_dir(home, now=now)
        if wanted is not None:
            result = _only(result, wanted)
        report.files.extend(result.files)
        report.jobs.extend(JobSummary.of(result.jobs[k], now, nexts) for k in sorted(result.jobs))
        report.problems.extend(result.problems)
    return report


def _only(result: LoadResult, wanted: set[Path]) -> LoadResult:
    """What concerns `wanted` (files, and folders with the files below them) in a whole
    directory's result; kron.toml concerns every file."""
    missing = [p for p in wanted if not p.exists() and not p.is_symlink()]
    names = {os.path.normpath(os.path.abspath(p)) for p in wanted}
    folders = tuple(os.path.normpath(os.path.abspath(p)) + os.sep for p in wanted if p.is_dir())

    def concerned(path: str | Path) -> bool:
        name = os.path.normpath(os.path.abspath(path))
        return name in names or name.startswith(folders)

    settings = result.settings.path
    result.problems = [
        p
        for p in result.problems
        if concerned(p.path) or (settings is not None and p.path == str(settings))
    ]
    result.problems.extend(Problem(path=str(p), message="no such file") for p in missing)
    result.jobs = {k: j for k, j in result.jobs.items() if concerned(j.path)}
    result.files = [f for f in result.files if concerned(f)]
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
        f"{plural(len(report.files), 'file')}: {len(report.jobs)} valid, {invalid} with errors, "
        f"{plural(len(report.warnings), 'warning')}",
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
        level = "error" if p.is_error else "warning"
        props = [f"file={_escape_github(p.path, prop=True)}"]
        if p.line is not None:
            props.append(f"line={p.line}")
        if p.column is not None:
            props.append(f"col={p.column}")
        props.append("title=kron validate")
        message = f"{p.field}: {p.message}" if p.field else p.message
        print(f"::{level} {','.join(props)}::{_escape_github(message, prop=False)}", file=out)
    print(
        f"{plural(len(report.files), 'file')}, {plural(len(report.errors), 'error')}, "
        f"{plural(len(report.warnings), 'warning')}",
        file=out,
    )


def print_gitlab(report: Report, out: TextIO) -> None:
    """A GitLab code quality report (the Code Climate subset GitLab reads): merge requests
    show each problem on its line."""
    import hashlib

    issues = []
    for p in report.problems:
        message = f"{p.field}: {p.message}" if p.field else p.message
        seed = f"{p.path}\0{p.pointer}\0{p.message}".encode()
        issues.append(
            {
                "description": message,
                "check_name": "kron validate",
                "fingerprint": hashlib.sha256(seed).hexdigest(),
                "severity": "major" if p.is_error else "minor",
                "location": {"path": p.path, "lines": {"begin": p.line or 1}},
            }
        )
    json.dump(issues, out, indent=2, ensure_ascii=False)
    out.write("\n")


def now_utc() -> datetime:
    return datetime.now(UTC)


def _local(job: JobSummary) -> str | None:
    """The next fire in the job's own zone, ISO 8601 with its offset."""
    if job.next_fire is None:
        return None
    return job.next_fire.astimezone(ZoneInfo(job.timezone)).isoformat()
