"""The commands that read run records: history, show, check-records."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import TextIO

from kron.cli.colour import colour_enabled
from kron.cli.common import (
    EXIT_BAD,
    EXIT_OK,
    EXIT_USAGE,
    client_for,
    job_ids,
    records_root,
    store_for,
    unknown_job,
)
from kron.cli.output import print_record, print_table
from kron.model.errors import UsageError, ValueProblem

__all__ = ["check_records", "history", "show"]


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


def history(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.model.errors import did_you_mean
    from kron.model.run import Outcome, RunStarted

    since = _parse_since(args.since) if args.since else None
    try:
        outcome = Outcome(args.outcome) if args.outcome else None
    except ValueError:
        names = [o.value for o in Outcome]
        hint = did_you_mean(args.outcome, names) or f"; outcomes: {', '.join(names)}"
        raise UsageError(f"--outcome: no outcome {args.outcome!r}{hint}") from None
    store = store_for(args.jobs_dir, args.records_dir, err=err)
    if args.job is not None and not store.has_job(args.job):
        # Records outlive their job file, so a job is known by either.
        known = sorted({*job_ids(args.jobs_dir), *store.job_ids()})
        if args.job not in known:
            raise UsageError(unknown_job(args.job, args.jobs_dir, known))
    runs = store.runs(job=args.job, outcome=outcome, since=since, limit=args.n)
    found = [
        r.to_json() | {"outcome": "running"}
        if isinstance(r, RunStarted) and outcome is None
        else r.to_json()
        for r in runs
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
    print_table(rows, out, colour=colour_enabled(out, args.color), outcome_column=4)
    return EXIT_OK


def show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.model.run import DeliveryNote, RunRecord

    lines = store_for(args.jobs_dir, args.records_dir, err=err).find(args.run_id)
    if not lines:
        print(f"kron show: no run {args.run_id!r}", file=err)
        return EXIT_BAD
    ids = {line.run_id for line in lines}
    if len(ids) > 1:
        print(f"kron show: {args.run_id!r} matches {len(ids)} runs; give more of the id", file=err)
        return EXIT_USAGE
    runs = [line for line in lines if isinstance(line, RunRecord)]
    # A late line (a node that had lost the run's lease, cluster mode) is never the result.
    results = [line for line in runs if not line.late] or runs
    record = (results[-1] if results else lines[-1]).to_json()
    deliveries = [line.to_json()["delivery"] for line in lines if isinstance(line, DeliveryNote)]
    if deliveries:
        record["deliveries"] = deliveries
    print_record(record, out, as_json=args.json, colour=colour_enabled(out, args.color))
    return EXIT_OK


def check_records(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.config.catalog import load_dir
    from kron.engine.consistency import check_records as check
    from kron.model.errors import DaemonUnreachable
    from kron.model.units import plural

    began = datetime.now(UTC)
    try:  # asked before reading: a run that ends meanwhile has its end in the file
        status = client_for(args.jobs_dir).get("/v1/status")
        running = {str(run["run_id"]) for run in status.get("running", ())}
    except DaemonUnreachable:
        running = set()
    jobs = load_dir(args.jobs_dir).jobs if args.jobs_dir.is_dir() else {}
    root = records_root(args.jobs_dir, args.records_dir)
    report = check(root, jobs=jobs, running=running, since_check=began)
    if args.json:
        json.dump(report.to_json(), out, indent=2, ensure_ascii=False)
        out.write("\n")
    else:
        for finding in report.findings:
            print(finding, file=out)
        problems = len(report.findings)
        print(
            f"{plural(report.files, 'records file')}, {plural(report.runs, 'run')}: "
            + (plural(problems, "problem") if problems else "all whole, none twice, none lost"),
            file=out,
        )
    return EXIT_BAD if report.findings else EXIT_OK
