"""The commands on job files: validate, next, schema, fmt, convert, tree.

Each imports what it needs when it runs, so that `kron validate` loads neither the daemon nor
the libraries of the actions.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import TextIO
from zoneinfo import ZoneInfo

from kron.cli.colour import colour_enabled, outcome_style, paint
from kron.cli.common import (
    EXIT_BAD,
    EXIT_OK,
    find_job_file,
    is_within,
    records_root,
    unknown_job,
)
from kron.model.errors import UsageError, ValueProblem

__all__ = ["convert", "fmt", "next_fires", "schema", "tree", "validate"]


def validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.config import validate as v

    for path in args.paths:
        if not path.exists() and not path.is_symlink():
            raise UsageError(f"kron validate: no such file or folder: {path}")
    if not args.paths and not args.jobs_dir.is_dir():
        raise UsageError(
            f"kron validate: no jobs directory at {args.jobs_dir} (give --jobs-dir or paths)"
        )
    report = v.validate(args.paths, jobs_dir=args.jobs_dir)
    now = datetime.now(UTC)
    if args.format == "json":
        v.print_json(report, out, now=now)
    elif args.format == "github":
        v.print_github(report, out)
    elif args.format == "gitlab":
        v.print_gitlab(report, out)
    else:
        v.print_text(report, out, verbose=not args.quiet, now=now)
    failed = report.errors or (args.strict and report.warnings)
    return EXIT_BAD if failed else EXIT_OK


def _parse_from(text: str | None, zone: ZoneInfo) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--from: {text!r} is not an ISO 8601 time (e.g. 2026-03-29T01:00)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=zone)


def next_fires(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.config.build import zone_named
    from kron.config.loader import load_job
    from kron.config.settings import load_settings
    from kron.model.schedule import parse_schedule

    if args.n < 1:
        raise UsageError("kron next: -n must be at least 1")
    settings, _ = load_settings(args.jobs_dir) if args.jobs_dir.is_dir() else (None, [])
    if args.expr:
        try:
            zone = (
                zone_named(args.tz)
                if args.tz
                else (settings.timezone if settings else ZoneInfo("UTC"))
            )
            schedule = parse_schedule(args.expr, zone)
        except ValueProblem as exc:
            raise UsageError(f"kron next: {exc}") from None
        label = args.expr
    else:
        path = find_job_file(args.job, args.jobs_dir)
        jobs_dir = args.jobs_dir if is_within(path, args.jobs_dir) else path.parent
        settings_here, _problems = load_settings(jobs_dir)
        job, _ = load_job(path, jobs_dir=jobs_dir, settings=settings_here)
        schedule = job.schedule
        zone = zone_named(args.tz) if args.tz else job.timezone
        label = job.id
    when = _parse_from(args.start, zone)
    times: list[datetime] = []
    while len(times) < args.n:
        nxt = schedule.next_fire(when)
        if nxt is None:
            break
        times.append(nxt)
        when = nxt
    if args.json:
        json.dump([t.astimezone(zone).isoformat() for t in times], out)
        out.write("\n")
        return EXIT_OK
    if not times:
        print(f"{label}: no upcoming fire time ({schedule.expr})", file=out)
        return EXIT_OK
    locals_ = [t.astimezone(zone) for t in times]
    width = max(len(local.tzname() or "") for local in locals_)  # CET and CEST line up
    for t, local in zip(times, locals_, strict=True):
        name = (local.tzname() or "").ljust(width)
        print(f"{local.isoformat()}  {name}  ({t.astimezone(UTC).isoformat()})", file=out)
    return EXIT_OK


def schema(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.config.schema import load_schema, write_schemas

    if args.write is not None:
        for path in write_schemas(args.write):
            print(f"wrote {path}", file=out)
        return EXIT_OK
    json.dump(load_schema("kron" if args.settings else "job"), out, indent=2, ensure_ascii=False)
    out.write("\n")
    return EXIT_OK


def fmt(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.config.fmt import format_paths

    return format_paths(
        args.paths or [args.jobs_dir],
        check=args.check,
        directive=args.schema_directive,
        out=out,
        err=err,
    )


def convert(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.config.convert import convert_file

    return convert_file(args.file, to=args.to, stdout=args.stdout, out=out, err=err)


def tree(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.config.catalog import load_dir
    from kron.config.graph import render_tree
    from kron.engine.store import last_outcomes

    jobs = load_dir(args.jobs_dir).jobs
    on = colour_enabled(out, args.color)
    outcomes = {
        job: paint(outcome, outcome_style(outcome), on=on)
        for job, outcome in last_outcomes(records_root(args.jobs_dir), jobs).items()
    }
    try:
        text = render_tree(jobs, outcomes, root=args.job)
    except KeyError:
        raise UsageError(unknown_job(args.job, args.jobs_dir, sorted(jobs))) from None
    out.write(text or "no job triggers another\n")
    return EXIT_OK
