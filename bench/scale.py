"""Start-up with 10,000 jobs (every runner; kron cold and warm) and the scale curve (1,000,
10,000 and 100,000 jobs: load time, RSS, idle CPU, and for kron a reload of one file).

"Armed" is when a runner has every job loaded with its next fire time:
- kron and the APScheduler daemon say so: READY=1 on `$NOTIFY_SOCKET` (sd_notify), sent once the
  jobs are loaded and armed (kron) or once `start()` has put every job in its store with its
  first fire time (bench/apscheduler_daemon.py);
- cron and yacron say nothing, so for them it is the last moment the process (its threads and
  children) used a CPU before a full second without any, polled every 10 ms from
  /proc/PID/task/*/schedstat. That rule is also given for every runner, as a cross-check.
"""

from __future__ import annotations

import itertools
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    RUNNERS,
    Daemon,
    median,
    read_starts,
    say,
    sleep_until,
    stamp_command,
    venv_command,
    wait_for,
    workdir,
)
from jobfiles import Job, daemon_argv, kron_file, write_jobs
from report import Row

STARTUP_JOBS = 10000
# yacron's daemon takes about 10 CPU s to start on 1,000 jobs here (`yacron -v` 1.8 s), so
# 10,000 take minutes; it is watched this long, then measured as it is.
YACRON_WATCH_S = 150.0
SIZES = (1000, 10000, 100000)
YACRON_MAX = 10000  # yacron re-reads every file every minute: 16 CPU s a minute at 10,000
START_BUDGET_S = 90.0  # a peer whose start at a size is predicted to take longer is not run
LINEAR = 11.0  # growth per 10x jobs judged linear or better: 10x, and 10 % for noise
QUIET_S = 1.0  # "armed" for a runner with no signal: its last CPU use before this long without
SIGNALS = frozenset({"kron", "apscheduler"})  # runners that send READY=1
ORDER = ("cron", "apscheduler", "kron", "yacron")  # yacron last: its minute re-read is loud


def idle_schedule() -> str:
    from workloads import idle_schedule as schedule

    return schedule()


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


def _jobs(n: int, out: Path) -> list[Job]:
    schedule = idle_schedule()
    return [Job(f"job-{i:06d}", schedule, stamp_command(out, f"job-{i:06d}")) for i in range(n)]


def _fmt_s(value: float | None) -> str:
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
        jobs = _jobs(STARTUP_JOBS, root / "starts.txt")
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
                f"startup kron {STARTUP_JOBS:,} jobs: cold READY {_fmt_s(cold.ready_s)} s, "
                f"warm {_fmt_s(warm.ready_s)} s"
            )
            return
        timeout = YACRON_WATCH_S if runner == "yacron" else 180
        daemon, got = start(runner, folder, log, timeout_s=timeout)
        daemon.stop()
        self.notes.extend(f"{runner}: {note}" for note in daemon.notes)
        self.starts.setdefault(runner, []).append(got)
        say(f"startup {runner} {STARTUP_JOBS:,} jobs: armed {_fmt_s(got.armed(runner))} s")

    def rows(self) -> list[Row]:
        runs = max((len(v) for v in self.starts.values()), default=0)
        what = f"start-up, {STARTUP_JOBS:,} jobs (median of {runs}; yacron once)"

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
                "cron and yacron: last CPU use before 1 s without)",
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
                "exec → last CPU use before 1 s without, s (one rule for all; kron cold)",
                quiet,
                "s",
                digits=3,
            ),
        ]
        rows[0].notes.extend(self.notes)
        return rows


# -- scale: 1,000, 10,000 and 100,000 jobs --------------------------------------------------------


@dataclass
class SizeResult:
    load_s: dict[str, float | None] = field(default_factory=dict)
    warm_s: float | None = None
    rss_kb: dict[str, int] = field(default_factory=dict)
    cpu_per_min: dict[str, float] = field(default_factory=dict)
    reload_s: list[float] = field(default_factory=list)
    reload_cpu_s: list[float] = field(default_factory=list)
    reload_missed: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    skipped_load: dict[str, str] = field(default_factory=dict)  # never quiet: what it did


