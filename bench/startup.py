"""Start-up with 10,000 jobs: every runner, kron cold and warm; and how a start is followed.

"Armed" is when a runner has every job loaded with its next fire time:
- kron and the APScheduler daemon say so: READY=1 on `$NOTIFY_SOCKET` (sd_notify), sent once the
  jobs are loaded and armed (kron) or once `start()` has put every job in its store with its
  first fire time (bench/apscheduler_daemon.py);
- cron and yacron say nothing, so for them it is the last moment the process (its threads and
  children) was busy before a full second without, polled every 10 ms from
  /proc/PID/task/*/schedstat. That rule is also given for every runner, as a cross-check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    RUNNERS,
    Daemon,
    median,
    say,
    stamp_command,
    venv_command,
    workdir,
)
from jobfiles import Job, daemon_argv, write_jobs
from report import Row
from workloads import idle_schedule

STARTUP_JOBS = 10000
# yacron's daemon takes about 10 CPU s to start on 1,000 jobs here (`yacron -v` 1.8 s), so
# 10,000 take minutes; it is watched this long, then measured as it is.
YACRON_WATCH_S = 150.0
QUIET_S = 1.0  # "armed" for a runner with no signal: its last busy poll before this long quiet
SIGNALS = frozenset({"kron", "apscheduler"})  # runners that send READY=1
ORDER = ("cron", "apscheduler", "kron", "yacron")  # yacron last: its minute re-read is loud


@dataclass
class Start:
    ready_s: float | None  # exec → READY=1 (runners that send it)
    quiet_s: float | None  # exec → last busy moment before QUIET_S of quiet
    watched_s: float = 0.0  # how long it was watched, when it never went quiet

    def armed(self, runner: str) -> float | None:
        return self.ready_s if runner in SIGNALS else self.quiet_s


BUSY_NS = 1_000_000  # a 10 ms poll with 1 ms or more of CPU counts as busy (10 %)


def watch_start(daemon: Daemon, *, deadline: float, poll_s: float = 0.01) -> Start:
    """Follow a start from exec: READY=1 if the runner sends it, and when it went quiet.

    Quiet is QUIET_S in a row of polls each with under BUSY_NS of CPU, so a runner's small
    periodic wake-ups do not hide the end of its start-up.
    """
    ready: float | None = None
    last_ns, busy_at = daemon.cpu_ns(), time.time()
    while time.time() < deadline:
        if daemon.notify and ready is None:
            ready = daemon.ready_within(poll_s)
        else:
            time.sleep(poll_s)
        if not daemon.alive():
            tail = " | ".join(daemon.log_path.read_text(errors="replace").splitlines()[-3:])
            raise RuntimeError(f"{daemon.name} exited during start-up: {tail}")
        ns, now = daemon.cpu_ns(), time.time()
        if ns - last_ns >= BUSY_NS:
            busy_at = now
        last_ns = ns
        if now - busy_at >= QUIET_S and (ready is not None or not daemon.notify):
            return Start(ready, busy_at - daemon.started)
    watched = time.time() - daemon.started
    daemon.notes.append(f"still busy {watched:.0f} s after exec (never {QUIET_S:g} s quiet)")
    return Start(ready, None, watched)


def armed_cell(runner: str, starts: list[Start]) -> float | str | None:
    """The median armed time, or what happened instead."""
    values = [v for s in starts if (v := s.armed(runner)) is not None]
    if values:
        return median(values)
    watched = [s.watched_s for s in starts if s.watched_s]
    if watched:
        return f"never quiet: busy all {min(watched):.0f} s watched"
    return None


def cache_of(folder: Path) -> Path:
    """kron's warm-start cache for a jobs folder that is also its records folder."""
    return folder / ".kron" / "jobs.cache"


def start(runner: str, folder: Path, log: Path, *, timeout_s: float) -> tuple[Daemon, Start]:
    daemon = Daemon(
        f"{runner} {folder.name}",
        daemon_argv(runner, folder, venv_command(runner)),
        log,
        notify=runner in SIGNALS,
    ).start()
    try:
        return daemon, watch_start(daemon, deadline=time.time() + timeout_s)
    except BaseException:
        daemon.stop()
        raise


