"""Triggers: success fires the next jobs, failure records dependency_failed down the graph; and
`kron tree`, which draws that graph. Real processes, real records files, a fake clock."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kron.config.graph import render_tree, roots
from kron.engine import records
from kron.engine.chain import Chains, Consequence, consequence
from kron.engine.scheduler import Scheduler
from kron.engine.store import FileRecordStore, last_outcomes
from kron.model.job import Job
from kron.model.run import HOST, Outcome, Trigger

from .clock import FakeClock
from .harness import Events, make_job, read_records, until_true

T0 = datetime(2026, 3, 2, 2, 59, 30, tzinfo=UTC)
THREE = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
MANUAL = '\nschedule = "@manual"\ntimezone = "UTC"\n'


@dataclass
class Rig:
    scheduler: Scheduler
    clock: FakeClock
    events: Events
    sink: FileRecordStore

    def records(self, job_id: str) -> list[dict[str, Any]]:
        return read_records(self.sink.path(job_id))


def drive(jobs_dir: Path, body: Callable[[Rig], Awaitable[None]], *, start: datetime = T0) -> None:
    """Run `body` with a scheduler whose records go to disk and whose chains are followed."""

    async def main() -> None:
        clock = FakeClock(start)
        scheduler = Scheduler(clock=clock)
        sink = FileRecordStore(jobs_dir=jobs_dir, records_dir=None, clock=clock)
        scheduler.subscribe(sink.append)
        events = Events()
        scheduler.subscribe(events)
        Chains().attach(scheduler)
        loop_task = asyncio.ensure_future(scheduler.run_forever())
        try:
            await body(Rig(scheduler, clock, events, sink))
        finally:
            await scheduler.shutdown(timedelta(seconds=5))
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)

    asyncio.run(asyncio.wait_for(main(), 40))


def add_all(rig: Rig, *jobs: Job) -> None:
    for job in jobs:
        rig.scheduler.add(job, cursor=rig.clock.now())


def test_a_four_step_chain_where_step_two_fails_records_dependency_failed_below_it(
    jobs_dir: Path,
) -> None:
    step1 = make_job(
        jobs_dir,
        "pipe/step1.toml",
        'schedule = "0 3 * * *"\ntimezone = "UTC"\ncommand = ["true"]\ntriggers = ["pipe/step2"]\n',
    )
    step2 = make_job(
        jobs_dir, "pipe/step2.toml", MANUAL + 'shell = "exit 4"\ntriggers = ["pipe/step3"]\n'
    )
    step3 = make_job(
        jobs_dir, "pipe/step3.toml", MANUAL + 'command = ["true"]\ntriggers = ["pipe/step4"]\n'
    )
    step4 = make_job(jobs_dir, "pipe/step4.toml", MANUAL + 'command = ["true"]\n')

    async def body(rig: Rig) -> None:
        add_all(rig, step1, step2, step3, step4)
        await rig.clock.set(THREE)
        await rig.events.until(lambda e: len(e.ended("pipe/step4")) == 1)

        def ran(job: Job, trigger: str, upstream: str | None, **end: Any) -> list[Any]:
            started, ended = rig.records(job.id)
            run_id = started["run_id"]
            common = {
                "v": 1,
                "run_id": run_id,
                "job": job.id,
                "slot": "2026-03-02T03:00:00Z",
                "trigger": trigger,
                "attempt": 1,
            }
            link = {"upstream": upstream} if upstream else {}
            assert started == {
                **common,
                "outcome": "started",
                "started_at": "2026-03-02T03:00:00Z",
                "config_sha": job.config_sha,
                "host": HOST,
                "daemon_pid": os.getpid(),
                **link,
            }
            assert ended == {
                **common,
                "started_at": "2026-03-02T03:00:00Z",
                "ended_at": "2026-03-02T03:00:00Z",
                "duration_s": 0.0,
                "signal": None,
                "stdout": "",
                "stderr": "",
                "truncated": False,
                "error": None,
                "config_sha": job.config_sha,
                "host": HOST,
                "pid": ended["pid"],
                **link,
                **end,
            }
            assert isinstance(ended["pid"], int)
            return [run_id]

        [run1] = ran(step1, "schedule", None, outcome="succeeded", exit_code=0)
        [run2] = ran(step2, "dependency", run1, outcome="failed", exit_code=4)
        [record3] = rig.records("pipe/step3")
        [record4] = rig.records("pipe/step4")
        never_ran = {
            "v": 1,
            "slot": "2026-03-02T03:00:00Z",
            "trigger": "dependency",
            "attempt": 1,
            "outcome": "dependency_failed",
            "started_at": None,
            "ended_at": "2026-03-02T03:00:00Z",
            "duration_s": None,
            "exit_code": None,
            "signal": None,
            "stdout": "",
            "stderr": "",
            "truncated": False,
            "host": HOST,
            "pid": None,
        }
        assert record3 == {
            **never_ran,
            "run_id": record3["run_id"],
            "job": "pipe/step3",
            "error": f'upstream job "pipe/step2" run {run2} ended failed',
            "config_sha": step3.config_sha,
            "upstream": run2,
        }
        assert record4 == {
            **never_ran,
            "run_id": record4["run_id"],
            "job": "pipe/step4",
            "error": (
                f'upstream job "pipe/step3" run {record3["run_id"]} ended dependency_failed'
                f' (the chain broke at "pipe/step2" run {run2}: failed)'
            ),
            "config_sha": step4.config_sha,
            "upstream": record3["run_id"],
        }
        assert len({run1, run2, record3["run_id"], record4["run_id"]}) == 4
        assert [type(e).__name__ for e in rig.events.all if e.job != "pipe/step1"] == [
            "RunStarted",
            "ProcessNote",  # step2's process group started; the rest never ran a process
            "RunEnded",
            "RunEnded",
            "RunEnded",
        ]

    drive(jobs_dir, body)


def test_a_success_fires_each_triggered_job_with_the_upstream_run_and_slot(
    jobs_dir: Path,
) -> None:
    a = make_job(jobs_dir, "a.toml", MANUAL + 'command = ["true"]\ntriggers = ["b", "c"]\n')
    b = make_job(jobs_dir, "b.toml", MANUAL + 'command = ["true"]\n')
    c = make_job(jobs_dir, "c.toml", MANUAL + 'command = ["true"]\n')

    async def body(rig: Rig) -> None:
        add_all(rig, a, b, c)
        run = rig.scheduler.fire("a", slot=THREE, trigger=Trigger.MANUAL)
        assert run is not None
        await rig.events.until(lambda e: len(e.ended()) == 3)
        started = {e.job: (e.trigger, e.upstream, e.slot) for e in rig.events.started()}
        assert started == {
            "a": (Trigger.MANUAL, None, THREE),
            "b": (Trigger.DEPENDENCY, run.run_id, THREE),
            "c": (Trigger.DEPENDENCY, run.run_id, THREE),
        }
        assert rig.events.outcomes() == ["succeeded", "succeeded", "succeeded"]

    drive(jobs_dir, body)


def test_a_diamond_gets_one_dependency_failed_record_per_job(jobs_dir: Path) -> None:
    a = make_job(jobs_dir, "a.toml", MANUAL + 'shell = "exit 1"\ntriggers = ["b", "c"]\n')
    b = make_job(jobs_dir, "b.toml", MANUAL + 'command = ["true"]\ntriggers = ["d"]\n')
    c = make_job(jobs_dir, "c.toml", MANUAL + 'command = ["true"]\ntriggers = ["d"]\n')
    d = make_job(jobs_dir, "d.toml", MANUAL + 'command = ["true"]\ntriggers = ["e"]\n')
    e = make_job(jobs_dir, "e.toml", MANUAL + 'command = ["true"]\n')

    async def body(rig: Rig) -> None:
        add_all(rig, a, b, c, d, e)
        rig.scheduler.fire("a", slot=THREE, trigger=Trigger.MANUAL)
        await rig.events.until(lambda ev: len(ev.ended()) == 5)
        assert [(ev.job, ev.outcome.value) for ev in rig.events.ended()] == [
            ("a", "failed"),
            ("b", "dependency_failed"),
            ("c", "dependency_failed"),
            ("d", "dependency_failed"),
            ("e", "dependency_failed"),
        ]
        by_job = {ev.job: ev for ev in rig.events.ended()}
        assert by_job["d"].upstream == by_job["b"].run_id
        assert by_job["e"].upstream == by_job["d"].run_id
        assert [len(rig.records(job)) for job in "bcde"] == [1, 1, 1, 1]

    drive(jobs_dir, body)


def test_a_cancelled_run_breaks_the_chain(jobs_dir: Path) -> None:
    a = make_job(
        jobs_dir, "a.toml", MANUAL + 'shell = "sleep 30"\nkill_grace = "1s"\ntriggers = ["b"]\n'
    )
    b = make_job(jobs_dir, "b.toml", MANUAL + 'command = ["true"]\n')

    async def body(rig: Rig) -> None:
        add_all(rig, a, b)
        run = rig.scheduler.fire("a", slot=THREE, trigger=Trigger.MANUAL)
        assert run is not None
        await rig.events.until(lambda ev: len(ev.started()) == 1)
        rig.scheduler.cancel(run.run_id)
        await rig.events.until(lambda ev: len(ev.ended()) == 2)
        [cancelled, broken] = rig.events.ended()
        assert (cancelled.outcome, broken.job, broken.outcome) == (
            Outcome.CANCELLED,
            "b",
            Outcome.DEPENDENCY_FAILED,
        )
        assert broken.error == f'upstream job "a" run {run.run_id} ended cancelled'

    drive(jobs_dir, body)


def test_a_retried_run_fires_its_triggers_once_after_its_last_attempt(
    jobs_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "tried"
    a = make_job(
        jobs_dir,
        "a.toml",
        MANUAL
        + f"shell = 'test -e {marker} || {{ touch {marker}; exit 1; }}'\n"
        + 'triggers = ["b"]\n[retry]\nattempts = 2\nbackoff = "fixed"\ndelay = "1s"\n',
    )
    b = make_job(jobs_dir, "b.toml", MANUAL + 'command = ["true"]\n')

    async def body(rig: Rig) -> None:
        add_all(rig, a, b)
        rig.scheduler.fire("a", slot=THREE, trigger=Trigger.MANUAL)
        await rig.events.until(lambda ev: len(ev.ended("a")) == 1)
        await until_true(lambda: rig.clock.sleepers == 1)  # the back-off before attempt 2
        await rig.clock.advance(1)
        await rig.events.until(lambda ev: len(ev.ended("b")) == 1)
        first, second = rig.events.ended("a")
        assert (first.outcome, second.outcome) == (Outcome.FAILED, Outcome.SUCCEEDED)
        [started_b] = rig.events.started("b")
        assert started_b.upstream == second.run_id

    drive(jobs_dir, body)


@pytest.mark.parametrize(
    ("setting", "why"),
    [
        ("pause", "not run: the job is paused (kron resume b)"),
        ("enabled = false\n", "not run: the job is disabled (enabled = false)"),
    ],
)
def test_a_paused_or_disabled_triggered_job_is_recorded_skipped_and_not_run(
    jobs_dir: Path, setting: str, why: str
) -> None:
    a = make_job(jobs_dir, "a.toml", MANUAL + 'command = ["true"]\ntriggers = ["b"]\n')
    extra = setting if setting != "pause" else ""
    b = make_job(jobs_dir, "b.toml", MANUAL + 'command = ["true"]\ntriggers = ["c"]\n' + extra)
    c = make_job(jobs_dir, "c.toml", MANUAL + 'command = ["true"]\n')

    async def body(rig: Rig) -> None:
        add_all(rig, a, b, c)
        if setting == "pause":
            rig.scheduler.set_paused("b", True)
        run = rig.scheduler.fire("a", slot=THREE, trigger=Trigger.MANUAL)
        assert run is not None
        await rig.events.until(lambda ev: len(ev.ended()) == 2)
        [skipped] = rig.events.ended("b")
        assert (skipped.outcome, skipped.trigger, skipped.upstream, skipped.error) == (
            Outcome.SKIPPED,
            Trigger.DEPENDENCY,
            run.run_id,
            why,
        )
        assert rig.events.started("b") == []
        assert rig.events.ended("c") == []

    drive(jobs_dir, body)


def test_a_triggered_job_that_is_no_longer_loaded_is_logged_and_not_recorded(
    jobs_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a = make_job(jobs_dir, "a.toml", MANUAL + 'command = ["true"]\ntriggers = ["b"]\n')
    b = make_job(jobs_dir, "b.toml", MANUAL + 'command = ["true"]\n')

    async def body(rig: Rig) -> None:
        add_all(rig, a, b)
        rig.scheduler.remove("b")
        run = rig.scheduler.fire("a", slot=THREE, trigger=Trigger.MANUAL)
        assert run is not None
        assert run.task is not None
        await asyncio.wait_for(run.task, 20)
        assert rig.events.outcomes() == ["succeeded"]
        assert not rig.sink.path("b").exists()

    with caplog.at_level(logging.WARNING, logger="kron.chain"):
        drive(jobs_dir, body)
    assert [r.getMessage() for r in caplog.records if r.name == "kron.chain"] == [
        "job a: triggered job b is not loaded (removed or never valid); not run"
    ]


def test_a_success_while_the_daemon_stops_fires_nothing(
    jobs_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    go = tmp_path / "go"
    a = make_job(
        jobs_dir,
        "a.toml",
        MANUAL + f"shell = 'while ! test -e {go}; do sleep 0.05; done'\ntriggers = [\"b\"]\n",
    )
    b = make_job(jobs_dir, "b.toml", MANUAL + 'command = ["true"]\n')

    async def body(rig: Rig) -> None:
        add_all(rig, a, b)
        run = rig.scheduler.fire("a", slot=THREE, trigger=Trigger.MANUAL)
        assert run is not None
        assert run.task is not None
        await rig.events.until(lambda ev: len(ev.started()) == 1)
        rig.scheduler.stop()
        go.touch()
        await asyncio.wait_for(run.task, 20)
        assert rig.events.outcomes() == ["succeeded"]
        assert rig.events.started("b") == []

    with caplog.at_level(logging.WARNING, logger="kron.chain"):
        drive(jobs_dir, body)
    [message] = [r.getMessage() for r in caplog.records if r.name == "kron.chain"]
    assert message.endswith("succeeded while the daemon is stopping; not firing b")


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (Outcome.SUCCEEDED, Consequence.FIRE),
        (Outcome.FAILED, Consequence.CASCADE),
        (Outcome.TIMEOUT, Consequence.CASCADE),
        (Outcome.WAIT_TIMEOUT, Consequence.CASCADE),
        (Outcome.CANCELLED, Consequence.CASCADE),
        (Outcome.ABANDONED, Consequence.CASCADE),
        (Outcome.SKIPPED, Consequence.NOTHING),
        (Outcome.REPLACED, Consequence.NOTHING),
        (Outcome.MISSED, Consequence.NOTHING),
        (Outcome.DEPENDENCY_FAILED, Consequence.NOTHING),
        (Outcome.STARTED, Consequence.NOTHING),
    ],
)
def test_each_final_outcome_fires_breaks_or_leaves_the_chain(
    outcome: Outcome, expected: Consequence
) -> None:
    assert consequence(outcome) is expected


def test_validate_reports_a_trigger_cycle_and_an_unknown_job(
    jobs_dir: Path, write: Callable[[str, str], Path], cli: Callable[..., Any]
) -> None:
    write("a.toml", 'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\ntriggers = ["b"]\n')
    write("b.toml", MANUAL + 'command = ["true"]\ntriggers = ["a", "c"]\n')
    write("c.toml", MANUAL + 'command = ["true"]\ntriggers = ["nope", "deploy/bild"]\n')
    write("deploy/build.toml", MANUAL + 'command = ["true"]\n')
    result = cli("validate", "--jobs-dir", jobs_dir, "-q")
    assert result.code == 1
    assert sorted(line for line in result.lines if line.startswith(str(jobs_dir))) == [
        f"{jobs_dir}/a.toml:4:1: triggers: trigger cycle: a -> b -> a",
        f"{jobs_dir}/c.toml:4:1: triggers.0: unknown job 'nope'",
        f"{jobs_dir}/c.toml:4:1: triggers.1: unknown job 'deploy/bild'; did you mean 'deploy/build'?",
    ]


# -- kron tree ---------------------------------------------------------------------------------


def etl_jobs(jobs_dir: Path) -> dict[str, Job]:
    files = {
        "etl/extract": 'triggers = ["etl/transform", "etl/report"]\n',
        "etl/transform": 'triggers = ["etl/load"]\n',
        "etl/report": 'triggers = ["etl/load"]\n',
        "etl/load": "",
        "ops/backup": 'triggers = ["ops/verify"]\n',
        "ops/verify": "enabled = false\n",
        "probe": "",
    }
    return {
        job_id: make_job(jobs_dir, f"{job_id}.toml", MANUAL + 'command = ["true"]\n' + extra)
        for job_id, extra in files.items()
    }


OUTCOMES = {
    "etl/extract": "succeeded",
    "etl/transform": "failed",
    "etl/report": "succeeded",
    "etl/load": "dependency_failed",
    "probe": "succeeded",
}


def test_tree_draws_every_chain_from_its_root_with_each_jobs_last_outcome(
    jobs_dir: Path,
) -> None:
    assert render_tree(etl_jobs(jobs_dir), OUTCOMES) == (
        "etl/extract  succeeded\n"
        "├── etl/transform  failed\n"
        "│   └── etl/load  dependency_failed\n"
        "└── etl/report  succeeded\n"
        "    └── etl/load  dependency_failed  (see above)\n"
        "ops/backup  no runs yet\n"
        "└── ops/verify  no runs yet, disabled\n"
    )


def test_tree_of_one_job_starts_there(jobs_dir: Path) -> None:
    jobs = etl_jobs(jobs_dir)
    assert render_tree(jobs, OUTCOMES, root="etl/transform") == (
        "etl/transform  failed\n└── etl/load  dependency_failed\n"
    )
    assert render_tree(jobs, OUTCOMES, root="probe") == "probe  succeeded\n"


def test_roots_are_jobs_that_trigger_and_are_not_triggered(jobs_dir: Path) -> None:
    assert roots(etl_jobs(jobs_dir)) == ["etl/extract", "ops/backup"]


def test_tree_names_an_unknown_root_and_draws_nothing_without_triggers(jobs_dir: Path) -> None:
    jobs = etl_jobs(jobs_dir)
    with pytest.raises(KeyError, match="nope"):
        render_tree(jobs, {}, root="nope")
    assert render_tree({"probe": jobs["probe"]}, {}) == ""


def test_tree_marks_a_trigger_to_a_job_that_is_not_loaded_and_stops_at_a_cycle(
    jobs_dir: Path,
) -> None:
    a = make_job(jobs_dir, "a.toml", MANUAL + 'command = ["true"]\ntriggers = ["b", "ghost"]\n')
    b = make_job(jobs_dir, "b.toml", MANUAL + 'command = ["true"]\ntriggers = ["a"]\n')
    assert render_tree({"a": a, "b": b}, {}, root="a") == (
        "a  no runs yet\n"
        "├── b  no runs yet\n"
        "│   └── a  no runs yet  (see above)\n"
        "└── ghost  (unknown job)\n"
    )


def test_last_outcomes_reads_the_newest_terminal_line_past_started_and_delivery_lines(
    tmp_path: Path,
) -> None:
    def line(run_id: str, outcome: str) -> dict[str, Any]:
        return {"v": 1, "run_id": run_id, "job": "x", "outcome": outcome}

    delivery = {"v": 1, "run_id": "r2", "job": "a", "delivery": {"target": "slack", "ok": True}}
    for record in (line("r1", "failed"), line("r2", "succeeded"), delivery, line("r3", "started")):
        records.append(tmp_path / "a.runs.jsonl", record)
    records.append(tmp_path / "nested" / "b.runs.jsonl", line("r4", "missed"))
    records.append(tmp_path / "c.runs.jsonl", line("r5", "started"))
    big = tmp_path / "big.runs.jsonl"
    records.append(big, line("r6", "timeout"))
    records.append(big, {**line("r7", "succeeded"), "stdout": "x" * (records.TAIL_BYTES + 10)})
    found = last_outcomes(tmp_path, ["a", "nested/b", "c", "never", "big"])
    assert found == {"a": "succeeded", "nested/b": "missed", "big": "succeeded"}