@dataclass
class Scale:
    window_s: float
    edits: int
    sizes: tuple[int, ...] = SIZES
    results: dict[int, SizeResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def estimate(self, n: int) -> float:
        """Seconds one size takes: files, starts, the idle window, the edits."""
        per_1000 = {"kron": 0.3, "apscheduler": 0.6, "cron": 0.05, "yacron": 10.0}
        starts = sum(
            min(per_1000[r] * n / 1000, YACRON_WATCH_S) * (2 if r == "kron" else 1)
            for r in RUNNERS
            if r != "yacron" or n <= YACRON_MAX
        )
        return 15 + n / 4000 + starts + self.window_s + 3 * self.edits

    def skip_reason(self, runner: str, n: int) -> str | None:
        if runner == "yacron" and n > YACRON_MAX:
            return f"not run: yacron only up to {YACRON_MAX:,} jobs"
        smaller = [m for m in self.results if m < n and self.results[m].load_s.get(runner)]
        if runner == "kron" or not smaller or n <= YACRON_MAX:
            return None  # every runner runs up to 10,000 jobs: the figures the targets need
        m = max(smaller)
        predicted = self.results[m].load_s[runner] * n / m  # type: ignore[operator]
        if predicted > START_BUDGET_S:
            return f"not run: would take ≈ {predicted / 60:.1f} min to start"
        return None

    def run_size(self, n: int) -> None:
        root = workdir(f"scale-{n}")
        result = SizeResult()
        self.results[n] = result
        runners = []
        for runner in ORDER:
            reason = self.skip_reason(runner, n)
            if reason:
                result.skipped[runner] = reason
            else:
                runners.append(runner)
        out = root / "starts.txt"
        jobs = _jobs(n, out)
        began = time.time()
        dirs = {r: write_jobs(r, root / r, jobs) for r in runners}
        say(f"scale {n:,}: job files written in {time.time() - began:.1f} s for {runners}")
        daemons: dict[str, Daemon] = {}
        timeout = 60 + n / 1000 * 3
        try:
            for runner in runners:
                log = root / f"{runner}.log"
                if runner == "kron":
                    daemon, cold, warm = kron_cold_warm(dirs[runner], log, timeout_s=timeout)
                    result.load_s[runner], result.warm_s = cold.ready_s, warm.ready_s
                else:
                    watch = YACRON_WATCH_S if runner == "yacron" else timeout
                    daemon, got = start(runner, dirs[runner], log, timeout_s=watch)
                    result.load_s[runner] = got.armed(runner)
                    if got.armed(runner) is None and got.watched_s:
                        result.skipped_load[runner] = armed_cell(runner, [got])  # type: ignore[assignment]
                daemons[runner] = daemon
                say(f"scale {n:,}: {runner} armed in {_fmt_s(result.load_s[runner])} s")
            before = {r: d.cpu_s() for r, d in daemons.items()}
            end = time.time() + self.window_s
            sleep_until(end)
            for r, d in daemons.items():
                result.cpu_per_min[r] = (d.cpu_s() - before[r]) * 60 / self.window_s
                result.rss_kb[r] = d.memory_kb()[0]
            say(
                f"scale {n:,}: idle CPU s a minute "
                f"{ {r: round(v, 3) for r, v in result.cpu_per_min.items()} }, RSS MB "
                f"{ {r: round(v / 1024, 1) for r, v in result.rss_kb.items()} }"
            )
            for r in [r for r in daemons if r != "kron"]:
                daemons.pop(r).stop()
            if "kron" in daemons:
                self._reloads(daemons["kron"], dirs["kron"], jobs, out, result)
        finally:
            for d in daemons.values():
                d.stop()
                self.notes.extend(f"{n:,} jobs, {d.name}: {note}" for note in d.notes)
            shutil.rmtree(root, ignore_errors=True)  # 100,000 files a runner: free them now

    def _reloads(
        self, daemon: Daemon, folder: Path, jobs: list[Job], out: Path, result: SizeResult
    ) -> None:
        """Edit one file at a random moment to `* * * * * *`: edit → first start, and CPU."""
        rng = random.Random(15)
        for i in range(self.edits):
            job = jobs[i]
            name = f"edit-{i}"
            sleep_until(time.time() + rng.uniform(0.0, 1.0))
            cpu = daemon.cpu_ns()
            path = folder / f"{job.name}.toml"
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(kron_file(Job(name, "* * * * * *", stamp_command(out, name))))
            tmp.replace(path)
            edit = time.time()

            def first(name: str = name) -> float | None:
                return min((ts for ts, n in read_starts(out) if n == name), default=None)

            wait_for(lambda: first() is not None, deadline=edit + 10, poll_s=0.01)
            got = first()
            if got is None:
                result.reload_missed += 1
            else:
                result.reload_s.append(got - edit)
                result.reload_cpu_s.append((daemon.cpu_ns() - cpu) / 1e9)
            tmp.write_text(kron_file(job))
            tmp.replace(path)
            time.sleep(1.5)  # the revert lands before the next edit

    # -- rows -------------------------------------------------------------------------------------

    def rows(self) -> list[Row]:
        rows: list[Row] = []
        for n, res in sorted(self.results.items()):
            what = f"scale, {n:,} jobs none due"

            def cells(values: dict[str, float], scale: float = 1.0, res=res) -> dict:  # type: ignore[no-untyped-def]
                out: dict[str, float | str | None] = {}
                for r in RUNNERS:
                    if r in res.skipped:
                        out[r] = res.skipped[r]
                    elif r in values and values[r] is not None:
                        out[r] = values[r] * scale
                    else:
                        out[r] = None
                return out

            cpu = cells(res.cpu_per_min)
            kron_cpu = cpu.get("kron")
            rows += [
                Row(
                    what,
                    "start → all jobs armed, s (as start-up; kron cold)",
                    {**cells(res.load_s), **res.skipped_load},
                    "s",
                    digits=3,
                ),
                Row(
                    what,
                    "kron warm start → READY=1, s",
                    {"kron": res.warm_s},
                    "s",
                    digits=3,
                    ratio=False,
                ),
                Row(
                    what,
                    "RSS MB after start-up (VmRSS at the idle window's end)",
                    cells(res.rss_kb, 1 / 1024),
                    "MB",
                    digits=1,
                ),
                Row(
                    what,
                    f"idle CPU s a minute (one {self.window_s:.0f} s window)",
                    cpu,
                    "s",
                    digits=3,
                    target="≈ 0 (≤ 0.05 s a minute)" if n == max(self.sizes) else "",
                    met=(isinstance(kron_cpu, float) and kron_cpu <= 0.05)
                    if n == max(self.sizes)
                    else None,
                ),
                Row(
                    what,
                    f"kron reload: edit one file → first start, median s of "
                    f"{len(res.reload_s)} edits at random moments (includes the 0-1 s wait "
                    "for the next whole second)",
                    {"kron": median(res.reload_s) if res.reload_s else None},
                    "s",
                    digits=3,
                    ratio=False,
                ),
                Row(
                    what,
                    "kron reload: daemon CPU s from the edit to the first start, median",
                    {"kron": median(res.reload_cpu_s) if res.reload_cpu_s else None},
                    "s",
                    digits=3,
                    ratio=False,
                ),
            ]
            if res.reload_missed:
                rows[-2].notes.append(
                    f"{n:,} jobs: {res.reload_missed} edited job(s) never started within 10 s"
                )
        rows += self._growth_rows()
        if rows:
            rows[0].notes.extend(self.notes)
        return rows

    def _series(self, figure: str) -> dict[str, list[float | None]]:
        """Per runner, the figure at each size, in size order (None where not measured)."""
        out: dict[str, list[float | None]] = {}
        for r in RUNNERS:
            values: list[float | None] = []
            for n in self.sizes:
                res = self.results.get(n)
                if res is None or r in res.skipped:
                    values.append(None)
                elif figure == "load":
                    values.append(res.load_s.get(r))
                elif figure == "warm":
                    values.append(res.warm_s if r == "kron" else None)
                elif figure == "rss":
                    kb = res.rss_kb.get(r)
                    values.append(kb / 1024 if kb else None)
                elif figure == "cpu":
                    values.append(res.cpu_per_min.get(r))
                elif figure == "reload":
                    values.append(median(res.reload_s) if r == "kron" and res.reload_s else None)
                elif figure == "reload cpu":
                    ok = r == "kron" and res.reload_cpu_s
                    values.append(median(res.reload_cpu_s) if ok else None)
            out[r] = values
        return out

    def _growth_rows(self) -> list[Row]:
        what = (
            "scale growth per 10x jobs (10k ÷ 1k, 100k ÷ 10k; linear or better: each ≤ 10x, "
            "with 10 % for noise)"
        )
        # Below these a figure is noise: growth from "nothing" to "nothing" is no growth.
        floors = {
            "load": 0.02,
            "warm": 0.02,
            "rss": 1.0,
            "cpu": 0.05,
            "reload": 0.05,
            "reload cpu": 0.005,
        }
        labels = {
            "load": "start → armed",
            "warm": "kron warm start",
            "rss": "RSS",
            "cpu": "idle CPU a minute",
            "reload": "kron reload, edit → first start",
            "reload cpu": "kron reload, daemon CPU",
        }
        rows = []
        for figure, label in labels.items():
            series = self._series(figure)
            cells: dict[str, float | str | None] = {}
            kron_ok: bool | None = None
            for r, values in series.items():
                steps = [_growth(a, b, floors[figure]) for a, b in itertools.pairwise(values)]
                known = [g for g in steps if g is not None]
                if not known:
                    cells[r] = None
                    continue
                linear = all(g <= LINEAR for g in known)
                shown = [
                    "—"
                    if g is None
                    else "≈ 0 → ≈ 0"
                    if _both_below(a, b, floors[figure])
                    else f"{g:.1f}x"
                    for g, (a, b) in zip(steps, itertools.pairwise(values), strict=True)
                ]
                cells[r] = ", ".join(shown) + (
                    ": linear or better" if linear else ": worse than linear"
                )
                if r == "kron":
                    kron_ok = linear
            rows.append(
                Row(what, label, cells, ratio=False, target="linear or better", met=kron_ok)
            )
        mem = {}
        for r in RUNNERS:
            small, big = self.results.get(1000), self.results.get(10000)
            if small and big and r in small.rss_kb and r in big.rss_kb:
                mem[r] = (big.rss_kb[r] - small.rss_kb[r]) / 9000
            elif big and r in big.skipped:
                mem[r] = big.skipped[r]
        kron_mem = mem.get("kron")
        rows.append(
            Row(
                what,
                "memory per extra job, KB: (RSS at 10,000 - RSS at 1,000) ÷ 9,000",
                mem or {"kron": None},
                "KB",
                digits=2,
                target="≤ 2 KB",
                met=kron_mem <= 2 if isinstance(kron_mem, float) else None,
            )
        )
        return rows


def _both_below(a: float | None, b: float | None, floor: float) -> bool:
    return a is not None and b is not None and a <= floor and b <= floor


def _growth(a: float | None, b: float | None, floor: float) -> float | None:
    """b ÷ a, each figure taken as at least `floor` (below it, a figure is noise)."""
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return None
    return max(b, floor) / max(a, floor)
