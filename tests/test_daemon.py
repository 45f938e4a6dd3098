"""The daemon as a whole: restarts, crashes, signals, the lock, and records on disk."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kron.engine import records
from kron.model.run import Trigger
from kron.service.daemon import Daemon

from .clock import FakeClock
from .harness import DEADLINE_S, Events, iso, read_records, until_true, write_job

T0 = datetime(2026, 3, 2, 7, 0, 30, tzinfo=UTC)


def with_daemon(
    jobs_dir: Path,
    clock: FakeClock,
    body: Callable[[Daemon, Events], Awaitable[None]],
    *,
    boot_id: str = "boot-1",
) -> None:
    """Start a Daemon on a fake clock, run `body`, stop it as SIGTERM would."""

    async def main() -> None:
        daemon = Daemon(jobs_dir, clock=clock, boot_id=boot_id, control=False)
        events = Events()
        await daemon.start()
        assert daemon.scheduler is not None
        daemon.scheduler.subscribe(events)
        serving = asyncio.ensure_future(daemon.serve())
        try:
            await body(daemon, events)
        finally:
            daemon.request_stop()
            await asyncio.wait_for(serving, DEADLINE_S)

    asyncio.run(asyncio.wait_for(main(), 60))


def outcomes(path: Path) -> list[tuple[str, str, str]]:
    return [(r["outcome"], r["slot"][11:16], r["trigger"]) for r in read_records(path)]


def test_catchup_after_a_restart_is_decided_from_the_records(jobs_dir: Path) -> None:
    write_job(
        jobs_dir,
        "hourly.toml",
        'schedule = "0 * * * *"\ntimezone = "UTC"\ncommand = ["true"]\ncatchup = "last"\n',
    )
    clock = FakeClock(T0)

    async def first(daemon: Daemon, events: Events) -> None:
        await clock.set(datetime(2026, 3, 2, 8, 0, tzinfo=UTC))
        await events.until(lambda e: len(e.ended()) == 1)

    with_daemon(jobs_dir, clock, first)
    asyncio.run(clock.set(datetime(2026, 3, 2, 11, 30, tzinfo=UTC)))  # down from 08:00 to 11:30

    async def second(daemon: Daemon, events: Events) -> None:
        await events.until(lambda e: len(e.ended()) == 1)

    with_daemon(jobs_dir, clock, second)
    assert outcomes(jobs_dir / "hourly.runs.jsonl") == [
        ("started", "08:00", "schedule"),
        ("succeeded", "08:00", "schedule"),
        ("missed", "09:00", "schedule"),
        ("missed", "10:00", "schedule"),
        ("started", "11:00", "catchup"),
        ("succeeded", "11:00", "catchup"),
    ]


def test_a_job_that_never_ran_still_catches_up_a_slot_missed_while_down(jobs_dir: Path) -> None:
    write_job(
        jobs_dir,
        "daily.toml",
        'schedule = "0 9 * * *"\ntimezone = "UTC"\ncommand = ["true"]\ncatchup = "last"\n',
    )
    clock = FakeClock(T0)

    async def nothing(daemon: Daemon, events: Events) -> None:
        return

    with_daemon(jobs_dir, clock, nothing)  # first seen at 07:00, stopped cleanly
    asyncio.run(clock.set(datetime(2026, 3, 2, 9, 30, tzinfo=UTC)))

    async def second(daemon: Daemon, events: Events) -> None:
        await events.until(lambda e: len(e.ended()) == 1)

    with_daemon(jobs_dir, clock, second)
    assert outcomes(jobs_dir / "daily.runs.jsonl") == [
        ("started", "09:00", "catchup"),
        ("succeeded", "09:00", "catchup"),
    ]


def test_an_at_job_fires_once_and_never_again_across_restarts(jobs_dir: Path) -> None:
    write_job(
        jobs_dir,
        "once.yaml",
        "schedule: '@at 2026-03-02T08:00'\ntimezone: UTC\ncommand: ['true']\ncatchup: last\n",
    )
    clock = FakeClock(T0)

    async def first(daemon: Daemon, events: Events) -> None:
        await clock.set(datetime(2026, 3, 2, 8, 0, tzinfo=UTC))
        await events.until(lambda e: len(e.ended()) == 1)

    with_daemon(jobs_dir, clock, first)
    asyncio.run(clock.set(datetime(2026, 3, 3, 8, 0, tzinfo=UTC)))

    async def second(daemon: Daemon, events: Events) -> None:
        assert daemon.scheduler is not None
        assert daemon.scheduler.jobs["once"].fire_at is None

    with_daemon(jobs_dir, clock, second)
    assert outcomes(jobs_dir / "once.runs.jsonl") == [
        ("started", "08:00", "schedule"),
        ("succeeded", "08:00", "schedule"),
    ]


def test_reboot_jobs_fire_once_per_boot_not_per_daemon_start(jobs_dir: Path) -> None:
    write_job(jobs_dir, "boot.toml", 'schedule = "@reboot"\ncommand = ["true"]\n')
    clock = FakeClock(T0)

    async def fired(daemon: Daemon, events: Events) -> None:
        await events.until(lambda e: len(e.ended()) == 1)

    async def quiet(daemon: Daemon, events: Events) -> None:
        return

    with_daemon(jobs_dir, clock, fired, boot_id="boot-1")
    with_daemon(jobs_dir, clock, quiet, boot_id="boot-1")
    with_daemon(jobs_dir, clock, fired, boot_id="boot-2")
    triggers = [
        r["trigger"]
        for r in read_records(jobs_dir / "boot.runs.jsonl")
        if r["outcome"] != "started"
    ]
    assert triggers == ["reboot", "reboot"]


def test_sigterm_stops_running_jobs_and_records_them_cancelled(
    jobs_dir: Path, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    write_job(jobs_dir, "kron.toml", 'shutdown_grace = "2s"\n')
    write_job(
        jobs_dir,
        "slow.toml",
        f'schedule = "* * * * *"\ntimezone = "UTC"\nshell = "trap \'\' TERM; touch {ready}; sleep 60"\nkill_grace = "30s"\n',
    )
    clock = FakeClock(T0)

    async def body(daemon: Daemon, events: Events) -> None:
        await clock.set(datetime(2026, 3, 2, 7, 1, tzinfo=UTC))
        await until_true(ready.exists)  # the job ignores SIGTERM from here on

    started = time.monotonic()
    with_daemon(jobs_dir, clock, body)
    assert time.monotonic() - started < 15  # shutdown_grace, not kill_grace, bounds the stop
    last = read_records(jobs_dir / "slow.runs.jsonl")[-1]
    assert (last["outcome"], last["signal"]) == ("cancelled", 9)


def test_records_of_many_jobs_appending_at_once_are_whole_lines(jobs_dir: Path) -> None:
    for i in range(200):
        write_job(
            jobs_dir,
            f"many/j{i:03}.toml",
            'schedule = "* * * * *"\ntimezone = "UTC"\nshell = "head -c 20000 /dev/zero | tr \'\\\\0\' x"\n',
        )
    write_job(jobs_dir, "kron.toml", 'records_dir = "../records"\n')
    clock = FakeClock(T0)

    async def body(daemon: Daemon, events: Events) -> None:
        await clock.set(datetime(2026, 3, 2, 7, 1, tzinfo=UTC))
        await events.until(lambda e: len(e.ended()) == 200)

    with_daemon(jobs_dir, clock, body)
    root = jobs_dir.parent / "records" / "many"
    lines = [line for p in root.glob("*.runs.jsonl") for line in p.read_text().splitlines()]
    assert len(lines) == 600  # started, the process note, ended
    parsed = [json.loads(line) for line in lines]
    assert (
        sum(1 for r in parsed if r.get("outcome") == "succeeded" and len(r["stdout"]) == 20000)
        == 200
    )
    assert sum(1 for r in parsed if isinstance(r.get("process", {}).get("pgid"), int)) == 200


def _spawn_daemon(jobs_dir: Path, log: Path | None = None) -> subprocess.Popen[bytes]:
    """A real `kron daemon` process; its log goes to `log` (default: beside the jobs dir)."""
    log = log or jobs_dir.parent / f"daemon-{time.monotonic_ns()}.log"
    runtime = jobs_dir.parent / "run"
    runtime.mkdir(exist_ok=True)
    with open(log, "wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kron", "daemon", "--jobs-dir", str(jobs_dir)],
            stdout=subprocess.DEVNULL,
            stderr=handle,
            env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        )
    proc.log = log  # type: ignore[attr-defined]
    return proc


def _log(proc: subprocess.Popen[bytes]) -> bytes:
    return proc.log.read_bytes()  # type: ignore[attr-defined,no-any-return]


def _wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_kill_9_mid_run_then_restart_records_abandoned_and_never_reruns_the_slot(
    jobs_dir: Path, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    write_job(
        jobs_dir,
        "long.toml",
        f'schedule = "* * * * * *"\ntimezone = "UTC"\nshell = "echo $$ > {pid_file}; exec sleep 60"\n',
    )
    path = jobs_dir / "long.runs.jsonl"
    first = _spawn_daemon(jobs_dir)
    try:
        _wait_for(
            lambda: pid_file.exists() and pid_file.read_text().strip() != "", "the job to start"
        )
        os.kill(first.pid, signal.SIGKILL)
        first.wait(DEADLINE_S)
    finally:
        if first.poll() is None:
            first.kill()
    child = int(pid_file.read_text())
    os.killpg(child, 0)  # the orphan lives on in its own session
    started = [r for r in read_records(path) if r["outcome"] == "started"]
    assert len(started) == 1
    crashed = started[0]
    second = _spawn_daemon(jobs_dir)
    try:
        _wait_for(
            lambda: any(r["outcome"] == "abandoned" for r in read_records(path)),
            "the abandoned record",
        )
        _wait_for(
            lambda: sum(r["outcome"] == "started" for r in read_records(path)) >= 2, "a later slot"
        )
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(DEADLINE_S) == 0
    lines = read_records(path)
    abandoned = [r for r in lines if r["outcome"] == "abandoned"]
    assert [(r["run_id"], r["slot"]) for r in abandoned] == [(crashed["run_id"], crashed["slot"])]
    # Stopped by the second daemon before it fired anything: no second run beside it.
    with pytest.raises(ProcessLookupError):
        os.killpg(child, 0)
    assert abandoned[0]["error"].endswith(
        "it still ran at the next start and was stopped (SIGTERM)"
    )
    later = [r for r in lines if r["outcome"] == "started" and r["run_id"] != crashed["run_id"]]
    assert later[0]["started_at"] >= abandoned[0]["ended_at"]
    assert [r["slot"] for r in lines if r["outcome"] == "started"].count(crashed["slot"]) == 1


def test_a_second_daemon_on_the_same_directory_exits_with_a_clear_message(jobs_dir: Path) -> None:
    write_job(jobs_dir, "j.toml", 'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\n')
    first = _spawn_daemon(jobs_dir)
    try:
        _wait_for(lambda: b"kron daemon started" in _log(first), "the first daemon to start")
        second = _spawn_daemon(jobs_dir)
        assert second.wait(DEADLINE_S) == 1
        err = _log(second)
        assert f"another kron daemon is already running on {jobs_dir}".encode() in err
        assert b"Traceback" not in err
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(DEADLINE_S) == 0


def test_an_invalid_job_file_is_reported_and_the_others_run(jobs_dir: Path) -> None:
    write_job(jobs_dir, "bad.toml", 'schedule = "61 * * * *"\ncommand = ["true"]\n')
    write_job(
        jobs_dir, "good.toml", 'schedule = "* * * * *"\ntimezone = "UTC"\ncommand = ["true"]\n'
    )
    clock = FakeClock(T0)

    async def body(daemon: Daemon, events: Events) -> None:
        assert list(daemon.catalog.active) == ["good"]
        assert list(daemon.catalog.invalid_files) == [str(jobs_dir / "bad.toml")]
        await clock.set(datetime(2026, 3, 2, 7, 1, tzinfo=UTC))
        await events.until(lambda e: len(e.ended()) == 1)

    with_daemon(jobs_dir, clock, body)
    assert [iso(records.parse_time(r["slot"])) for r in read_records(jobs_dir / "good.runs.jsonl")][
        -1
    ] == "2026-03-02T07:01:00Z"


def test_retention_keeps_the_newest_runs(jobs_dir: Path) -> None:
    write_job(
        jobs_dir,
        "r.toml",
        'schedule = "* * * * *"\ntimezone = "UTC"\ncommand = ["true"]\n[records]\nkeep = 5\n',
    )
    clock = FakeClock(T0)

    async def body(daemon: Daemon, events: Events) -> None:
        for minute in range(1, 26):
            await clock.set(datetime(2026, 3, 2, 7, minute, tzinfo=UTC))
            await events.until(lambda e, n=minute: len(e.ended()) == n)
        await asyncio.sleep(0)

    with_daemon(jobs_dir, clock, body)
    path = jobs_dir / "r.runs.jsonl"
    # Pruning runs every 10 runs; after 25 runs at most 5 + 9 remain, and the newest is there.
    slots = [r["slot"] for r in read_records(path) if r["outcome"] != "started"]
    assert slots[-1] == "2026-03-02T07:25:00Z"
    assert len(slots) < 15
    assert slots == sorted(slots)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_the_daemon_exits_0_on_sigterm_and_sigint(jobs_dir: Path, signame: str) -> None:
    write_job(jobs_dir, "j.toml", 'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\n')
    proc = _spawn_daemon(jobs_dir)
    state = jobs_dir / ".kron" / "state.json"
    _wait_for(state.exists, "the daemon to start")
    proc.send_signal(getattr(signal, signame))
    assert proc.wait(DEADLINE_S) == 0, _log(proc)
    assert b"kron daemon stopped" in _log(proc)


def test_now_is_timezone_aware_everywhere() -> None:
    assert FakeClock(T0).now().tzinfo is UTC
    assert (T0 + timedelta(0)).utcoffset() == timedelta(0)


def test_the_global_agent_budget_in_kron_toml_refuses_a_run_once_spent(jobs_dir: Path) -> None:
    write_job(jobs_dir, "kron.toml", "max_runs_per_day = 1\n")
    write_job(
        jobs_dir,
        "ask.toml",
        'schedule = "@manual"\n[agent]\nprompt = "say hi"\ncommand = ["cat"]\n',
    )
    write_job(
        jobs_dir,
        "ask-too.toml",
        'schedule = "@manual"\n[agent]\nprompt = "say hi"\ncommand = ["cat"]\n',
    )
    clock = FakeClock(T0)

    async def body(daemon: Daemon, events: Events) -> None:
        assert daemon.scheduler is not None
        first = daemon.scheduler.fire("ask", slot=T0, trigger=Trigger.MANUAL)
        assert first is not None
        await events.until(lambda e: len(e.ended()) == 1)
        daemon.scheduler.fire("ask-too", slot=T0, trigger=Trigger.MANUAL)
        await events.until(lambda e: len(e.ended()) == 2)
        done, refused = events.ended()
        assert (done.outcome.value, done.stdout) == ("succeeded", "say hi")
        assert refused.outcome.value == "skipped"
        assert refused.error is not None
        assert "budget" in refused.error

    with_daemon(jobs_dir, clock, body)


def test_a_large_first_load_on_worker_processes_does_not_stop_the_daemon(
    jobs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pool workers inherit asyncio's signal wakeup fd; their SIGTERM at the end of the load
    # must not reach the daemon's loop as its own.
    from kron.config import parallel

    monkeypatch.setattr(parallel, "PARALLEL_MIN", 10)
    for i in range(40):
        write_job(
            jobs_dir,
            f"j{i:02}.toml",
            'schedule = "* * * * *"\ntimezone = "UTC"\ncommand = ["true"]\n',
        )
    clock = FakeClock(T0)

    async def body(daemon: Daemon, events: Events) -> None:
        assert len(daemon.catalog.active) == 40
        await clock.set(datetime(2026, 3, 2, 7, 1, tzinfo=UTC))
        await events.until(lambda e: len(e.ended()) == 40)
        assert not daemon._stop.is_set()

    with_daemon(jobs_dir, clock, body)


def test_the_audit_log_batches_lines_and_rotates_past_its_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kron.engine import audit as audit_module
    from kron.model.clock import RealClock

    path = tmp_path / "audit.jsonl"
    audit = audit_module.AuditLog(path, RealClock())
    with audit.batch():
        for n in range(3):
            audit.write("load", job=f"job-{n}")
        assert not path.exists()  # nothing written until the batch ends
    audit.write("remove", job="job-0")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["event"], e["job"]) for e in lines] == [
        ("load", "job-0"),
        ("load", "job-1"),
        ("load", "job-2"),
        ("remove", "job-0"),
    ]
    monkeypatch.setattr(audit_module, "AUDIT_MAX_BYTES", path.stat().st_size - 1)
    before = path.read_bytes()
    audit_module.AuditLog(path, RealClock()).write("load", job="job-9")
    assert (tmp_path / "audit.jsonl.1").read_bytes() == before
    assert [json.loads(line)["job"] for line in path.read_text().splitlines()] == ["job-9"]
