"""kill -9 of a real daemon at random moments, over and over, with jobs of every overlap and
catch-up policy and with retries in flight: no slot runs twice, `forbid` and `replace` never
overlap, no slot passes without a record, and every started run gets its end.

The jobs write a side file of their own (start and end of each run, from inside the run), so
the check does not rest on kron's records alone; `kron check-records` checks the records.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import run_cli
from .harness import DEADLINE_S, read_records, write_job

TRIALS = int(os.environ.get("KRON_CRASH_TRIALS", "30"))
SEED = int(os.environ.get("KRON_CRASH_SEED", "18"))

# Each run notes its start and end in its job's side file. The TERM trap is set first, so a run
# stopped at any point after its start line also writes its end; `sleep & wait` lets the trap
# run at once. bash, for EPOCHREALTIME.
RUN = """
trap 'echo "end $KRON_RUN_ID $EPOCHREALTIME" >> {side}; exit 143' TERM
echo "start $KRON_RUN_ID $KRON_SLOT $KRON_ATTEMPT $EPOCHREALTIME" >> {side}
sleep {seconds} & wait $!
echo "end $KRON_RUN_ID $EPOCHREALTIME" >> {side}
{then}
"""

JOBS = {
    # name: (schedule, more settings, seconds, what the run does after its sleep)
    "forbid": ("* * * * * *", "", 1.3, "exit 0"),
    "allow": ("* * * * * *", 'concurrency = "allow"\n', 1.6, "exit 0"),
    "replace": ("*/2 * * * * *", 'concurrency = "replace"\n', 5, "exit 0"),
    "catchup-all": ("* * * * * *", 'catchup = "all"\ncatchup_max = 4\n', 0.2, "exit 0"),
    "catchup-last": ("*/2 * * * * *", 'catchup = "last"\n', 0.2, "exit 0"),
    "retry": (
        "*/4 * * * * *",
        '[retry]\nattempts = 3\nbackoff = "fixed"\ndelay = "700ms"\n',
        0.1,
        '[ "$KRON_ATTEMPT" -ge 3 ] || exit 1',
    ),
}
EXCLUSIVE = ("forbid", "replace", "retry")  # at most one run alive at a time


@dataclass
class SideRun:
    run_id: str
    slot: str
    attempt: int
    start: float
    end: float | None = None


def write_jobs(jobs_dir: Path, sides: Path) -> None:
    for name, (schedule, more, seconds, then) in JOBS.items():
        script = RUN.format(side=sides / name, seconds=seconds, then=then)
        write_job(
            jobs_dir,
            f"{name}.toml",
            f'schedule = "{schedule}"\ntimezone = "UTC"\nkill_grace = "5s"\n'
            f"command = {json.dumps(['bash', '-c', script])}\n{more}",
        )


def spawn(jobs_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "kron", "daemon", "--jobs-dir", str(jobs_dir)],
            stdout=subprocess.DEVNULL,
            stderr=handle,
            env={**os.environ, "XDG_RUNTIME_DIR": str(jobs_dir.parent)},
        )


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def side_runs(path: Path) -> dict[str, SideRun]:
    runs: dict[str, SideRun] = {}
    if not path.exists():
        return runs
    for line in path.read_text().splitlines():
        match line.split():
            case ["start", run_id, slot, attempt, at]:
                runs[run_id] = SideRun(run_id, slot, int(attempt), float(at))
            case ["end", run_id, at] if run_id in runs:
                runs[run_id].end = float(at)
            case ["end", _, _]:
                pass  # stopped after its trap was set, before its start line
            case _:
                raise AssertionError(f"{path}: unexpected line {line!r}")
    return runs


@pytest.mark.timeout(TRIALS * 12 + 120)
def test_kill_9_at_random_moments_loses_no_slot_and_doubles_none(
    jobs_dir: Path, tmp_path: Path
) -> None:
    sides = tmp_path / "sides"
    sides.mkdir()
    write_jobs(jobs_dir, sides)
    log = tmp_path / "daemon.log"
    rng = random.Random(SEED)
    for _ in range(TRIALS):
        daemon = spawn(jobs_dir, log)
        try:
            time.sleep(rng.uniform(0.2, 2.5))  # the kill point: this test's input, not a wait
        finally:
            daemon.kill()
            daemon.wait(DEADLINE_S)
        time.sleep(rng.choice([0.0, 0.3, 1.0, 2.5]))  # down for a while: slots pass unrun
    # A last start recovers what the last kill left, runs a few slots, and stops cleanly.
    starts = log.read_bytes().count(b"kron daemon started")
    daemon = spawn(jobs_dir, log)
    try:
        wait_for(lambda: log.read_bytes().count(b"kron daemon started") > starts, "the last start")
        time.sleep(3)  # a few slots of every job under the last daemon: input, not a wait
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(DEADLINE_S) == 0

    assert b"Traceback" not in log.read_bytes()
    check = run_cli("check-records", "--json", "--jobs-dir", jobs_dir)
    report = json.loads(check.out)
    assert (check.code, report["findings"]) == (0, [])

    violations: list[str] = []
    for name in JOBS:
        runs = side_runs(sides / name)
        recorded = {r["run_id"] for r in read_records(jobs_dir / f"{name}.runs.jsonl")}
        violations += [f"{name}: run {r} ran with no record" for r in runs if r not in recorded]
        by_slot: dict[tuple[str, int], list[str]] = defaultdict(list)
        for run in runs.values():
            by_slot[(run.slot, run.attempt)].append(run.run_id)
        violations += [
            f"{name}: slot {slot} attempt {attempt} ran {len(ids)} times: {ids}"
            for (slot, attempt), ids in by_slot.items()
            if len(ids) > 1
        ]
        if name in EXCLUSIVE:
            ordered = sorted(runs.values(), key=lambda r: r.start)
            for before, after in itertools.pairwise(ordered):
                if before.end is None or after.start < before.end:
                    violations.append(
                        f"{name}: run {after.run_id} started at {after.start:.3f} while run "
                        f"{before.run_id} (started {before.start:.3f}) had not ended "
                        f"({before.end})"
                    )
    assert violations == []
    # The trials did what they are for: runs were cut short and found again after the crash.
    outcomes = [r["outcome"] for p in jobs_dir.glob("*.runs.jsonl") for r in read_records(p)]
    stopped = log.read_bytes().count(b"of the previous daemon still runs")
    print(
        f"crash: {TRIALS} kills (seed {SEED}), {len(report['findings'])} findings, "
        f"{len(violations)} violations, {stopped} orphaned runs stopped at a start, "
        + ", ".join(f"{o} {outcomes.count(o)}" for o in sorted(set(outcomes)))
    )
    assert outcomes.count("abandoned") >= TRIALS // 3
    assert outcomes.count("missed") > 0
    assert outcomes.count("succeeded") > TRIALS
