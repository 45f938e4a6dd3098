"""The commands that talk to a daemon: daemon, run, status, list, pause, resume, cancel."""

from __future__ import annotations

import argparse
import gc
from pathlib import Path
from typing import Any, TextIO

from kron.cli.colour import colour_enabled
from kron.cli.common import (
    EXIT_BAD,
    EXIT_OK,
    client_for,
    find_job_file,
    is_within,
    job_id_of,
)
from kron.cli.output import dump, local_time, print_record, print_table
from kron.model.errors import DaemonUnreachable, KronError, UsageError
from kron.model.units import plural

__all__ = ["add_here_arguments", "cancel", "daemon", "jobs", "pause_resume", "run", "status"]


def add_here_arguments(parser: argparse.ArgumentParser) -> None:
    """`kron run --here` and what a CronJob's pod tells it (kron export kubernetes)."""
    parser.add_argument(
        "--here",
        action="store_true",
        help="run in this process without looking for a daemon; records go to stdout as "
        "NDJSON; exit 0 when the run succeeded, 1 when not",
    )
    parser.add_argument(
        "--cronjob", metavar="NAME", help="with --here: the CronJob that started this pod"
    )
    parser.add_argument(
        "--k8s-job",
        metavar="NAME",
        help="with --here: the pod's Job; a name the CronJob's controller gave it carries the "
        "scheduled time, which the run is recorded as (trigger schedule)",
    )


