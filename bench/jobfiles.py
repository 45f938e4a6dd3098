"""The same jobs written in each runner's own format, one file per job.

- kron: `NAME.toml` in a jobs directory, with `timezone = "UTC"`.
- yacron: `NAME.yaml` in a config directory (`yacron -c DIR`), `utc: true`, one job per file.
- APScheduler: `NAME.toml` read by bench/apscheduler_daemon.py (the same keys as kron's).
- Debian cron: one system crontab with a line per job (bench/crond.py), cron's form for many jobs.

Every job runs its command through /bin/sh -c and forbids overlapping runs of itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from crond import cron_argv, write_tables


@dataclass(frozen=True)
class Job:
    name: str
    schedule: str
    shell: str


def _quoted(text: str) -> str:
    """A double-quoted string that TOML and YAML read the same way."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def kron_file(job: Job) -> str:
    return f'schedule = {_quoted(job.schedule)}\ntimezone = "UTC"\nshell = {_quoted(job.shell)}\n'


def yacron_file(job: Job) -> str:
    return (
        "jobs:\n"
        f"  - name: {job.name}\n"
        f"    command: {_quoted(job.shell)}\n"
        f"    schedule: {_quoted(job.schedule)}\n"
        "    utc: true\n"
        "    concurrencyPolicy: Forbid\n"
    )


def apscheduler_file(job: Job) -> str:
    return kron_file(job)


_FORMATS = {
    "kron": (".toml", kron_file),
    "yacron": (".yaml", yacron_file),
    "apscheduler": (".toml", apscheduler_file),
}


def write_jobs(runner: str, folder: Path, jobs: Iterable[Job]) -> Path:
    """Write one file per job for `runner` into folder (created); return folder."""
    if runner == "cron":
        return write_tables(folder, jobs)
    suffix, render = _FORMATS[runner]
    folder.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        (folder / f"{job.name}{suffix}").write_text(render(job))
    return folder


def daemon_argv(runner: str, folder: Path, prefix: list[str]) -> list[str]:
    """The command line that runs `runner` as a daemon on folder."""
    if runner == "kron":
        return [*prefix, "daemon", "--jobs-dir", str(folder)]
    if runner == "yacron":
        return [*prefix, "-c", str(folder)]
    if runner == "cron":
        return cron_argv(folder)
    return [*prefix, str(folder)]