def kron_cold_warm(folder: Path, log: Path, *, timeout_s: float) -> tuple[Daemon, Start, Start]:
    """A cold start (no cache), a clean stop (which writes the cache), then a warm start.

    Returns the second daemon, still running, and both starts. Without a cache after the stop
    the second start is no warm start: its figure is dropped (ready_s None) and a note says why.
    """
    cache_of(folder).unlink(missing_ok=True)
    first, cold = start("kron", folder, log, timeout_s=timeout_s)
    first.stop()
    cached = cache_of(folder).exists()
    daemon, warm = start("kron", folder, log, timeout_s=timeout_s)
    if not cached:
        daemon.notes.append(f"no {cache_of(folder).name} after a clean stop: no warm start")
        warm = Start(None, None)
    return daemon, cold, warm


def idle_jobs(n: int, out: Path) -> list[Job]:
    schedule = idle_schedule()
    return [Job(f"job-{i:06d}", schedule, stamp_command(out, f"job-{i:06d}")) for i in range(n)]


def fmt_s(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


# -- start-up, 10,000 jobs ----------------------------------------------------------------------


@dataclass
class Startup:
    """Every runner started on 10,000 jobs, round-robin, `runs` times (yacron once)."""

    runs: int
    yacron: bool = True  # --quick leaves it out: its start takes minutes
    starts: dict[str, list[Start]] = field(default_factory=dict)  # "kron" is cold
    dirs: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def prepare(self) -> None:
        root = workdir("startup")
        jobs = idle_jobs(STARTUP_JOBS, root / "starts.txt")
        for runner in RUNNERS:
            self.dirs[runner] = write_jobs(runner, root / runner, jobs)

    def plan(self) -> list[tuple[str, float]]:
        """(runner, estimated seconds) in the order to run them."""
        guess = {"kron": 8.0, "apscheduler": 6.0, "cron": 3.0, "yacron": 25.0}
        out = []
        for k in range(self.runs):
            for runner in ORDER:
                if runner == "yacron" and (k > 0 or not self.yacron):
                    continue  # minutes a start: once is enough to place it
                out.append((runner, YACRON_WATCH_S if runner == "yacron" else guess[runner]))
        return out

    def run_once(self, runner: str) -> None:
        folder, log = self.dirs[runner], self.dirs[runner].with_suffix(".log")
        if runner == "kron":
            daemon, cold, warm = kron_cold_warm(folder, log, timeout_s=120)
            daemon.stop()
            self.notes.extend(f"kron: {note}" for note in daemon.notes)
            self.starts.setdefault("kron", []).append(cold)
            self.starts.setdefault("kron warm", []).append(warm)
            say(
                f"startup kron {STARTUP_JOBS:,} jobs: cold READY {fmt_s(cold.ready_s)} s, "
                f"warm {fmt_s(warm.ready_s)} s"
            )
            return
        timeout = YACRON_WATCH_S if runner == "yacron" else 180
        daemon, got = start(runner, folder, log, timeout_s=timeout)
        daemon.stop()
        self.notes.extend(f"{runner}: {note}" for note in daemon.notes)
        self.starts.setdefault(runner, []).append(got)
        say(f"startup {runner} {STARTUP_JOBS:,} jobs: armed {fmt_s(got.armed(runner))} s")

    def rows(self) -> list[Row]:
        runs = max((len(v) for v in self.starts.values()), default=0)
        what = f"start-up, {STARTUP_JOBS:,} jobs (median of {runs}; yacron " + (
            "once)" if self.yacron else "not run)"
        )

        def pick(key: str, fn) -> float | None:  # type: ignore[no-untyped-def]
            values = [v for s in self.starts.get(key, []) if (v := fn(s)) is not None]
            return median(values) if values else None

        armed = {r: armed_cell(r, self.starts.get(r, [])) for r in RUNNERS}
        if not self.yacron:
            armed["yacron"] = "not run in --quick"
        warm = pick("kron warm", lambda s: s.ready_s)
        quiet = {r: pick(r, lambda s: s.quiet_s) for r in RUNNERS}
        rows = [
            Row(
                what,
                "exec → all jobs armed, s (kron cold, no cache; kron and APScheduler: READY=1; "
                "cron and yacron: last busy 10 ms before 1 s quiet)",
                armed,
                "s",
                digits=3,
            ).ratio_check(0.5, "APScheduler", peer="apscheduler"),
            Row(
                what,
                "kron warm start (cache from a clean stop): exec → READY=1, s",
                {"kron": warm},
                "s",
                digits=3,
                ratio=False,
                target="≤ 0.3 s",
                met=None if warm is None else warm <= 0.3,
            ),
            Row(
                what,
                "exec → last busy 10 ms before 1 s quiet, s (one rule for all; kron cold)",
                quiet,
                "s",
                digits=3,
            ),
        ]
        rows[0].notes.extend(self.notes)
        return rows