def daemon(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from kron.service.deferred_tls import import_asyncio

    import_asyncio()  # before anything imports asyncio: OpenSSL only once TLS is needed
    import asyncio

    from kron.engine.coordinator import AlreadyRunning
    from kron.service.daemon import Daemon
    from kron.service.logs import setup_logging
    from kron.service.memory import give_back_memory
    from kron.service.signals import use_pidfd_child_watcher

    setup_logging(args.log_format, args.log_level)
    if not args.jobs_dir.is_dir():
        raise UsageError(f"kron daemon: no jobs directory at {args.jobs_dir} (give --jobs-dir)")

    async def serve() -> None:
        use_pidfd_child_watcher()
        daemon = Daemon(args.jobs_dir, records_dir=args.records_dir)
        await daemon.start()
        # What the first load made lives as long as the process: out of the collector's sight,
        # a full collection (set off by a reload's garbage, in any thread) no longer walks every
        # job and module, which held the event loop 60-120 ms during a 500-file reload.
        gc.freeze()
        give_back_memory()  # what the load freed: its parsed files, the schema's code generation
        await daemon.serve()

    try:
        asyncio.run(serve())
    except AlreadyRunning as exc:
        print(f"kron daemon: {exc}", file=err)
        return EXIT_BAD
    return EXIT_OK


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import asyncio

    from kron.service.inprocess import run_once

    if args.here:
        return _run_here(args, out, err)
    if args.cronjob or args.k8s_job:
        raise UsageError("kron run: --cronjob and --k8s-job go with --here")

    try:
        client = client_for(args.jobs_dir)
    except DaemonUnreachable as exc:
        if not exc.absent:
            raise  # a daemon may run this job: never beside it, with another user's rights
        client, reason = None, str(exc)
    if client is not None:
        job_id = job_id_of(args.job, args.jobs_dir)
        params = {"wait": "1"} if args.wait else {}
        status, body = client.post(
            f"/v1/jobs/{job_id}/run", timeout=None if args.wait else 10.0, **params
        )
        if status == 404:
            raise UsageError(body.get("error", f"no job {job_id!r}"))
        if status == 409:
            why = body.get("error") or "a run is still alive"
            print(f"kron run: {job_id}: skipped: {why}", file=err)
            return EXIT_BAD
        _answer(status, body)
        if not args.wait:
            if args.json:
                dump(body, out)
            else:
                run_id = body["run_id"]
                print(f"started run {run_id} of {job_id} (kron show {run_id})", file=out)
            return EXIT_OK
        print_record(body, out, as_json=args.json, colour=colour_enabled(out, args.color))
        return EXIT_OK if body.get("outcome") == "succeeded" else EXIT_BAD
    path = find_job_file(args.job, args.jobs_dir)
    jobs_dir = args.jobs_dir if is_within(path, args.jobs_dir) else path.parent
    _refuse_outside_cluster(jobs_dir, reason)
    print(f"note: {reason}\nrunning in this process instead, until the run ends", file=err)
    record = asyncio.run(run_once(path, jobs_dir=jobs_dir))
    print_record(record, out, as_json=args.json, colour=colour_enabled(out, args.color))
    return EXIT_OK if record.get("outcome") == "succeeded" else EXIT_BAD


def _refuse_outside_cluster(jobs_dir: Path, reason: str) -> None:
    """A cluster's job runs on a node, claimed: never in this process beside the nodes."""
    from kron.config.settings import load_settings

    if jobs_dir.is_dir() and load_settings(jobs_dir)[0].cluster is not None:
        raise KronError(
            f"{reason}; this jobs directory is a cluster's ([cluster] in kron.toml), and a run "
            "outside a node's daemon would not be claimed (it could run twice): run it where a "
            "node's daemon answers"
        )


def _run_here(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import asyncio

    from kron.config.kubernetes.names import slot_of_job_name
    from kron.model.run import Outcome
    from kron.service.inprocess import run_here
    from kron.service.logs import setup_logging

    if args.wait or args.json:
        raise UsageError("kron run --here: always waits, and always prints NDJSON records")
    if bool(args.cronjob) != (args.k8s_job is not None):
        raise UsageError("kron run --here: give --cronjob and --k8s-job together")
    setup_logging()  # to stderr: stdout carries only the records
    path = find_job_file(args.job, args.jobs_dir)
    jobs_dir = args.jobs_dir if is_within(path, args.jobs_dir) else path.parent
    slot = slot_of_job_name(args.k8s_job, args.cronjob) if args.cronjob else None
    outcome = asyncio.run(run_here(path, jobs_dir=jobs_dir, out=out, slot=slot))
    if outcome is None:  # not a slot of the job: nothing ran, and the log says why
        return EXIT_OK
    return EXIT_OK if outcome is Outcome.SUCCEEDED else EXIT_BAD


def status(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    client = client_for(args.jobs_dir)
    body = client.get("/v1/status")
    if args.json:
        dump(body, out)
        return EXIT_OK
    since = str(body["started_at"]).partition(".")[0].removesuffix("Z") + "Z"  # whole seconds
    print(f"kron {body['version']} (pid {body['pid']}), up since {since}", file=out)
    print(f"jobs:    {body['jobs_loaded']} loaded from {body['jobs_dir']}", file=out)
    print(f"records: {body['records_dir']}", file=out)
    print(f"socket:  {client.socket_path}", file=out)
    if body["paused"]:
        print(f"paused:  {', '.join(body['paused'])}", file=out)
    invalid = body["invalid_files"]
    print(f"invalid files: {len(invalid)}", file=out)
    for entry in invalid:
        for line in entry["errors"]:
            print(f"  {line}", file=out)
        kept = "its last good version still runs" if entry.get("kept") else "never loaded"
        print(f"    ({kept})", file=out)
    for failing in body.get("records_failing", []):
        print(
            f"records failing: {failing['path']}: {failing['error']} since {failing['since']} "
            f"({plural(failing['failed_writes'], 'failed write')})",
            file=out,
        )
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
                r["state"] + (" (stuck)" if r.get("stuck") else ""),
                r["started_at"] or "",
            )
            for r in running
        ]
        print_table(rows, out, indent="  ")
        for r in running:
            if r.get("stuck"):
                print(f"  stuck: {r['job']} run {r['run_id']}: {r['stuck']}", file=out)
    if "cluster" in body:
        _print_cluster(body["cluster"], out)
    return EXIT_OK


def _print_cluster(cluster: dict[str, Any], out: TextIO) -> None:
    """The cluster part of `kron status`: this node, the database, every node and its drift."""
    db = cluster["database"]
    claims = cluster["claims"]
    print(
        f"cluster: node {cluster['node']}, job set {cluster['digest']}, "
        f"claims won {claims['won']}, lost {claims['lost']}",
        file=out,
    )
    if db["reachable"]:
        print("database: reachable", file=out)
    else:
        print(
            f"database: OUT OF REACH since {db['down_since'] or '?'} ({db['error']}); "
            "nothing fires on this node until it answers",
            file=out,
        )
    rows = [("NODE", "STATE", "VERSION", "HOST", "PID", "HEARTBEAT", "RUNNING", "JOB SET")]
    drifted = []
    for node in cluster["nodes"]:
        rows.append(
            (
                node["node"],
                node["state"],
                node["version"],
                node["host"],
                str(node["pid"]),
                f"{node['silent_s']:.1f}s ago",
                str(node["running"]),
                node["digest"] + (" (differs)" if node["drift"] else ""),
            )
        )
        if node["drift"]:
            drifted.append((node["node"], node["drift"]))
    print(f"nodes: {len(cluster['nodes'])}", file=out)
    print_table(rows, out, indent="  ")
    for name, drift in drifted:
        parts = [
            f"{plural(len(drift[key]), 'job')} {what}: {_some(drift[key])}"
            for key, what in (
                ("differ", "defined differently"),
                ("only_there", f"only on {name}"),
                ("only_here", f"only on {cluster['node']}"),
            )
            if drift[key]
        ]
        print(f"drift: node {name} runs other job definitions: {'; '.join(parts)}", file=out)


def _some(names: list[str], shown: int = 10) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _tag_params(tags: list[str]) -> dict[str, Any]:
    from kron.service.control import parse_tags

    return {"tag": [f"{k}={v}" for k, v in parse_tags(tags).items()]} if tags else {}


def jobs(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    params = _tag_params(args.tag)  # a usage error is said before the daemon is asked
    jobs = client_for(args.jobs_dir).get("/v1/jobs", **params)
    if args.json:
        dump(jobs, out)
        return EXIT_OK
    if not jobs:
        print("no jobs", file=out)
        return EXIT_OK
    rows = [("JOB", "SCHEDULE", "ZONE", "NEXT", "LAST", "STATE")]
    for j in jobs:
        state = "paused" if j["paused"] else ("disabled" if not j["enabled"] else "")
        if not state and j.get("firing") not in (None, "scheduled"):
            state = j["firing"]  # manual, at boot, done
        if j["running"]:
            state = ("running " + state).strip()
        if j.get("stuck"):
            state += " (stuck)"
        nxt = local_time(j["next_fire"], j["timezone"])
        rows.append((j["id"], j["schedule"], j["timezone"], nxt, j["last_outcome"] or "", state))
    print_table(rows, out, colour=colour_enabled(out, args.color), outcome_column=4)
    return EXIT_OK


def _answer(status: int, body: Any, *, unknown_is_usage: bool = False) -> Any:
    """The daemon's answer; an error as an exception (a 404 for a job id is a usage error)."""
    if status >= 400:
        message = body.get("error", f"the daemon answered {status}")
        raise (UsageError if unknown_is_usage and status in (400, 404) else KronError)(message)
    return body


def pause_resume(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if bool(args.job) == bool(args.tag):
        raise UsageError(f"kron {args.command}: give a job id or --tag KEY=VALUE (not both)")
    params = _tag_params(args.tag)
    client = client_for(args.jobs_dir)
    if args.tag:
        body = _answer(*client.post(f"/v1/{args.command}", **params), unknown_is_usage=True)
        done = body.get("paused" if args.command == "pause" else "resumed", [])
        message = f"{args.command}d {plural(len(done), 'job')}: {', '.join(done) or '-'}"
    else:
        job_id = job_id_of(args.job, args.jobs_dir)
        body = _answer(*client.post(f"/v1/jobs/{job_id}/{args.command}"), unknown_is_usage=True)
        message = f"{job_id}: {args.command}d"
    if args.json:
        dump(body, out)
    else:
        print(message, file=out)
    return EXIT_OK


def cancel(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if bool(args.run_id) == bool(args.tag):
        raise UsageError("kron cancel: give a run id or --tag KEY=VALUE (not both)")
    params = _tag_params(args.tag)
    client = client_for(args.jobs_dir)
    if args.tag:
        body = _answer(*client.post("/v1/cancel", **params))
        runs = body.get("cancelled", [])
        message = f"cancelling {plural(len(runs), 'run')}: {', '.join(runs) or '-'}"
    else:
        body = _answer(*client.post(f"/v1/runs/{args.run_id}/cancel"))
        message = f"cancelling run {args.run_id} of {body.get('job')}: stopping its process tree"
    if args.json:
        dump(body, out)
    else:
        print(message, file=out)
    return EXIT_OK
