"""The workloads but start-up and scale (those are in bench/scale.py). Each one measures from
outside: /proc for CPU and memory, wall time around a command, and start times that the jobs
write themselves (`date +%s.%N`), never a runner's log."""

from __future__ import annotations

import datetime as dt
import math
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    RUNNERS,
    Daemon,
    median,
    next_boundary,
    percentile,
    read_starts,
    say,
    sleep_until,
    stamp_command,
    timed,
    venv_command,
    wait_for,
    workdir,
)
from jobfiles import Job, daemon_argv, kron_file, write_jobs
from report import Row

LABEL = {"kron": "kron", "yacron": "yacron", "apscheduler": "APScheduler", "cron": "Debian cron"}
LOADERS = ("kron", "yacron", "apscheduler")  # cron has no load-and-exit mode


def idle_schedule() -> str:
    """A schedule that is months away from now: the first of the month, half a year ahead."""
    month = (dt.datetime.now(dt.UTC).month + 5) % 12 + 1
    return f"0 0 1 {month} *"


@dataclass
class Filler:
    """A piece of work that does not need a minute boundary: run between bursts."""

    name: str
    estimate_s: Callable[[], float]
    run: Callable[[], None]


# -- 1. validate / load -------------------------------------------------------------------------

VALIDATE_VARIANTS = ("kron -q", "kron", "yacron", "apscheduler")
# First guesses of one run's wall time, replaced by the measured ones as runs come in.
_GUESS_S = {
    ("kron -q", 1000): 2,
    ("kron", 1000): 2,
    ("yacron", 1000): 6,
    ("apscheduler", 1000): 1,
    ("kron -q", 10000): 10,
    ("kron", 10000): 12,
    ("yacron", 10000): 30,
    ("apscheduler", 10000): 4,
}


