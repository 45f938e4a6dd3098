"""Debian's cron, the C floor: installed when missing, run isolated from the machine's own cron.

The bench runs `cron -f` (foreground; Debian's cron 3.0pl1) as root in a mount namespace of its
own (`unshare --mount --propagation private`), where temporary folders are bind-mounted over
/etc/cron.d, /var/spool/cron/crontabs and /etc/crontab, and a fresh tmpfs over /run (its
pidfile, /run/crond.pid). The machine's crontabs are never read or written, and a cron already
running on the machine (whose pidfile is in the real /run) is not in the way. The namespace goes
away with the process.

The jobs are system crontabs in /etc/cron.d, a line per job (`M H DOM MON DOW root COMMAND`),
cron's own form for many jobs; `%` is escaped, since cron turns a bare `%` into a newline.
Debian's cron ignores a whole crontab of more than 10,000 lines ("crontab must not be longer
than 10000 lines, this crontab file will be ignored"), so the jobs go 5,000 to a file
(bench-0000, bench-0001...). Files in /etc/cron.d must belong to root and not be writable by
group or others, and their names may not hold a dot, or cron skips them.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobfiles import Job

CRON = "/usr/sbin/cron"
TABLE = "bench"  # /etc/cron.d/bench-NNNN inside the namespace
LINES_PER_TABLE = 5000  # Debian's cron ignores a crontab of more than 10,000 lines


def ensure_cron() -> None:
    """Install Debian's cron (the daemon only) when it is missing; the package's own service
    is not started by the bench, which runs its private copy (below)."""
    if Path(CRON).exists():
        return
    if shutil.which("apt-get") is None:
        sys.exit(f"{CRON} is missing and apt-get is not available to install Debian's cron")
    print("[bench] installing Debian's cron (apt-get install cron)", file=sys.stderr, flush=True)
    command = ["apt-get", "install", "-y", "--no-install-recommends", "cron"]
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:  # a stale package index: refresh it once
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, check=False)
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0 or not Path(CRON).exists():
        sys.exit(f"could not install Debian's cron:\n{result.stdout}{result.stderr}")


def cron_line(job: Job) -> str:
    """One /etc/cron.d line: five fields, the user, the command with `%` escaped."""
    fields = job.schedule.split()
    if len(fields) != 5:
        raise ValueError(f"cron has no seconds field: {job.schedule!r}")
    return f"{job.schedule} root {job.shell.replace('%', chr(92) + '%')}"


def write_tables(folder: Path, jobs: Iterable[Job]) -> Path:
    """folder/cron.d/bench-NNNN with every job, an empty spool and /etc/crontab; return folder."""
    (folder / "cron.d").mkdir(parents=True, exist_ok=True)
    (folder / "crontabs").mkdir(exist_ok=True)
    (folder / "cron.d").chmod(0o755)
    (folder / "crontabs").chmod(0o730)
    crontab = folder / "crontab"
    crontab.write_text("")
    crontab.chmod(0o644)
    lines = [cron_line(job) for job in jobs]
    for k, first in enumerate(range(0, max(len(lines), 1), LINES_PER_TABLE)):
        table = folder / "cron.d" / f"{TABLE}-{k:04d}"
        chunk = ['MAILTO=""', "SHELL=/bin/sh", *lines[first : first + LINES_PER_TABLE]]
        table.write_text("\n".join(chunk) + "\n")
        table.chmod(0o644)  # cron skips a table that group or others may write
    return folder


def cron_argv(folder: Path) -> list[str]:
    """`cron -f` in a private mount namespace over folder's tables (see the module's text).

    unshare and sh exec in place, so the pid the bench starts is cron's own from its exec on.
    """
    mounts = " && ".join(
        [
            f"mount --bind {shlex.quote(str(folder / 'cron.d'))} /etc/cron.d",
            f"mount --bind {shlex.quote(str(folder / 'crontabs'))} /var/spool/cron/crontabs",
            f"mount --bind {shlex.quote(str(folder / 'crontab'))} /etc/crontab",
            "mount -t tmpfs -o mode=0755 tmpfs /run",
        ]
    )
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        f"{mounts} && exec {CRON} -f",
    ]
