"""The `kron` command line: `main(argv) -> exit code`; user errors never print a traceback."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO
from zoneinfo import ZoneInfo

from kron import __version__
from kron.errors import DaemonUnreachable, KronError, SpecError, UsageError, ValueProblem

EXIT_OK, EXIT_BAD, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _jobs_dir_default() -> Path:
    return Path(os.environ.get("KRON_JOBS_DIR", "jobs.d"))


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--jobs-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="the jobs directory (default: $KRON_JOBS_DIR or ./jobs.d)",
    )
    parser = _Parser(prog="kron", description="Scheduled work declared as files.", parents=[common])
    parser.add_argument("--version", action="version", version=f"kron {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "validate", parents=[common], help="check job files, as the daemon would load them"
    )
    p.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="files or folders (default: the jobs directory)",
    )
    p.add_argument("--format", choices=["text", "json", "github"], default="text")
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    p.add_argument("-q", "--quiet", action="store_true", help="print only problems and the summary")

    p = sub.add_parser(
        "next", parents=[common], help="upcoming fire times of a job or an expression"
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("job", nargs="?", help="a job id or a job file")
    target.add_argument("--expr", help="a schedule expression, e.g. '0 3 * * MON-FRI'")
    p.add_argument("--tz", help="time zone for --expr (default: kron.toml's, else UTC)")
    p.add_argument("--from", dest="start", help="ISO time to start from (default: now)")
    p.add_argument("-n", type=int, default=5, help="how many (default 5)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("daemon", parents=[common], help="run the scheduler in the foreground")
    p.add_argument("--records-dir", type=Path, help="where records go (overrides kron.toml)")
    p.add_argument("--log-format", choices=["text", "json"], default="text")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")

    p = sub.add_parser(
        "run", parents=[common], help="fire a job now (trigger manual) and print its record"
    )
    p.add_argument("job", help="a job id or a job file")
    p.add_argument(
        "--wait", action="store_true", help="wait for the run to end (always so without a daemon)"
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("history", parents=[common], help="recent runs, newest first")
    p.add_argument("job", nargs="?", help="only this job")
    p.add_argument("--outcome", help="only runs with this outcome (failed, timeout, skipped, ...)")
    p.add_argument("--since", help="only runs since a duration ago (2h, 7d) or an ISO time")
    p.add_argument("-n", type=int, default=20, help="how many (default 20)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("show", parents=[common], help="one run's record and output")
    p.add_argument("run_id", help="a run id (a unique prefix is enough)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("schema", parents=[common], help="print the JSON Schema of job files")
    p.add_argument("--settings", action="store_true", help="the schema of kron.toml instead")

    p = sub.add_parser("fmt", parents=[common], help="rewrite job files in canonical form")
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    p.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a file would change"
    )
    p.add_argument(
        "--force", action="store_true", help="rewrite files even when comments would be lost"
    )

    p = sub.add_parser("convert", parents=[common], help="turn a TOML job file into YAML or back")
    p.add_argument("file", type=Path)
    p.add_argument("--to", choices=["toml", "yaml"], required=True)
    p.add_argument(
        "--stdout", action="store_true", help="print the result instead of replacing the file"
    )
    return parser


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run one kron command; return its exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "jobs_dir", None):
            args.jobs_dir = _jobs_dir_default()
        if args.command is None:
            parser.print_help(out)
            return EXIT_USAGE
        handler = _COMMANDS[args.command]
        code: int = handler(args, out, err)
        return code
    except UsageError as exc:
        print(exc, file=err)
        return EXIT_USAGE
    except DaemonUnreachable as exc:
        print(f"kron: {exc}", file=err)
        return EXIT_UNREACHABLE
    except SpecError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        return EXIT_BAD
    except KronError as exc:
        print(f"kron: {exc}", file=err)
        return EXIT_BAD
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `kron history | head` closes the pipe; that is not an error.
        sys.stderr.close()
        return EXIT_OK


def _cmd_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron import validate as v

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


def _cmd_next(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.loader import _zone, load_job, load_settings
    from kron.schedule import parse_schedule

    if args.n < 1:
        raise UsageError("kron next: -n must be at least 1")
    settings, _ = load_settings(args.jobs_dir) if args.jobs_dir.is_dir() else (None, [])
    if args.expr:
        try:
            zone = (
                _zone(args.tz) if args.tz else (settings.timezone if settings else ZoneInfo("UTC"))
            )
            schedule = parse_schedule(args.expr, zone)
        except ValueProblem as exc:
            raise UsageError(f"kron next: {exc}") from None
        label = args.expr
    else:
        path = _find_job_file(args.job, args.jobs_dir)
        jobs_dir = args.jobs_dir if _is_within(path, args.jobs_dir) else path.parent
        from kron.loader import load_settings as _ls

        settings_here, _problems = _ls(jobs_dir)
        job, _ = load_job(path, jobs_dir=jobs_dir, settings=settings_here)
        schedule = job.schedule
        zone = _zone(args.tz) if args.tz else job.timezone
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
    for t in times:
        local = t.astimezone(zone)
        print(f"{local.isoformat()}  {local.tzname()}  ({t.astimezone(UTC).isoformat()})", file=out)
    return EXIT_OK


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _find_job_file(job: str, jobs_dir: Path) -> Path:
    """A job id (`backups/nightly`) or a path to its file."""
    from kron.documents import JOB_SUFFIXES

    direct = Path(job)
    if direct.is_file():
        return direct
    for suffix in JOB_SUFFIXES:
        candidate = jobs_dir / f"{job}{suffix}"
        if candidate.is_file():
            return candidate
    raise UsageError(f"no job {job!r} in {jobs_dir} (give a job id or a file)")


def _cmd_schema(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.loader import load_schema

    json.dump(load_schema("kron" if args.settings else "job"), out, indent=2, ensure_ascii=False)
    out.write("\n")
    return EXIT_OK


def _cmd_fmt(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.fmt import format_paths

    return format_paths(
        args.paths or [args.jobs_dir], check=args.check, force=args.force, out=out, err=err
    )


def _cmd_convert(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.fmt import convert_file

    return convert_file(args.file, to=args.to, stdout=args.stdout, out=out, err=err)


def _cmd_daemon(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import asyncio

    from kron.daemon import Daemon
    from kron.logs import setup_logging

    setup_logging(args.log_format, args.log_level)
    if not args.jobs_dir.is_dir():
        raise UsageError(f"kron daemon: no jobs directory at {args.jobs_dir} (give --jobs-dir)")

    async def serve() -> None:
        use_pidfd_child_watcher()
        daemon = Daemon(args.jobs_dir, records_dir=args.records_dir)
        await daemon.start()
        await daemon.serve()

    from kron.daemon import AlreadyRunning, use_pidfd_child_watcher

    try:
        asyncio.run(serve())
    except AlreadyRunning as exc:
        print(f"kron daemon: {exc}", file=err)
        return EXIT_BAD
    return EXIT_OK


def _records_root(jobs_dir: Path) -> Path:
    from kron.loader import load_settings

    settings, _ = load_settings(jobs_dir)
    return settings.records_dir or jobs_dir


def _cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import asyncio

    from kron.inprocess import run_once

    path = _find_job_file(args.job, args.jobs_dir)
    jobs_dir = args.jobs_dir if _is_within(path, args.jobs_dir) else path.parent
    if not args.wait:
        print(
            "note: no daemon reachable; running in this process and waiting for the end", file=err
        )
    record = asyncio.run(run_once(path, jobs_dir=jobs_dir))
    _print_record(record, out, as_json=args.json)
    return EXIT_OK if record.get("outcome") == "succeeded" else EXIT_BAD


def _parse_since(text: str) -> datetime:
    from kron.units import parse_duration

    try:
        return datetime.now(UTC) - parse_duration(text)
    except ValueProblem:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--since: {text!r} is neither a duration (2h, 7d) nor an ISO time"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _cmd_history(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.history import runs

    since = _parse_since(args.since) if args.since else None
    found = runs(_records_root(args.jobs_dir), job=args.job, outcome=args.outcome, since=since)[
        : args.n
    ]
    if args.json:
        json.dump(found, out, indent=2, ensure_ascii=False)
        out.write("\n")
        return EXIT_OK
    if not found:
        print("no runs recorded", file=out)
        return EXIT_OK
    rows = [("RUN", "JOB", "SLOT", "TRIGGER", "OUTCOME", "DURATION", "EXIT")]
    for r in found:
        duration = r.get("duration_s")
        exit_text = (
            r.get("exit_code")
            if r.get("exit_code") is not None
            else (f"sig {r['signal']}" if r.get("signal") else "")
        )
        rows.append(
            (
                str(r.get("run_id", "")),
                str(r.get("job", "")),
                str(r.get("slot", "")),
                f"{r.get('trigger', '')}#{r.get('attempt', 1)}"
                if (r.get("attempt") or 1) > 1
                else str(r.get("trigger", "")),
                str(r.get("outcome", "")),
                f"{duration:.2f}s" if isinstance(duration, int | float) else "",
                str(exit_text),
            )
        )
    _print_table(rows, out)
    return EXIT_OK


def _print_table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(),
            file=out,
        )


def _print_record(record: dict[str, Any], out: TextIO, *, as_json: bool) -> None:
    if as_json:
        json.dump(record, out, indent=2, ensure_ascii=False)
        out.write("\n")
        return
    for key in (
        "run_id",
        "job",
        "slot",
        "trigger",
        "attempt",
        "outcome",
        "started_at",
        "ended_at",
        "duration_s",
        "exit_code",
        "signal",
        "error",
        "truncated",
        "config_sha",
        "host",
        "pid",
    ):
        if record.get(key) not in (None, "", False):
            print(f"{key + ':':12} {record[key]}", file=out)
    for stream in ("stdout", "stderr"):
        text = record.get(stream)
        if text:
            print(f"--- {stream} ---", file=out)
            print(text.rstrip("\n"), file=out)


def _cmd_show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.history import find_run

    lines = find_run(_records_root(args.jobs_dir), args.run_id)
    if not lines:
        print(f"kron show: no run {args.run_id!r}", file=err)
        return EXIT_BAD
    ids = {r.get("run_id") for r in lines}
    if len(ids) > 1:
        print(f"kron show: {args.run_id!r} matches {len(ids)} runs; give more of the id", file=err)
        return EXIT_USAGE
    record = lines[-1]
    _print_record(record, out, as_json=args.json)
    return EXIT_OK


_COMMANDS: dict[str, Any] = {
    "daemon": _cmd_daemon,
    "run": _cmd_run,
    "history": _cmd_history,
    "show": _cmd_show,
    "validate": _cmd_validate,
    "next": _cmd_next,
    "schema": _cmd_schema,
    "fmt": _cmd_fmt,
    "convert": _cmd_convert,
}
