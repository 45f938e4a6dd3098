"""A minimal cron daemon on APScheduler 3.11, the peer kron is compared with.

One TOML file per job in a folder (read recursively), with the same keys as a kron job file:

    schedule = "*/5 * * * *"      # 5 fields, or 6 with a leading seconds field
    shell = "date >> /tmp/out"   # run by /bin/sh -c
    timezone = "UTC"             # optional, default UTC

Usage: python apscheduler_daemon.py JOBS_DIR [--load-only] [--workers N]

`--load-only` parses every file, adds every job and computes its first fire time (what a start
does), then exits silently: the bench times it against `kron validate` and `yacron -v`.

Once every job is armed (APScheduler's start() has put each job in its store with its first fire
time) the daemon sends `READY=1` to `$NOTIFY_SOCKET` when that is set, as kron does for systemd,
so the bench times both start-ups the same way.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from types import FrameType

from apscheduler.events import EVENT_SCHEDULER_STARTED, SchedulerEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

log = logging.getLogger("apscheduler_daemon")

# APScheduler 3 numbers weekdays from Monday = 0 (its docs call this a historical mistake);
# cron numbers them from Sunday = 0. Digits in the day-of-week field become names, so a
# cron expression means what it means in cron. Digits after `/` are steps and stay.
_CRON_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_NUMBER = re.compile(r"(?<![/\d])([0-7])(?!\d)")


def cron_trigger(expr: str, timezone: str) -> CronTrigger:
    """Build a CronTrigger from 5 cron fields, or 6 with a leading seconds field."""
    fields = expr.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ValueError(f"{expr!r}: expected 5 or 6 fields, got {len(fields)}")
    second, minute, hour, day, month, day_of_week = fields
    day_of_week = _WEEKDAY_NUMBER.sub(lambda m: _CRON_WEEKDAYS[int(m.group(1))], day_of_week)
    return CronTrigger(
        second=second,
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=day_of_week,
        timezone=timezone,
    )


def run_shell(command: str) -> None:
    """Run one job: /bin/sh -c, stdin from /dev/null, output captured, own session."""
    result = subprocess.run(
        command,
        shell=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        start_new_session=True,
        check=False,
    )
    if result.returncode != 0:
        log.warning("command %r exited %d", command, result.returncode)


def notify_ready(event: SchedulerEvent) -> None:
    """sd_notify READY=1: start() dispatches this event once the pending jobs are in the store."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"READY=1", address)


def add_jobs(scheduler: BaseScheduler, jobs_dir: Path) -> int:
    """Add one job per TOML file; return how many files were bad."""
    bad = 0
    for path in sorted(jobs_dir.rglob("*.toml")):
        job_id = path.relative_to(jobs_dir).with_suffix("").as_posix()
        try:
            with path.open("rb") as f:
                doc = tomllib.load(f)
            trigger = cron_trigger(doc["schedule"], doc.get("timezone", "UTC"))
            command = doc["shell"]
        except (OSError, tomllib.TOMLDecodeError, KeyError, ValueError, TypeError) as exc:
            log.error("%s: %s", path, exc)
            bad += 1
            continue
        scheduler.add_job(
            run_shell,
            trigger,
            args=[command],
            id=job_id,
            name=job_id,
            # kron's defaults: a slot may start up to 60 s late, one run at a time, and
            # slots missed while busy collapse into one.
            misfire_grace_time=60,
            max_instances=1,
            coalesce=True,
            replace_existing=True,
        )
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jobs_dir", type=Path)
    parser.add_argument("--load-only", action="store_true", help="add the jobs, then exit")
    parser.add_argument("--workers", type=int, default=20, help="thread pool size (default 20)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )

    scheduler_class = BackgroundScheduler if args.load_only else BlockingScheduler
    scheduler = scheduler_class(
        executors={"default": ThreadPoolExecutor(max_workers=args.workers)},
        timezone="UTC",
    )
    bad = add_jobs(scheduler, args.jobs_dir)
    if args.load_only:
        # start() is where APScheduler moves pending jobs into the job store and computes
        # each job's first fire time; paused, nothing runs.
        scheduler.start(paused=True)
        scheduler.shutdown(wait=False)
        return 1 if bad else 0

    def stop(signum: int, frame: FrameType | None) -> None:
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scheduler.add_listener(notify_ready, EVENT_SCHEDULER_STARTED)
    scheduler.start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
