"""Stuck runs: a run alive past its expected duration, or far past its job's usual one, is
flagged once (log, status, list, metrics, `stuck` notifications) and goes on running."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kron.engine import records
from kron.engine.stuck import threshold_of
from kron.model.run import HOST, Outcome, RunEnded, Trigger
from kron.service.daemon import Daemon

from .clock import FakeClock
from .harness import Events, make_job, until_true, write_job
from .servers import HttpRecorder
from .test_daemon import with_daemon

T0 = datetime(2026, 3, 2, 9, 59, 59, tzinfo=UTC)
TEN = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
LONG = 'schedule = "0 10 * * *"\ntimezone = "UTC"\ncommand = ["sleep", "60"]\n'


def test_the_threshold_is_expected_duration_else_three_times_p95_of_recent_successes(
    jobs_dir: Path,
) -> None:
    job = make_job(jobs_dir, "j.toml", LONG)
    assert threshold_of(job, [10.0] * 4) is None  # too few successes to know what is usual
    durations = [float(n) for n in range(11, 31)]  # p95 of 11..30 by nearest rank: 29
    assert threshold_of(job, durations) == (
        timedelta(seconds=87),
        "3x the 95th percentile of its last 20 successful runs",
    )
    assert threshold_of(job, [1.0] * 20)[0] == timedelta(minutes=1)  # type: ignore[index]
    assert threshold_of(job, [500.0] * 5 + [1.0] * 30)[0] == timedelta(seconds=1500)  # type: ignore[index]
    set_one = make_job(jobs_dir, "k.toml", LONG + 'expected_duration = "5s"\n')
    assert threshold_of(set_one, durations) == (timedelta(seconds=5), "expected_duration")


def test_a_run_past_its_expected_duration_is_flagged_once_and_goes_on(
    jobs_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(T0)

    async def body(daemon: Daemon, events: Events) -> None:
        async with HttpRecorder() as hook:
            write_job(
                jobs_dir,
                "slow.toml",
                LONG
                + 'expected_duration = "90s"\n'
                + f'[[notify]]\nwebhook = "{hook.url("/stuck")}"\non = ["stuck", "failure"]\n',
            )
            daemon.reload()
            await clock.set(TEN)
            await events.until(lambda e: len(e.started()) == 1)
            [started] = events.started()
            view = daemon.view
            assert view is not None
            await clock.set(TEN + timedelta(seconds=89))
            assert [run.stuck for run in view.running()] == [None]
            await clock.set(TEN + timedelta(seconds=91))
            await until_true(lambda: view.running()[0].stuck is not None)
            reason = "running longer than 1m30s (expected_duration)"
            assert view.running()[0].stuck == reason
            [job] = [j for j in view.jobs() if j.id == "slow"]
            assert (job.running, job.stuck) == (1, 1)
            from kron.service.metrics import Metrics  # as a scrape reads it

            assert b"\nkron_runs_stuck 1.0\n" in Metrics(view).render()
            await hook.until(1)
            message = hook.requests[0].json()
            assert {k: message[k] for k in ("job", "outcome", "run_id", "ended_at", "error")} == {
                "job": "slow",
                "outcome": "stuck",
                "run_id": started.run_id,
                "ended_at": None,
                "error": f"stuck: {reason}; it goes on running",
            }
            assert message["summary"] == f"kron: slow stuck (running for 91.0 s) on {HOST}"
            # Once: later looks do not flag it again; the run is not stopped for it.
            await clock.set(TEN + timedelta(minutes=30))
            assert [r.state.value for r in view.running()] == ["running"]
            assert len(hook.requests) == 1
            daemon.runtime.scheduler.cancel(started.run_id)
            await events.until(lambda e: len(e.ended()) == 1)
            assert events.outcomes() == ["cancelled"]
            await hook.until(2)  # the final outcome still has its own message
            assert hook.requests[1].json()["outcome"] == "cancelled"

    with caplog.at_level(logging.WARNING, logger="kron.runner"):
        with_daemon(jobs_dir, clock, body)
    said = [r.getMessage() for r in caplog.records if "is stuck" in r.getMessage()]
    assert len(said) == 1
    assert "job slow: run " in said[0]


def write_successes(jobs_dir: Path, job_id: str, durations: list[float], sha: str) -> None:
    path = jobs_dir / f"{job_id}.runs.jsonl"
    day = datetime(2026, 2, 1, 10, 0, tzinfo=UTC)
    for n, seconds in enumerate(durations):
        slot = day + timedelta(days=n)
        records.append(
            path,
            RunEnded(
                run_id=f"old{n}",
                job=job_id,
                slot=slot,
                trigger=Trigger.SCHEDULE,
                attempt=1,
                outcome=Outcome.SUCCEEDED,
                started_at=slot,
                ended_at=slot + timedelta(seconds=seconds),
                config_sha=sha,
                exit_code=0,
            ).to_json(),
        )


def test_without_expected_duration_the_last_successes_set_the_threshold(jobs_dir: Path) -> None:
    job = make_job(jobs_dir, "usual.toml", LONG)
    # p95 by nearest rank is the 19th of 20: one slow run in 20 is not what is usual.
    write_successes(jobs_dir, "usual", [20.0] * 18 + [30.0, 300.0], job.config_sha)
    clock = FakeClock(T0)

    async def body(daemon: Daemon, events: Events) -> None:
        await clock.set(TEN)
        await events.until(lambda e: len(e.started()) == 1)
        view = daemon.view
        assert view is not None
        await clock.set(TEN + timedelta(seconds=89))
        assert [run.stuck for run in view.running()] == [None]
        await clock.set(TEN + timedelta(seconds=90))
        await until_true(lambda: view.running()[0].stuck is not None)
        assert view.running()[0].stuck == (
            "running longer than 1m30s (3x the 95th percentile of its last 20 successful runs)"
        )
        status = view.status()
        assert [r["stuck"] for r in status["running"]] == [view.running()[0].stuck]

    with_daemon(jobs_dir, clock, body)


def test_a_job_with_little_history_and_no_expected_duration_is_never_stuck(
    jobs_dir: Path,
) -> None:
    job = make_job(jobs_dir, "new.toml", LONG)
    write_successes(jobs_dir, "new", [1.0] * 4, job.config_sha)
    clock = FakeClock(T0)

    async def body(daemon: Daemon, events: Events) -> None:
        await clock.set(TEN)
        await events.until(lambda e: len(e.started()) == 1)
        await clock.set(TEN + timedelta(hours=5))
        await clock.set(TEN + timedelta(hours=10))
        assert daemon.view is not None
        assert [run.stuck for run in daemon.view.running()] == [None]

    with_daemon(jobs_dir, clock, body)


def test_expected_duration_is_checked_by_validate(jobs_dir: Path) -> None:
    from .conftest import run_cli

    write_job(jobs_dir, "zero.toml", LONG + 'expected_duration = "0s"\n')
    write_job(jobs_dir, "late.toml", LONG + 'timeout = "1m"\nexpected_duration = "2m"\n')
    report = json.loads(run_cli("validate", "--jobs-dir", jobs_dir, "--format", "json").out)
    found = {
        (p["path"].rsplit("/", 1)[1], kind, p["message"])
        for kind in ("errors", "warnings")
        for p in report[kind]
    }
    assert ("zero.toml", "errors", "'0s' is shorter than 1s, the least kron takes here") in found
    assert (
        "late.toml",
        "warnings",
        "expected_duration 2m is not shorter than timeout 1m: a run is stopped before it could "
        "be called stuck",
    ) in found
