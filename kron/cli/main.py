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
from kron.model.errors import DaemonUnreachable, KronError, SpecError, UsageError, ValueProblem

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

    p = sub.add_parser(
        "status", parents=[common], help="the daemon's view: jobs, invalid files, runs"
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("list", parents=[common], help="jobs with their next fire and last outcome")
    p.add_argument(
        "--tag", action="append", default=[], metavar="KEY=VALUE", help="only these tags"
    )
    p.add_argument("--json", action="store_true")

    for name, text in (
        ("pause", "stop firing a job by its schedule (kept across restarts)"),
        ("resume", "fire a paused job by its schedule again"),
    ):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("job", nargs="?", help="a job id")
        p.add_argument(
            "--tag", action="append", default=[], metavar="KEY=VALUE", help="every job with it"
        )
        p.add_argument("--json", action="store_true")

    p = sub.add_parser("cancel", parents=[common], help="stop a running run's process tree")
    p.add_argument("run_id", nargs="?", help="a running run's id")
    p.add_argument(
        "--tag", action="append", default=[], metavar="KEY=VALUE", help="runs of these jobs"
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "tree", parents=[common], help="the trigger graph, with each job's last outcome"
    )
    p.add_argument("job", nargs="?", help="only the tree below this job")

    p = sub.add_parser("history", parents=[common], help="recent runs, newest first")
    p.add_argument("job", nargs="?", help="only this job")
    p.add_argument("--outcome", help="only runs with this outcome (failed, timeout, skipped, ...)")
    p.add_argument("--since", help="only runs since a duration ago (2h, 7d) or an ISO time")
    p.add_argument("-n", type=int, default=20, help="how many (default 20)")
    p.add_argument(
        "--records-dir", type=Path, help="where the records are (as given to the daemon)"
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("show", parents=[common], help="one run's record and output")
    p.add_argument("run_id", help="a run id (a unique prefix is enough)")
    p.add_argument(
        "--records-dir", type=Path, help="where the records are (as given to the daemon)"
    )
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
    from kron.config.loader import _zone, load_job, load_settings
    from kron.model.schedule import parse_schedule

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
        from kron.config.loader import load_settings as _ls

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
    from kron.config.documents import JOB_SUFFIXES

    direct = Path(job)
    if direct.is_file():
        return direct
    for suffix in JOB_SUFFIXES:
        candidate = jobs_dir / f"{job}{suffix}"
        if candidate.is_file():
            return candidate
    raise UsageError(f"no job {job!r} in {jobs_dir} (give a job id or a file)")


def _cmd_schema(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.config.loader import load_schema

    json.dump(load_schema("kron" if args.settings else "job"), out, indent=2, ensure_ascii=False)
    out.write("\n")
    return EXIT_OK


def _cmd_fmt(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.config.fmt import format_paths

    return format_paths(
        args.paths or [args.jobs_dir], check=args.check, force=args.force, out=out, err=err
    )


def _cmd_convert(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.config.fmt import convert_file

    return convert_file(args.file, to=args.to, stdout=args.stdout, out=out, err=err)


def _cmd_daemon(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import asyncio

    from kron.service.daemon import Daemon
    from kron.service.logs import setup_logging

    setup_logging(args.log_format, args.log_level)
    if not args.jobs_dir.is_dir():
        raise UsageError(f"kron daemon: no jobs directory at {args.jobs_dir} (give --jobs-dir)")

    async def serve() -> None:
        use_pidfd_child_watcher()
        daemon = Daemon(args.jobs_dir, records_dir=args.records_dir)
        await daemon.start()
        await daemon.serve()

    from kron.service.daemon import AlreadyRunning, use_pidfd_child_watcher

    try:
        asyncio.run(serve())
    except AlreadyRunning as exc:
        print(f"kron daemon: {exc}", file=err)
        return EXIT_BAD
    return EXIT_OK


def _records_root(jobs_dir: Path, override: Path | None = None) -> Path:
    """Where the records are: --records-dir, else kron.toml's records_dir, else the jobs dir."""
    from kron.config.loader import load_settings

    if override is not None:
        return override
    settings, _ = load_settings(jobs_dir)
    return settings.records_dir or jobs_dir


def _client(jobs_dir: Path) -> Any:
    """The control client for the daemon serving jobs_dir (DaemonUnreachable: exit 3)."""
    from kron.config.loader import load_settings
    from kron.model import job as spec
    from kron.service.control import reach

    settings = load_settings(jobs_dir)[0] if jobs_dir.is_dir() else spec.Settings()
    return reach(jobs_dir, settings)


def _job_id(job: str, jobs_dir: Path) -> str:
    """A job id from an id or a path to a job file."""
    from kron.config.loader import job_id_for

    path = Path(job)
    if path.suffix in (".toml", ".yaml", ".yml") and path.exists() and _is_within(path, jobs_dir):
        return job_id_for(path.resolve(), jobs_dir.resolve())
    return job


def _cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import asyncio

    from kron.service.inprocess import run_once

    try:
        client = _client(args.jobs_dir)
    except DaemonUnreachable as exc:
        client, reason = None, str(exc)
    if client is not None:
        job_id = _job_id(args.job, args.jobs_dir)
        params = {"wait": "1"} if args.wait else {}
        status, body = client.post(
            f"/v1/jobs/{job_id}/run", timeout=None if args.wait else 10.0, **params
        )
        if status == 404:
            raise KronError(body.get("error", f"no job {job_id!r}"))
        if status == 409:
            why = body.get("error") or "a run is still alive"
            print(f"kron run: {job_id}: skipped: {why}", file=err)
            return EXIT_BAD
        if not args.wait:
            if args.json:
                _dump(body, out)
            else:
                run_id = body["run_id"]
                print(f"started run {run_id} of {job_id} (kron show {run_id})", file=out)
            return EXIT_OK
        _print_record(body, out, as_json=args.json)
        return EXIT_OK if body.get("outcome") == "succeeded" else EXIT_BAD
    path = _find_job_file(args.job, args.jobs_dir)
    jobs_dir = args.jobs_dir if _is_within(path, args.jobs_dir) else path.parent
    print(f"note: {reason}\nrunning in this process instead, until the run ends", file=err)
    record = asyncio.run(run_once(path, jobs_dir=jobs_dir))
    _print_record(record, out, as_json=args.json)
    return EXIT_OK if record.get("outcome") == "succeeded" else EXIT_BAD


def _dump(value: Any, out: TextIO) -> None:
    json.dump(value, out, indent=2, ensure_ascii=False)
    out.write("\n")


def _cmd_status(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    body = _client(args.jobs_dir).get("/v1/status")
    if args.json:
        _dump(body, out)
        return EXIT_OK
    since = str(body["started_at"]).partition(".")[0].removesuffix("Z") + "Z"  # whole seconds
    print(f"kron {body['version']} (pid {body['pid']}), up since {since}", file=out)
    print(f"jobs:    {body['jobs_loaded']} loaded from {body['jobs_dir']}", file=out)
    print(f"records: {body['records_dir']}", file=out)
    if body["paused"]:
        print(f"paused:  {', '.join(body['paused'])}", file=out)
    invalid = body["invalid_files"]
    print(f"invalid files: {len(invalid)}", file=out)
    for entry in invalid:
        for line in entry["errors"]:
            print(f"  {line}", file=out)
    running = body["running"]
    print(f"running: {len(running)}", file=out)
    if running:
        rows = [("RUN", "JOB", "SLOT", "TRIGGER", "STATE", "STARTED")]
        rows += [
            (
                r["run_id"],
                r["job"],
                r["slot"] or "",
                r["trigger"],
                r["state"],
                r["started_at"] or "",
            )
            for r in running
        ]
        _print_table(rows, out, indent="  ")
    return EXIT_OK


def _tag_params(tags: list[str]) -> dict[str, Any]:
    from kron.service.control import parse_tags

    return {"tag": [f"{k}={v}" for k, v in parse_tags(tags).items()]} if tags else {}


def _cmd_list(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    jobs = _client(args.jobs_dir).get("/v1/jobs", **_tag_params(args.tag))
    if args.json:
        _dump(jobs, out)
        return EXIT_OK
    if not jobs:
        print("no jobs", file=out)
        return EXIT_OK
    rows = [("JOB", "SCHEDULE", "ZONE", "NEXT", "LAST", "STATE")]
    for j in jobs:
        state = "paused" if j["paused"] else ("disabled" if not j["enabled"] else "")
        if j["running"]:
            state = ("running " + state).strip()
        nxt = _local(j["next_fire"], j["timezone"])
        rows.append((j["id"], j["schedule"], j["timezone"], nxt, j["last_outcome"] or "", state))
    _print_table(rows, out)
    return EXIT_OK


def _local(text: str | None, zone: str) -> str:
    if not text:
        return "-"
    from kron.engine.records import parse_time

    return parse_time(text).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S %Z")


def _answer(status: int, body: Any) -> Any:
    if status >= 400:
        raise KronError(body.get("error", f"the daemon answered {status}"))
    return body


def _cmd_pause_resume(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if bool(args.job) == bool(args.tag):
        raise UsageError(f"kron {args.command}: give a job id or --tag KEY=VALUE (not both)")
    client = _client(args.jobs_dir)
    if args.tag:
        body = _answer(*client.post(f"/v1/{args.command}", **_tag_params(args.tag)))
        done = body.get("paused" if args.command == "pause" else "resumed", [])
        message = f"{args.command}d {len(done)} jobs: {', '.join(done) or '-'}"
    else:
        job_id = _job_id(args.job, args.jobs_dir)
        body = _answer(*client.post(f"/v1/jobs/{job_id}/{args.command}"))
        message = f"{job_id}: {args.command}d"
    if args.json:
        _dump(body, out)
    else:
        print(message, file=out)
    return EXIT_OK


def _cmd_cancel(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if bool(args.run_id) == bool(args.tag):
        raise UsageError("kron cancel: give a run id or --tag KEY=VALUE (not both)")
    client = _client(args.jobs_dir)
    if args.tag:
        body = _answer(*client.post("/v1/cancel", **_tag_params(args.tag)))
        runs = body.get("cancelled", [])
        message = f"cancelling {len(runs)} runs: {', '.join(runs) or '-'}"
    else:
        body = _answer(*client.post(f"/v1/runs/{args.run_id}/cancel"))
        message = f"cancelling run {args.run_id} of {body.get('job')}: stopping its process tree"
    if args.json:
        _dump(body, out)
    else:
        print(message, file=out)
    return EXIT_OK


def _parse_since(text: str) -> datetime:
    from kron.model.units import parse_duration

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
    from kron.engine.history import runs

    since = _parse_since(args.since) if args.since else None
    found = runs(
        _records_root(args.jobs_dir, args.records_dir),
        job=args.job,
        outcome=args.outcome,
        since=since,
    )[: args.n]
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


def _print_table(rows: Sequence[Sequence[str]], out: TextIO, *, indent: str = "") -> None:
    """An aligned table: rich on a terminal, plain columns in a pipe."""
    if out.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*rows[0], box=None, header_style="bold", pad_edge=False)
        for row in rows[1:]:
            table.add_row(*row)
        Console(file=out).print(table)
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print(indent + "  ".join(cells).rstrip(), file=out)


def _print_record(record: dict[str, Any], out: TextIO, *, as_json: bool) -> None:
    if as_json:
        _dump(record, out)
        return
    keys = (
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
        "upstream",
        "config_sha",
        "host",
        "pid",
    )
    for key in keys:
        if record.get(key) not in (None, "", False):
            print(f"{key + ':':12} {record[key]}", file=out)
    for delivery in record.get("deliveries", []):
        state = "ok" if delivery.get("ok") else f"failed: {delivery.get('error')}"
        print(f"{'delivery:':12} {delivery.get('target')} {state}", file=out)
    for stream in ("stdout", "stderr"):
        text = record.get(stream)
        if text:
            print(f"--- {stream} ---", file=out)
            print(text.rstrip("\n"), file=out)


def _cmd_show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.engine.history import find_run

    lines = find_run(_records_root(args.jobs_dir, args.records_dir), args.run_id)
    if not lines:
        print(f"kron show: no run {args.run_id!r}", file=err)
        return EXIT_BAD
    ids = {r.get("run_id") for r in lines}
    if len(ids) > 1:
        print(f"kron show: {args.run_id!r} matches {len(ids)} runs; give more of the id", file=err)
        return EXIT_USAGE
    runs = [r for r in lines if isinstance(r.get("outcome"), str)]
    record = dict(runs[-1] if runs else lines[-1])
    deliveries = [r["delivery"] for r in lines if isinstance(r.get("delivery"), dict)]
    if deliveries:
        record["deliveries"] = deliveries
    _print_record(record, out, as_json=args.json)
    return EXIT_OK


def _cmd_tree(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.config.catalog import load_dir
    from kron.config.graph import last_outcomes, render_tree

    jobs = load_dir(args.jobs_dir).jobs
    try:
        text = render_tree(jobs, last_outcomes(_records_root(args.jobs_dir), jobs), root=args.job)
    except KeyError:
        raise KronError(f"no job {args.job!r} in {args.jobs_dir}") from None
    out.write(text or "no job triggers another\n")
    return EXIT_OK


_COMMANDS: dict[str, Any] = {
    "tree": _cmd_tree,
    "daemon": _cmd_daemon,
    "run": _cmd_run,
    "status": _cmd_status,
    "list": _cmd_list,
    "pause": _cmd_pause_resume,
    "resume": _cmd_pause_resume,
    "cancel": _cmd_cancel,
    "history": _cmd_history,
    "show": _cmd_show,
    "validate": _cmd_validate,
    "next": _cmd_next,
    "schema": _cmd_schema,
    "fmt": _cmd_fmt,
    "convert": _cmd_convert,
}