@dataclass
class Validate:
    """Load n job files and exit: kron validate, yacron -v, the APScheduler daemon's --load-only."""

    sizes: dict[int, int]  # files -> runs
    skip: frozenset[tuple[str, int]] = frozenset()  # (variant, files) not run
    samples: dict[tuple[str, int], list[tuple[float, float]]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    dirs: dict[tuple[str, int], Path] = field(default_factory=dict)

    def prepare(self) -> None:
        root = workdir("validate")
        schedule = idle_schedule()
        for n in self.sizes:
            jobs = [
                Job(f"job-{i:05d}", schedule, stamp_command(root / "starts.txt", f"job-{i:05d}"))
                for i in range(n)
            ]
            for runner in LOADERS:
                self.dirs[(runner, n)] = write_jobs(runner, root / f"{runner}-{n}", jobs)

    def argv(self, variant: str, n: int) -> list[str]:
        if variant.startswith("kron"):
            quiet = ["-q"] if variant == "kron -q" else []
            return [
                *venv_command("kron"),
                "validate",
                *quiet,
                "--jobs-dir",
                str(self.dirs[("kron", n)]),
            ]
        if variant == "yacron":
            return [*venv_command("yacron"), "-c", str(self.dirs[("yacron", n)]), "-v"]
        return [*venv_command("apscheduler"), str(self.dirs[("apscheduler", n)]), "--load-only"]

    def fillers(self) -> list[Filler]:
        """One filler per run, round-robin over the variants, so drifting load hits them alike."""
        out = []
        for n, runs in self.sizes.items():
            for _ in range(runs):
                for variant in VALIDATE_VARIANTS:
                    if (variant, n) in self.skip:
                        continue
                    out.append(
                        Filler(
                            f"validate {variant} {n}",
                            lambda v=variant, n=n: self.estimate(v, n),
                            lambda v=variant, n=n: self.run_once(v, n),
                        )
                    )
        return out

    def estimate(self, variant: str, n: int) -> float:
        done = self.samples.get((variant, n))
        return max(w for w, _ in done) * 1.3 + 0.5 if done else _GUESS_S[(variant, n)]

    def run_once(self, variant: str, n: int) -> None:
        result = timed(self.argv(variant, n), timeout_s=600)
        ok = result.returncode == 0
        if variant.startswith("kron") and f"{n} valid" not in result.stdout:
            ok = False
        if not ok:
            self.failures.append(
                f"{variant} on {n} files exited {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()[-300:]}"
            )
            return
        self.samples.setdefault((variant, n), []).append((result.wall_s, result.cpu_s))
        wall, cpu = result.wall_s, result.cpu_s
        say(f"validate {variant:12} {n:>6} files: {wall:.2f} s wall, {cpu:.2f} s CPU")

    def rows(self) -> list[Row]:
        rows = []
        for n, runs in self.sizes.items():

            def pick(variant: str, index: int, n: int = n) -> float | str | None:
                if (variant, n) in self.skip:
                    return "not run"
                done = self.samples.get((variant, n))
                return median([s[index] for s in done]) if done else None

            values = {
                "kron": pick("kron -q", 0),
                "yacron": pick("yacron", 0),
                "apscheduler": pick("apscheduler", 0),
            }
            target = "≤ 1 s" if n == 10000 else ""
            kron = values["kron"]
            met = kron <= 1.0 if isinstance(kron, float) and target else None
            where = f"load {n:,} files"
            rows.append(
                Row(
                    where,
                    f"wall s, median of {runs} (kron validate -q)",
                    values,
                    "s",
                    target=target,
                    met=met,
                )
            )
            rows.append(
                Row(where, "wall s, kron validate without -q", {"kron": pick("kron", 0)}, "s")
            )
            cpu = {
                "kron": pick("kron -q", 1),
                "yacron": pick("yacron", 1),
                "apscheduler": pick("apscheduler", 1),
            }
            rows.append(Row(where, "CPU s (user+sys), median", cpu, "s"))
        return rows


# -- 2. idle and 4. accuracy (side by side, one daemon per runner and workload) -----------------

IDLE_LEAD_S = 55.0  # the six daemons start this long before the first minute they measure


def run_idle_accuracy(*, idle: bool, accuracy: bool, quick: bool, first_slot: int) -> list[Row]:
    """Start the daemons now; first_slot is the first minute measured (accuracy, quick window)."""
    root = workdir("idle-accuracy")
    windows, window_s = (1, 30.0) if quick else (3, 60.0)
    minutes = 1 if quick else 3
    schedule = idle_schedule()
    daemons: dict[tuple[str, str], Daemon] = {}
    outs: dict[str, Path] = {}
    for runner in RUNNERS:
        if idle:
            folder = root / f"idle-{runner}"
            jobs = [
                Job(
                    f"job-{i:04d}",
                    schedule,
                    stamp_command(root / "idle-starts.txt", f"job-{i:04d}"),
                )
                for i in range(1000)
            ]
            write_jobs(runner, folder, jobs)
            daemons[("idle", runner)] = Daemon(
                f"{runner} idle",
                daemon_argv(runner, folder, venv_command(runner)),
                root / f"idle-{runner}.log",
            )
        if accuracy:
            folder = root / f"accuracy-{runner}"
            outs[runner] = root / f"accuracy-{runner}.txt"
            write_jobs(
                runner,
                folder,
                [Job("every-minute", "* * * * *", stamp_command(outs[runner], runner))],
            )
            daemons[("accuracy", runner)] = Daemon(
                f"{runner} accuracy",
                daemon_argv(runner, folder, venv_command(runner)),
                root / f"accuracy-{runner}.log",
            )
    try:
        for daemon in daemons.values():
            daemon.start()
        settle_deadline = time.time() + 180
        for daemon in daemons.values():
            daemon.wait_settled(deadline=settle_deadline)
        # Every window holds a minute boundary: yacron re-reads its whole config then, and the
        # accuracy jobs fire then. A quick window of 30 s starts 25 s before first_slot.
        t0 = first_slot - 25 if quick else time.time() + 0.5
        if t0 < time.time() + 0.5:
            t0 = time.time() + 0.5
            first_slot = next_boundary(60, not_before=t0 + (25 if quick else 2))
            t0 = first_slot - 25 if quick else t0
        sleep_until(t0)
        slots = (
            [next_boundary(60, not_before=t0 + 2) + 60 * k for k in range(minutes)]
            if accuracy
            else []
        )
        say(
            f"idle/accuracy: {len(daemons)} daemons settled; measuring {windows} x {window_s:.0f} s"
            + (f", accuracy slots {[_hms(s) for s in slots]}" if slots else "")
        )
        idle_cpu: dict[str, list[float]] = {r: [] for r in RUNNERS}
        idle_rss: dict[str, list[int]] = {r: [] for r in RUNNERS}
        idle_daemons = {r: d for (w, r), d in daemons.items() if w == "idle"}
        for k in range(windows):
            start_cpu = {r: d.cpu_s() for r, d in idle_daemons.items()}
            end = t0 + window_s * (k + 1)
            while time.time() < end:
                for d in idle_daemons.values():
                    d.memory_kb()
                time.sleep(min(1.0, max(0.0, end - time.time())))
            for r, d in idle_daemons.items():
                idle_cpu[r].append(d.cpu_s() - start_cpu[r])
                idle_rss[r].append(d.memory_kb()[0])
            cpu_now = {r: round(v[-1], 3) for r, v in idle_cpu.items() if v}
            say(f"idle window {k + 1}: CPU s {cpu_now}")
        if slots:
            wait_for(
                lambda: all(_starts_in(outs[r], slots[-1], 60) for r in RUNNERS),
                deadline=slots[-1] + 20,
                poll_s=0.2,
            )
    finally:
        for daemon in daemons.values():
            daemon.stop()
    rows: list[Row] = []
    if idle:
        cpu = {r: median(v) for r, v in idle_cpu.items()}
        rss = {r: median(v) / 1024 for r, v in idle_rss.items()}
        hwm = {r: idle_daemons[r].hwm_kb / 1024 for r in RUNNERS}
        what = f"idle, 1,000 jobs none due ({windows} x {window_s:.0f} s" + (
            ")" if windows == 1 else ", median)"
        )
        rows.append(
            Row(
                what,
                f"CPU s per {window_s:.0f} s window",
                cpu,
                "s",
                digits=3,
                target="≈ 0 (≤ 0.05 s a minute)",
                met=cpu["kron"] * 60 / window_s <= 0.05,
            )
        )
        rows.append(
            Row(
                what,
                "RSS MB (VmRSS at window end)",
                rss,
                "MB",
                digits=1,
                target="≤ 60 MB",
                met=rss["kron"] <= 60,
            ).ratio_check(0.85, "APScheduler", peer="apscheduler")
        )
        rows.append(Row(what, "peak RSS MB (VmHWM)", hwm, "MB", digits=1))
        for d in idle_daemons.values():
            rows[-1].notes.extend(f"{d.name}: {n}" for n in d.notes)
    if accuracy:
        lat = {r: [] for r in RUNNERS}
        counts = {}
        for r in RUNNERS:
            starts = read_starts(outs[r])
            for slot in slots:
                got = [ts - slot for ts, _ in starts if slot - 1 <= ts < slot + 59]
                lat[r].extend(got)
                counts.setdefault(r, []).append(len(got))
        what = f"accuracy, `* * * * *` over {minutes} min"
        med = {r: median(v) * 1000 if v else None for r, v in lat.items()}
        rows.append(
            Row(
                what,
                "start after the minute, median ms",
                med,
                "ms",
                digits=1,
                target="≤ 5 ms",
                met=None if med["kron"] is None else med["kron"] <= 5,
            )
        )
        rows.append(
            Row(
                what,
                "worst ms",
                {r: max(v) * 1000 if v else None for r, v in lat.items()},
                "ms",
                digits=1,
            )
        )
        rows.append(
            Row(
                what,
                "starts per minute",
                {r: "/".join(map(str, c)) for r, c in counts.items()},
                ratio=False,
            )
        )
    return rows


def _starts_in(path: Path, slot: float, span_s: float) -> bool:
    return any(slot - 1 <= ts < slot + span_s for ts, _ in read_starts(path))


def _hms(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(epoch))


# -- 3. burst: 500 jobs on one minute -----------------------------------------------------------

BURST_JOBS = 500
BURST_LEAD_S = 10.0  # the runner starts this long before its slot


@dataclass
class BurstResult:
    runner: str
    latencies: list[float]
    unique: int
    total: int
    early: int


@dataclass
class Burst:
    """Runs of 500 jobs due on one minute; each run has the machine's minute to itself."""

    results: list[BurstResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def run(self, runners: list[str], slot: int) -> None:
        root = workdir("burst")
        when = dt.datetime.fromtimestamp(slot, dt.UTC)
        schedule = f"{when.minute} {when.hour} * * *"
        daemons, outs = {}, {}
        for runner in runners:
            outs[runner] = root / f"{runner}.txt"
            jobs = [
                Job(f"burst-{i:03d}", schedule, stamp_command(outs[runner], f"burst-{i:03d}"))
                for i in range(BURST_JOBS)
            ]
            folder = write_jobs(runner, root / runner, jobs)
            daemons[runner] = Daemon(
                f"{runner} burst",
                daemon_argv(runner, folder, venv_command(runner)),
                root / f"{runner}.log",
            )
        say(f"burst: {', '.join(runners)} at {_hms(slot)} UTC")
        try:
            for d in daemons.values():
                d.start()
            for d in daemons.values():
                d.wait_settled(deadline=slot - 1)
            if time.time() > slot:
                self.notes.append(
                    f"{', '.join(runners)}: start-up ran past the slot at {_hms(slot)}"
                )

            def all_started() -> bool:
                return all(len({n for _, n in read_starts(outs[r])}) >= BURST_JOBS for r in runners)

            sleep_until(slot)
            if not wait_for(all_started, deadline=slot + 60, poll_s=0.2):
                self.notes.append(f"burst at {_hms(slot)}: not every job started within 60 s")
            time.sleep(2.0)  # a second fire of any job would show up here
        finally:
            for d in daemons.values():
                d.stop()
                self.notes.extend(f"{d.name}: {n}" for n in d.notes)
        for runner in runners:
            starts = [(ts, n) for ts, n in read_starts(outs[runner]) if ts >= slot - 30]
            result = BurstResult(
                runner,
                [ts - slot for ts, _ in starts if ts >= slot],
                unique=len({n for _, n in starts}),
                total=len(starts),
                early=sum(1 for ts, _ in starts if ts < slot),
            )
            self.results.append(result)
            say(
                f"burst {runner}: {result.unique}/{result.total} started, p50 "
                f"{_ms(percentile(result.latencies, 50))}, "
                f"max {_ms(max(result.latencies, default=math.nan))}"
            )

    def rows(self, floor_ms: float | None = None) -> list[Row]:
        per: dict[str, list[BurstResult]] = {
            r: [x for x in self.results if x.runner == r] for r in RUNNERS
        }
        runs = max(len(v) for v in per.values())

        def fig(fn: Callable[[BurstResult], float]) -> dict[str, float | None]:
            return {r: median([fn(x) * 1000 for x in v]) if v else None for r, v in per.items()}

        what = (
            f"burst, {BURST_JOBS} jobs on one minute ({runs} run{'s' if runs > 1 else ''}, median)"
        )
        worst = fig(lambda x: max(x.latencies, default=math.nan))
        rows = [
            Row(
                what,
                "first start (min) ms",
                fig(lambda x: min(x.latencies, default=math.nan)),
                "ms",
                digits=1,
            ),
            Row(
                what,
                "start after the minute, p50 ms",
                fig(lambda x: percentile(x.latencies, 50)),
                "ms",
                digits=1,
            ),
            Row(what, "p99 ms", fig(lambda x: percentile(x.latencies, 99)), "ms", digits=1),
            Row(
                what,
                "last start (max) ms",
                worst,
                "ms",
                digits=1,
                target="≤ 400 ms",
                met=None if worst["kron"] is None else worst["kron"] <= 400 and _exact(per["kron"]),
            )
            .ratio_check(1.0, "APScheduler", peer="apscheduler")
            .ratio_check(1.3, "the posix_spawn burst floor", floor_ms),
            Row(
                what,
                "distinct jobs started / starts, per run",
                {r: ", ".join(f"{x.unique}/{x.total}" for x in v) for r, v in per.items()},
                ratio=False,
                target=f"{BURST_JOBS}/{BURST_JOBS}",
                met=_exact(per["kron"]) if per["kron"] else None,
            ),
        ]
        rows[-1].notes.extend(self.notes)
        return rows


def _exact(results: list[BurstResult]) -> bool:
    return all(x.unique == BURST_JOBS and x.total == BURST_JOBS and not x.early for x in results)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# -- 5. reload (kron only) ----------------------------------------------------------------------

RELOAD_JOBS = 10000


@dataclass
class Trial:
    lead_s: float | None
    edit: float
    first_start: float | None

    @property
    def caught_first_slot(self) -> bool:
        """Did the job fire for the first whole second after the edit?"""
        return (
            self.first_start is not None
            and math.floor(self.first_start) == math.floor(self.edit) + 1
        )


def _atomic_write(path: Path, text: str) -> None:
    """Write beside the file under a hidden name (never a job), then rename over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


RELOAD_LEADS_S = (0.3, 0.1, 0.05, 0.03, None)  # None: edit at a random moment


def run_reload(*, quick: bool) -> list[Row]:
    root = workdir("reload")
    jobs_dir, out = root / "jobs", root / "starts.txt"
    schedule = idle_schedule()
    idle = [
        Job(f"job-{i:05d}", schedule, stamp_command(out, f"job-{i:05d}"))
        for i in range(RELOAD_JOBS)
    ]
    write_jobs("kron", jobs_dir, idle)
    leads = list(RELOAD_LEADS_S) * (2 if quick else 6)
    trials: list[Trial] = []
    available = True
    rng = random.Random(20)
    argv = daemon_argv("kron", jobs_dir, venv_command("kron"))
    # Start-up: exec to READY=1 (sd_notify, sent once the jobs are loaded and armed), as
    # systemd would see it; two starts on their own, the third is the one the edits use.
    ready: list[float | None] = []
    for k in range(2):
        with Daemon(f"kron start {k + 1}", argv, root / "kron.log", notify=True) as starting:
            ready.append(starting.ready_after(deadline=time.time() + 60))
    daemon = Daemon("kron reload", argv, root / "kron.log", notify=True)
    with daemon:
        ready.append(daemon.ready_after(deadline=time.time() + 60))
        say(f"reload: exec to READY=1 with {RELOAD_JOBS:,} jobs: {ready} s")
        daemon.wait_settled(deadline=time.time() + 180)
        took = time.time() - daemon.started
        say(f"reload: kron settled with {RELOAD_JOBS:,} jobs after {took:.1f} s")
        for i, lead in enumerate(leads):
            name = f"trial-{i:02d}"
            if lead is None:
                write_at = time.time() + rng.uniform(0.0, 1.0)
            else:
                write_at = math.floor(time.time()) + 1 - lead
                if write_at < time.time() + 0.05:
                    write_at += 1
            sleep_until(write_at)
            _atomic_write(
                jobs_dir / f"{idle[i].name}.toml",
                kron_file(Job(name, "* * * * * *", stamp_command(out, name))),
            )
            edit = time.time()

            def first() -> float | None:
                return min((ts for ts, n in read_starts(out) if n == name), default=None)  # noqa: B023

            wait_for(
                lambda: first() is not None, deadline=edit + (10 if i == 0 else 5), poll_s=0.01
            )
            trials.append(Trial(lead, edit, first()))
            _atomic_write(jobs_dir / f"{idle[i].name}.toml", kron_file(idle[i]))
            if trials[-1].first_start is None and i == 0:
                available = False
                say("reload: the edited job did not start within 10 s: hot reload not available")
                break
            time.sleep(1.0)  # let the revert land before the next edit
    what = f"reload, {RELOAD_JOBS:,} jobs loaded, one edited to `* * * * * *` (kron only)"
    if not available:
        na = "n/a (hot reload not available)"
        return [
            Row(
                what,
                "edit → first start of the edited job",
                {"kron": na},
                ratio=False,
                target="median ≤ 100 ms, worst ≤ 300 ms",
                met=False,
            )
        ]
    random_moment = [t for t in trials if t.lead_s is None]
    delays = [t.first_start - t.edit for t in random_moment if t.first_start is not None]

    def caught(lead: float) -> list[bool]:
        return [t.caught_first_slot for t in trials if t.lead_s == lead]

    def share(flags: list[bool]) -> dict[str, float | str | None]:
        return {"kron": f"{sum(flags)}/{len(flags)}"}

    started = [r for r in ready if r is not None]
    rows = [
        Row(
            f"start-up, {RELOAD_JOBS:,} jobs (kron only)",
            "exec → READY=1 (sd_notify: loaded and armed), s, median of 3",
            {"kron": median(started) if len(started) == len(ready) else None},
            "s",
            digits=2,
            ratio=False,
            target="≤ 1.5 s",
            met=len(started) == len(ready) and median(started) <= 1.5,
        ),
        Row(
            what,
            "edited 300 ms before a whole second: fired on that second",
            share(caught(0.3)),
            ratio=False,
            target="worst ≤ 300 ms: all",
            met=all(caught(0.3)),
        ),
        Row(
            what,
            "edited 100 ms before: fired on that second",
            share(caught(0.1)),
            ratio=False,
            target="median ≤ 100 ms: at least half",
            met=sum(caught(0.1)) * 2 >= len(caught(0.1)),
        ),
        Row(what, "edited 50 ms before: fired on that second", share(caught(0.05)), ratio=False),
        Row(what, "edited 30 ms before: fired on that second", share(caught(0.03)), ratio=False),
        Row(
            what,
            "edit at a random moment → first start, median s (nothing subtracted: includes "
            "the 0-1 s wait for the next whole second)",
            {"kron": median(delays) if delays else None},
            "s",
            digits=3,
            ratio=False,
        ),
        Row(
            what,
            "edit at a random moment → first start, worst s",
            {"kron": max(delays) if delays else None},
            "s",
            digits=3,
            ratio=False,
        ),
    ]
    missing = sum(1 for t in trials if t.first_start is None)
    if missing:
        rows[0].notes.append(f"{missing} of {len(trials)} edited jobs never started within 5 s")
    return rows


# -- 6. seconds-level schedules (kron only) -----------------------------------------------------

SECONDS_JOBS = 500


def run_seconds(*, quick: bool) -> list[Row]:
    root = workdir("seconds")
    out = root / "starts.txt"
    jobs = [
        Job(f"sec-{i:03d}", "*/10 * * * * *", stamp_command(out, f"sec-{i:03d}"))
        for i in range(SECONDS_JOBS)
    ]
    folder = write_jobs("kron", root / "jobs", jobs)
    n_slots = 2 if quick else 3
    daemon = Daemon(
        "kron seconds", daemon_argv("kron", folder, venv_command("kron")), root / "kron.log"
    )
    with daemon:
        daemon.wait_settled(deadline=time.time() + 60)
        first = next_boundary(10, not_before=time.time() + 1)
        slots = [first + 10 * k for k in range(n_slots)]
        say(f"seconds: 500 jobs on */10 s, measuring slots {[_hms(s) for s in slots]}")
        for slot in slots:
            sleep_until(slot)
            wait_for(
                lambda s=slot: (
                    len({n for ts, n in read_starts(out) if s <= ts < s + 10}) >= SECONDS_JOBS
                ),
                deadline=slot + 9.5,
                poll_s=0.2,
            )
        time.sleep(1.0)
    starts = read_starts(out)
    per_slot = []
    for slot in slots:
        got = [(ts - slot, n) for ts, n in starts if slot <= ts < slot + 10]
        per_slot.append(([lat for lat, _ in got], Counter(n for _, n in got)))
    what = f"{SECONDS_JOBS} jobs on `*/10 * * * * *` ({n_slots} slots, kron only)"
    lat_all = [lats for lats, _ in per_slot]
    worst = max((max(lats, default=math.inf) for lats in lat_all), default=math.inf) * 1000
    exact = all(len(c) == SECONDS_JOBS and sum(c.values()) == SECONDS_JOBS for _, c in per_slot)
    return [
        Row(
            what,
            "first start after the slot, ms (median over slots)",
            {"kron": median([min(lats, default=math.nan) * 1000 for lats in lat_all])},
            "ms",
            digits=1,
            ratio=False,
        ),
        Row(
            what,
            "start after the slot, p50 ms (median over slots)",
            {"kron": median([percentile(lats, 50) * 1000 for lats in lat_all])},
            "ms",
            digits=1,
            ratio=False,
        ),
        Row(
            what,
            "p99 ms (median over slots)",
            {"kron": median([percentile(lats, 99) * 1000 for lats in lat_all])},
            "ms",
            digits=1,
            ratio=False,
        ),
        Row(what, "all started after, worst slot ms", {"kron": worst}, "ms", digits=1, ratio=False),
        Row(
            what,
            "distinct jobs / starts, per slot",
            {"kron": ", ".join(f"{len(c)}/{sum(c.values())}" for _, c in per_slot)},
            ratio=False,
            target=f"{SECONDS_JOBS}/{SECONDS_JOBS}",
            met=exact,
        ),
    ]
