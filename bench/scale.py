"""The scale curve: 1,000, 10,000 and 100,000 jobs none due. Load time (start → all jobs armed,
as bench/startup.py follows a start), RSS, idle CPU a minute, and for kron a reload of one file;
then how each figure grows per 10x jobs, and memory per extra job."""

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
    wait_for,
    workdir,
)
from jobfiles import Job, kron_file, write_jobs
from report import Row
from startup import (
    ORDER,
    YACRON_WATCH_S,
    armed_cell,
    fmt_s,
    idle_jobs,
    kron_cold_warm,
    start,
)

SIZES = (1000, 10000, 100000)
YACRON_MAX = 10000  # yacron's daemon takes minutes to start on 10,000 jobs here
START_BUDGET_S = 90.0  # a peer whose start at a size is predicted to take longer is not run
LINEAR = 11.0  # growth per 10x jobs judged linear or better: 10x, and 10 % for noise


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
        jobs = idle_jobs(n, out)
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
                say(f"scale {n:,}: {runner} armed in {fmt_s(result.load_s[runner])} s")
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
