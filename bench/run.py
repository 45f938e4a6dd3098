"""kron beside yacron, APScheduler and Debian cron, measured from outside. See bench/README.md.

python bench/run.py [--quick] [--only WORKLOAD[,WORKLOAD...]] [--output FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from crond import ensure_cron
from harness import (
    REPO,
    RUNNERS,
    burst_floor_ms,
    command_floor_ms,
    ensure_venv,
    install_cleanup,
    loadavg,
    machine,
    next_boundary,
    say,
    sleep_until,
    stop_all,
    versions,
    workdir,
)
from report import NOTES_BEGIN, NOTES_END, Row, kept_notes, markdown_table, text_table
from scale import SIZES, Scale
from startup import Startup
from workloads import (
    BURST_LEAD_S,
    IDLE_LEAD_S,
    Burst,
    Filler,
    Validate,
    run_idle_accuracy,
    run_reload,
    run_seconds,
)

WORKLOADS = ("validate", "startup", "idle", "burst", "accuracy", "reload", "seconds", "scale")
NEEDS_CRON = {"startup", "idle", "burst", "accuracy", "scale"}
DOC = REPO / "docs" / "benchmarks.md"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer and shorter runs (≈ 15 min), for development"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="WORKLOAD",
        help=f"run only these workloads (repeat or comma-separate): {', '.join(WORKLOADS)}",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="where the Markdown page goes (default: docs/benchmarks.md for a full run of "
        "every workload, else bench/out/benchmarks-quick.md or -partial.md)",
    )
    args = parser.parse_args(argv)
    only = {w.strip() for item in args.only for w in item.split(",") if w.strip()}
    unknown = only - set(WORKLOADS)
    if unknown:
        parser.error(
            f"unknown workload(s): {', '.join(sorted(unknown))}; choose from {', '.join(WORKLOADS)}"
        )
    args.selected = [w for w in WORKLOADS if not only or w in only]
    if args.output is None:
        if args.quick:
            args.output = REPO / "bench" / "out" / "benchmarks-quick.md"
        elif only:
            args.output = REPO / "bench" / "out" / "benchmarks-partial.md"
        else:
            args.output = DOC
    return args


def run_fillers(fillers: list[Filler], until: float | None, failures: list[str]) -> None:
    """Run queued work, in order, while each piece is expected to end before `until`."""
    while fillers:
        index = next(
            (
                i
                for i, f in enumerate(fillers)
                if until is None or time.time() + f.estimate_s() <= until
            ),
            None,
        )
        if index is None:
            return
        filler = fillers.pop(index)
        guarded(filler.name, filler.run, failures)


def guarded(name: str, work: Callable[[], object], failures: list[str]) -> None:
    """Run one piece of work; a runner that crashes fails that piece, not the whole bench."""
    try:
        work()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        failures.append(f"{name}: {exc}")
        say(f"{name} failed: {exc}")
    finally:
        stop_all()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_cleanup()
    ensure_venv()
    if NEEDS_CRON & set(args.selected):
        ensure_cron()
    started = dt.datetime.now(dt.UTC)
    info = {"machine": machine(), "versions": versions(), "load_start": loadavg()}
    floor_median, floor_max = command_floor_ms(workdir("floor") / "starts.txt")
    info["floor"] = f"{floor_median:.1f} ms median, {floor_max:.1f} ms worst (20 starts)"
    burst_median = None
    if "burst" in args.selected:
        burst_median, burst_max = burst_floor_ms(workdir("floor") / "burst.txt")
        info["burst_floor"] = (
            f"last of 500 started {burst_median:.0f} ms after the slot (median of 3; "
            f"worst {burst_max:.0f} ms)"
        )
    say(
        f"workloads: {', '.join(args.selected)}{' (quick)' if args.quick else ''}; "
        f"versions {info['versions']}"
    )
    quick, selected = args.quick, set(args.selected)
    t_start = time.time()

    rows: dict[str, list[Row]] = {w: [] for w in WORKLOADS}
    fillers: list[Filler] = []
    validate = None
    if "validate" in selected:
        if quick:  # yacron alone takes half a minute or more on 10,000 files
            validate = Validate(sizes={1000: 3, 10000: 1}, skip=frozenset({("yacron", 10000)}))
        else:
            validate = Validate(sizes={1000: 5, 10000: 3})
        validate.prepare()
        fillers.extend(validate.fillers())
    startup = None
    if "startup" in selected:
        startup = Startup(runs=1 if quick else 3, yacron=not quick)
        startup.prepare()
        for runner, guess_s in startup.plan():
            fillers.append(
                Filler(
                    f"startup {runner}",
                    lambda g=guess_s: g,
                    lambda r=runner: startup.run_once(r),
                )
            )
    scale = None
    if "scale" in selected:
        # A minute holds exactly one of yacron's every-minute re-reads: never a shorter window.
        scale = Scale(window_s=60.0, edits=2 if quick else 3)
        for n in SIZES:
            fillers.append(
                Filler(
                    f"scale {n:,}",
                    lambda n=n: scale.estimate(n),
                    lambda n=n: scale.run_size(n),
                )
            )
    if "reload" in selected:
        fillers.append(
            Filler(
                "reload",
                lambda: 35.0 if quick else 45.0,
                lambda: rows["reload"].extend(run_reload(quick=quick)),
            )
        )
    if "seconds" in selected:
        fillers.append(
            Filler(
                "seconds",
                lambda: 30.0 if quick else 40.0,
                lambda: rows["seconds"].extend(run_seconds(quick=quick)),
            )
        )

    # Bursts need a minute boundary each, and the machine to themselves around it; so do the
    # idle and accuracy daemons. The other work fills the time between them. --quick puts the
    # four bursts on one shared minute.
    burst = Burst()
    tasks: list[tuple[str, float, Callable[[int], object]]] = []
    if "idle" in selected or "accuracy" in selected:
        tasks.append(
            (
                "idle/accuracy",
                IDLE_LEAD_S,
                lambda slot: rows["idle"].extend(
                    run_idle_accuracy(
                        idle="idle" in selected,
                        accuracy="accuracy" in selected,
                        quick=quick,
                        first_slot=slot,
                    )
                ),
            )
        )
    if "burst" in selected:
        for runners in [list(RUNNERS)] if quick else [[r] for _ in range(2) for r in RUNNERS]:
            tasks.append(
                (
                    f"burst {', '.join(runners)}",
                    BURST_LEAD_S,
                    lambda slot, runners=runners: burst.run(runners, slot),
                )
            )
    failures: list[str] = []
    try:
        for name, lead_s, task in tasks:
            slot = next_boundary(60, not_before=time.time() + lead_s + 1)
            run_fillers(fillers, until=slot - lead_s, failures=failures)
            if time.time() > slot - lead_s:
                slot = next_boundary(60, not_before=time.time() + lead_s + 1)
            sleep_until(slot - lead_s)
            guarded(name, lambda: task(slot), failures)  # noqa: B023
        run_fillers(fillers, until=None, failures=failures)
    finally:
        stop_all()
    if validate is not None:
        rows["validate"] = validate.rows()
        if validate.failures:
            rows["validate"][0].notes.extend(validate.failures)
    if burst.results:
        rows["burst"] = burst.rows(floor_ms=burst_median)
    if startup is not None:
        rows["startup"] = startup.rows()
    if scale is not None:
        rows["scale"] = scale.rows()
    # idle and accuracy share a run; split their rows back into the workload order.
    idle_rows = [r for r in rows["idle"] if r.workload.startswith("idle")]
    rows["accuracy"] = [r for r in rows["idle"] if r.workload.startswith("accuracy")]
    rows["idle"] = idle_rows
    ordered = [row for w in WORKLOADS for row in rows[w]]

    info["failures"] = failures
    info["load_end"] = loadavg()
    info["duration"] = f"{(time.time() - t_start) / 60:.1f} min"
    print(text_table(ordered))
    write_page(args.output, ordered, info, started=started, quick=quick, selected=args.selected)
    shown = args.output.relative_to(REPO) if args.output.is_relative_to(REPO) else args.output
    say(f"wrote {shown}")
    return 0


def write_page(
    path: Path,
    rows: list[Row],
    info: dict,
    *,
    started: dt.datetime,
    quick: bool,  # type: ignore[type-arg]
    selected: list[str],
) -> None:
    m, v = info["machine"], info["versions"]
    mode = "`--quick`" if quick else "full"
    if selected != list(WORKLOADS):
        mode += f", only {', '.join(selected)}"
    targets = [
        f"- {r.workload} — {r.figure}: kron {r.cell('kron')}{' ' + r.unit if r.unit else ''}; "
        f"{r.verdict()}"
        for r in rows
        if r.has_target()
    ]
    run_notes = [f"- {r.workload}: {n}" for r in rows for n in r.notes]
    run_notes += [f"- failed: {f}" for f in info["failures"]]
    notes = kept_notes(path) or "No notes yet.\n"
    page = f"""# Benchmarks: kron beside yacron, APScheduler and Debian cron

