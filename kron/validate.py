"""`kron validate`: load files with the daemon's own loader and report every problem."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from kron import spec
from kron.catalog import LoadResult, load_dir
from kron.errors import Problem


@dataclass(kw_only=True, slots=True)
class Report:
    """What validation found across every requested path."""

    files: list[Path] = field(default_factory=list)
    jobs: list[spec.Job] = field(default_factory=list)
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


def validate(paths: Sequence[Path], *, jobs_dir: Path) -> Report:
    """Validate files and folders; a folder is a jobs directory, a file is checked in its own."""
    report = Report()
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
        result = load_dir(home) if wanted is None else _load_files(home, wanted)
        report.files.extend(result.files)
        report.jobs.extend(sorted(result.jobs.values(), key=lambda j: j.id))
        report.problems.extend(result.problems)
    return report


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


def _next_fire(job: spec.Job, now: datetime) -> datetime | None:
    return job.schedule.next_fire(now)


def print_text(report: Report, out: TextIO, *, verbose: bool, now: datetime) -> None:
    for problem in report.problems:
        print(problem, file=out)
    if verbose:
        for job in report.jobs:
            nxt = _next_fire(job, now)
            when = nxt.astimezone(job.timezone).isoformat() if nxt else "never by schedule"
            zone = job.timezone.key + ("" if job.timezone_explicit else " (default)")
            print(f"ok {job.id}: {job.schedule.expr!r} in {zone}, next {when}", file=out)
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
        nxt = _next_fire(job, now)
        jobs.append(
            {
                "id": job.id,
                "path": str(job.path),
                "schedule": job.schedule.expr,
                "timezone": job.timezone.key,
                "timezone_explicit": job.timezone_explicit,
                "next": nxt.astimezone(job.timezone).isoformat() if nxt else None,
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