Produced by `python bench/run.py` ({mode} run, {info["duration"]}) on {started:%Y-%m-%d %H:%M} UTC.
Every figure below comes from that run; [what is measured](#what-is-measured) says how.

| machine | |
|---|---|
| CPUs (nproc) | {m["nproc"]} |
| CPU model | {m["cpu"]} |
| memory | {m["memory"]} |
| kernel | {m["kernel"]} |
| load average (1/5/15 min) at start | {info["load_start"]} |
| load average at end | {info["load_end"]} |
| job command start floor (below) | {info["floor"]} |
| burst floor (below) | {info.get("burst_floor", "not measured")} |

| software | version |
|---|---|
| Python | {v["python"]} |
| kron | {v["kron"]} |
| yacron | {v["yacron"]} |
| APScheduler | {v["apscheduler"]} |
| Debian cron | {v["cron"]} |

## Figures

{markdown_table(rows)}

Ratios are kron's figure divided by the peer's: below 1x kron is faster or smaller. Targets
given as a ratio (to a peer, or to the burst floor) are judged on the figures of this run.

## kron's targets

{chr(10).join(targets) if targets else "No target was measured in this run."}

## Notes

{NOTES_BEGIN}
{notes}{NOTES_END}
{("## Run notes" + chr(10) + chr(10) + chr(10).join(run_notes) + chr(10)) if run_notes else ""}
## What is measured

{WHAT_IS_MEASURED}
## How to reproduce

{HOW_TO_REPRODUCE}"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)


WHAT_IS_MEASURED = """\
Every runner gets the same jobs in its own format, one file per job, in a fresh temporary folder:
kron a TOML file with `timezone = "UTC"`, yacron a YAML file (`utc: true`, `concurrencyPolicy:
Forbid`), APScheduler a TOML file read by `bench/apscheduler_daemon.py` (a `CronTrigger` per file,
a pool of 20 threads, `misfire_grace_time=60`, `max_instances=1`, `coalesce=True`, the command
run by `subprocess.run`). Debian's cron, the C floor, gets them as one system crontab with a line
per job (cron's own form for many jobs; `%` escaped), and runs as `cron -f` in a mount namespace
of its own (`unshare --mount`) where temporary folders stand in for /etc/cron.d,
/var/spool/cron/crontabs, /etc/crontab and /run, so the machine's cron tables are never read or
touched. Cron forks a child per job (which runs the job's shell); its figures are those of the
daemon process, as for the others. Every job runs `echo $(date +%s.%N) NAME >> FILE` through
`/bin/sh -c`, so each start time is read by the job itself; no figure comes from a runner's own
log. CPU is utime + stime of the runner process from `/proc/PID/stat` (all its threads, not its
children), memory is VmRSS and VmHWM from `/proc/PID/status`. A daemon counts as started once two
0.5 s windows in a row cost it under 0.02 CPU s. Daemons stop with SIGTERM, then SIGKILL to the
process group after 15 s.

1. **load N files**: wall time from spawn to exit of `kron validate -q --jobs-dir DIR` (and
   without `-q`, which prints a line per job), `yacron -c DIR -v` (yacron's validate-only flag)
   and `apscheduler_daemon.py DIR --load-only` (parse every file, add every job, compute the first
   fire times, exit). CPU is user + sys of the child from `getrusage`. Runs go round-robin over
   the runners; the table gives the median. `--quick` skips yacron on 10,000 files (half a
   minute a run).
2. **idle**: 1,000 jobs due half a year from now. After start-up, the CPU seconds each daemon
   uses per window (60 s, three windows; 30 s and one window holding a minute boundary in
   `--quick`), and its VmRSS at the end of each window. yacron re-reads its whole config every
   minute, so a window must hold a minute boundary to be fair to it.
3. **burst**: 500 jobs on the same minute (`M H * * *`), the runner started 10 s before.
   Latency is each job's own start timestamp minus the minute; the last start is when all 500
   had started. The count is of distinct job names and of all starts up to 2 s after the last
   (no double fire, none missed). Each run has its minute to itself: two runs per runner, one
   runner at a time (in `--quick` all four share one minute, so those figures are rougher).
4. **accuracy**: one `* * * * *` job per runner, 3 minutes (1 in `--quick`); latency as above.
   The four accuracy daemons run side by side with the four idle daemons.
5. **reload** (kron only: yacron re-reads its config once a minute, the APScheduler daemon only
   at start): 10,000 jobs loaded, one file replaced (written under a hidden name, then renamed
   over the job file) by an every-second job (`* * * * * *`), then put back. *edit at a random
   moment → first start* is the time from the rename to the job's own first timestamp, with
   nothing subtracted: it includes the wait for the next whole second after the reload (0-1 s),
   so it cannot show a 100 ms reload by itself. The other edits are timed 300, 100, 50 or 30 ms
   before a whole second: a job that fires on that second was live within that time of the
   edit (6 edits each; 2 in `--quick`). If the first edited job does not start within 10 s, the
   row says `n/a (hot reload not available)`.
6. **seconds** (kron only): 500 jobs on `*/10 * * * * *`, 3 slots (2 in `--quick`): latency
   after each slot, the time until all 500 had started, and distinct/total starts per slot.
7. **start-up**: 10,000 jobs due half a year from now, every runner started alone, round-robin,
   3 times (once in `--quick`; yacron once, and not in `--quick`). *All jobs armed* is exec →
   `READY=1` on a `NOTIFY_SOCKET` the bench listens on for kron (sent once its jobs are loaded
   and armed) and for the APScheduler daemon (sent once `start()` has put every job in its store
   with its first fire time). Cron and yacron send nothing, so for them it is exec → the last
   moment the process (its threads and children, from `/proc/PID/task/*/schedstat`, polled every
   10 ms) used 1 ms or more of CPU in a poll, before a full second without; that rule is also
   given for every runner as a cross-check (for kron it includes writing its warm-start cache
   after READY=1). A runner that is never quiet for a second is reported as such after 150 s
   (yacron's daemon needs about 10 CPU s to start on 1,000 jobs, so minutes on 10,000). kron's
   figure is a *cold* start (its warm-start cache, `<records>/.kron/jobs.cache`, deleted first);
   its *warm* start is a second start of the same folder after the first one stopped cleanly
   with SIGTERM (kron writes the cache then).
8. **scale**: 1,000, 10,000 and 100,000 jobs none due. Each runner is started alone as in 7
   (kron cold, stopped, then warm), then all of them idle side by side for 60 s (also in
   `--quick`: a minute holds exactly one of yacron's every-minute re-reads): CPU seconds in
   that minute and VmRSS at its end. Then, the peers stopped,
   one of kron's files is replaced at a random moment by an every-second job and put back, 3
   times (2 in `--quick`): edit → the job's own first timestamp (nothing subtracted: it includes
   the wait for the next whole second), and the daemon's CPU from the edit to that start. yacron
   runs up to 10,000 jobs; APScheduler and cron at 100,000 only if their 10,000-job start,
   times ten, is under 90 s (else the cell says how long it would take). *Growth* is each
   figure at 10,000 divided by the one at 1,000, and at 100,000 by the one at 10,000; linear or
   better means each is at most 10x. Figures below a noise floor (0.02 s for start-up, 0.05 s
   a minute of idle CPU, 0.05 s for the reload delay, 5 ms of reload CPU, 1 MB) count as that
   floor, so nothing growing to nothing is not read as growth. *Memory per extra job* is (RSS
   at 10,000 jobs - RSS at 1,000) / 9,000.

Every start latency includes the start of the job command itself (`/bin/sh`, then `date`).
The *job command start floor* in the machine table measures that part alone: a bare Python loop
sleeps until a quarter second and starts the same command with `subprocess.run`, 20 times.
The *burst floor* does the same for the burst: at a whole second a bare loop starts the
command 500 times with `os.posix_spawn` (no pipes, process groups, records or scheduling), 3
times. On a 2-core machine the 500 commands' own start-up (about 1.6 ms of CPU each for `sh`
and `date`) competes with whoever starts them, so this is the least a burst can take here.

Every runner starts from compiled bytecode, as an installed one does: the bench compiles the
venv and kron's package first and clears `PYTHONDONTWRITEBYTECODE` for what it starts.
kron's start-up (workloads 5, 7 and 8) is timed from exec to the `READY=1` it sends systemd
(sd_notify) once its jobs are loaded and armed, read on a `NOTIFY_SOCKET` the bench listens on.

The machine is not reserved: other work on it shows up in the load average above, and in
wall-time figures more than in CPU figures.
"""

HOW_TO_REPRODUCE = """\
```console
$ python3 bench/run.py            # full run, ≈ 25 min; rewrites docs/benchmarks.md
$ python3 bench/run.py --quick    # ≈ 15 min; writes bench/out/benchmarks-quick.md
$ python3 bench/run.py --only burst,accuracy
$ python3 bench/run.py --only startup,scale
```

The first run creates `bench/.venv` with kron installed editable from this repository and
`bench/.venv-peers` with yacron 0.19 and APScheduler 3.11, and installs Debian's `cron` package
when it is missing (as root, with apt-get); see [bench/README.md](../bench/README.md).
"""


if __name__ == "__main__":
    sys.exit(main())
