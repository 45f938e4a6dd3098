"""Hot reload against a real daemon and real files: one file at a time, never a half-applied set."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kron.engine import records
from kron.service.daemon import Daemon

from .clock import FakeClock
from .harness import DEADLINE_S, Events, read_records, until_true, write_job

T0 = datetime(2026, 3, 2, 7, 0, 30, tzinfo=UTC)
JOB = 'schedule = "{schedule}"\ntimezone = "UTC"\ncommand = ["true"]\n'


def job_text(schedule: str = "0 * * * *") -> str:
    return JOB.format(schedule=schedule)


def live(jobs_dir: Path, body: Callable[[Daemon, FakeClock, Events], Awaitable[None]]) -> None:
    """A daemon following `jobs_dir` for real, on a fake clock."""

    async def main() -> None:
        clock = FakeClock(T0)
        daemon = Daemon(jobs_dir, clock=clock, boot_id="b", control=False)
        await daemon.start()
        assert daemon.scheduler is not None
        events = Events()
        daemon.scheduler.subscribe(events)
        serving = asyncio.ensure_future(daemon.serve())
        # The watcher is ready once it sees a change; rewrite a throwaway file until it does.
        probe = jobs_dir / "zz-probe.toml"

        def seen() -> bool:
            probe.write_text(job_text())
            return "zz-probe" in daemon.catalog.active

        await until_true(seen)
        probe.unlink()
        await until_true(lambda: "zz-probe" not in daemon.catalog.active)
        daemon.stats.reloads = 0
        try:
            await body(daemon, clock, events)
        finally:
            daemon.request_stop()
            await asyncio.wait_for(serving, DEADLINE_S)

    asyncio.run(asyncio.wait_for(main(), 90))


def fire_at(daemon: Daemon, job_id: str) -> datetime | None:
    assert daemon.scheduler is not None
    js = daemon.scheduler.jobs.get(job_id)
    return js.fire_at if js else None


def test_an_edited_schedule_recomputes_that_jobs_next_fire(jobs_dir: Path) -> None:
    write_job(jobs_dir, "a.toml", job_text("0 * * * *"))
    write_job(jobs_dir, "b.toml", job_text("0 * * * *"))

    async def body(daemon: Daemon, clock: FakeClock, events: Events) -> None:
        assert fire_at(daemon, "a") == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
        before_b = daemon.catalog.active["b"]
        (jobs_dir / "a.toml").write_text(job_text("*/5 * * * *"))
        await until_true(lambda: fire_at(daemon, "a") == datetime(2026, 3, 2, 7, 5, tzinfo=UTC))
        assert daemon.catalog.active["b"] is before_b  # the other file was not re-read
        assert daemon.last_reload == {jobs_dir / "a.toml"}

    live(jobs_dir, body)


def test_an_invalid_edit_keeps_the_last_good_version_until_it_is_fixed(jobs_dir: Path) -> None:
    path = write_job(jobs_dir, "a.toml", job_text("0 * * * *"))
    write_job(jobs_dir, "other.toml", job_text("0 * * * *"))

    async def body(daemon: Daemon, clock: FakeClock, events: Events) -> None:
        good_sha = daemon.catalog.active["a"].config_sha
        path.write_text('schedule = "0 * * * *"\ncommand = [\n')
        await until_true(lambda: str(path) in daemon.catalog.invalid_files)
        assert daemon.catalog.active["a"].config_sha == good_sha
        assert fire_at(daemon, "a") == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
        # Other files' changes still apply meanwhile.
        (jobs_dir / "other.toml").write_text(job_text("30 * * * *"))
        await until_true(
            lambda: fire_at(daemon, "other") == datetime(2026, 3, 2, 7, 30, tzinfo=UTC)
        )
        [problem] = daemon.catalog.invalid_files[str(path)]
        assert problem.line == 3
        assert "TOML" in problem.message
        path.write_text(job_text("15 * * * *"))
        await until_true(lambda: str(path) not in daemon.catalog.invalid_files)
        assert fire_at(daemon, "a") == datetime(2026, 3, 2, 7, 15, tzinfo=UTC)
        audit = [
            json.loads(line)
            for line in (jobs_dir / ".kron" / "audit.jsonl").read_text().splitlines()
        ]
        assert [(e["event"], e["job"]) for e in audit if e["job"] == "a"] == [
            ("load", "a"),
            ("invalid", "a"),
            ("change", "a"),
        ]

    live(jobs_dir, body)


def test_a_deleted_file_never_fires_again(jobs_dir: Path) -> None:
    path = write_job(jobs_dir, "a.toml", job_text("* * * * *"))

    async def body(daemon: Daemon, clock: FakeClock, events: Events) -> None:
        path.unlink()
        await until_true(lambda: "a" not in daemon.catalog.active)
        assert daemon.scheduler is not None
        assert "a" not in daemon.scheduler.jobs
        await clock.set(datetime(2026, 3, 2, 7, 5, tzinfo=UTC))
        assert events.all == []

    live(jobs_dir, body)


def test_a_renamed_file_is_a_removal_and_an_addition(jobs_dir: Path) -> None:
    path = write_job(jobs_dir, "old.toml", job_text())

    async def body(daemon: Daemon, clock: FakeClock, events: Events) -> None:
        path.rename(jobs_dir / "new.toml")
        await until_true(lambda: set(daemon.catalog.active) == {"new"})
        assert daemon.scheduler is not None
        assert set(daemon.scheduler.jobs) == {"new"}

    live(jobs_dir, body)


def test_a_new_sub_folder_is_watched(jobs_dir: Path) -> None:
    async def body(daemon: Daemon, clock: FakeClock, events: Events) -> None:
        folder = jobs_dir / "team" / "deep"
        folder.mkdir(parents=True)
        (folder / "one.toml").write_text(job_text())
        await until_true(lambda: "team/deep/one" in daemon.catalog.active)
        (folder / "two.yaml").write_text("schedule: '@daily'\ntimezone: UTC\ncommand: ['true']\n")
        await until_true(lambda: "team/deep/two" in daemon.catalog.active)

    live(jobs_dir, body)


def test_a_folder_moved_in_whole_is_read(jobs_dir: Path, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    for i in range(20):
        write_job(staging, f"j{i}.toml", job_text())

    async def body(daemon: Daemon, clock: FakeClock, events: Events) -> None:
        staging.rename(jobs_dir / "batch")
        await until_true(lambda: sum(k.startswith("batch/") for k in daemon.catalog.active) == 20)
        shutil.rmtree(jobs_dir / "batch")
        await until_true(lambda: not any(k.startswith("batch/") for k in daemon.catalog.active))

    live(jobs_dir, body)


def test_five_hundred_files_appearing_at_once_are_applied_as_one_consistent_set(
    jobs_dir: Path, tmp_path: Path
) -> None:
    async def body(daemon: Daemon, clock: FakeClock, events: Events) -> None:
        for i in range(500):
            (jobs_dir / f"burst-{i:03}.toml").write_text(job_text("* * * * *"))
        await until_true(lambda: len(daemon.catalog.active) == 500)
        assert daemon.scheduler is not None
        assert len(daemon.scheduler.jobs) == 500
        await clock.set(datetime(2026, 3, 2, 7, 1, tzinfo=UTC))
        await events.until(lambda e: len(e.ended()) == 500)
        assert sorted(e.job for e in events.ended()) == [f"burst-{i:03}" for i in range(500)]
        assert len(events.started()) == 500  # each fired once: none twice, none lost

    live(jobs_dir, body)


def test_a_kron_toml_change_re_merges_defaults_into_every_job(jobs_dir: Path) -> None:
    write_job(jobs_dir, "kron.toml", '[defaults]\ntimeout = "5m"\n')
    write_job(jobs_dir, "a.toml", job_text())
    write_job(jobs_dir, "b.toml", job_text())

    async def body(daemon: Daemon, clock: FakeClock, events: Events) -> None:
        assert daemon.catalog.active["a"].timeout is not None
        (jobs_dir / "kron.toml").write_text('[defaults]\ntimeout = "7m"\n')
        await until_true(
            lambda: all(
                j.timeout and j.timeout.total_seconds() == 420
                for j in daemon.catalog.active.values()
            )
        )
        (jobs_dir / "kron.toml").write_text('[defaults]\ntimeout = "seven"\n')
        await until_true(lambda: str(jobs_dir / "kron.toml") in daemon.catalog.invalid_files)
        assert all(
            j.timeout and j.timeout.total_seconds() == 420 for j in daemon.catalog.active.values()
        )

    live(jobs_dir, body)


def test_record_writes_never_cause_a_reload(jobs_dir: Path) -> None:
    write_job(jobs_dir, "a.toml", job_text())

    async def body(daemon: Daemon, clock: FakeClock, events: Events) -> None:
        for i in range(50):
            records.append(jobs_dir / "a.runs.jsonl", {"run_id": str(i), "outcome": "succeeded"})
            records.append(jobs_dir / ".kron" / "audit.jsonl", {"event": "x"})
        (jobs_dir / "a.toml~").write_text("editor backup")
        (jobs_dir / ".a.toml.swp").write_text("vim swap")
        (jobs_dir / "b.toml").write_text(job_text())  # a real change, to know the watcher caught up
        await until_true(lambda: "b" in daemon.catalog.active)
        assert daemon.reloads == 1
        assert daemon.last_reload == {jobs_dir / "b.toml"}

    live(jobs_dir, body)


def test_a_running_job_finishes_under_the_definition_it_started_with(
    jobs_dir: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    path = write_job(
        jobs_dir,
        "slow.toml",
        f'schedule = "* * * * *"\ntimezone = "UTC"\nshell = "while [ ! -e {gate} ]; do sleep 0.02; done; echo v1"\n',
    )

    async def body(daemon: Daemon, clock: FakeClock, events: Events) -> None:
        old_sha = daemon.catalog.active["slow"].config_sha
        await clock.set(datetime(2026, 3, 2, 7, 1, tzinfo=UTC))
        await events.until(lambda e: len(e.started()) == 1)
        path.write_text('schedule = "* * * * *"\ntimezone = "UTC"\nshell = "echo v2"\n')
        await until_true(lambda: daemon.catalog.active["slow"].config_sha != old_sha)
        gate.touch()
        await events.until(lambda e: len(e.ended()) == 1)
        first = events.ended()[0]
        assert (first.config_sha, first.stdout) == (old_sha, "v1\n")
        await clock.set(datetime(2026, 3, 2, 7, 2, tzinfo=UTC))
        await events.until(lambda e: len(e.ended()) == 2)
        second = events.ended()[1]
        assert (second.config_sha, second.stdout) == (
            daemon.catalog.active["slow"].config_sha,
            "v2\n",
        )
        lines = read_records(jobs_dir / "slow.runs.jsonl")
        assert [r["config_sha"] for r in lines] == [
            old_sha,
            old_sha,
            second.config_sha,
            second.config_sha,
        ]

    live(jobs_dir, body)


def test_sighup_re_reads_everything(jobs_dir: Path) -> None:
    write_job(jobs_dir, "a.toml", job_text())

    async def body(daemon: Daemon, clock: FakeClock, events: Events) -> None:
        before = daemon.reloads
        os.kill(os.getpid(), signal.SIGHUP)
        await until_true(lambda: daemon.reloads == before + 1)
        assert daemon.last_reload is None  # a full scan
        assert set(daemon.catalog.active) == {"a"}

    live(jobs_dir, body)


def test_a_jobs_directory_moved_away_keeps_its_jobs_until_it_is_back(
    jobs_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_job(jobs_dir, "a.toml", job_text())
    away = tmp_path / "away"

    async def body(daemon: Daemon, clock: FakeClock, events: Events) -> None:
        with caplog.at_level(logging.ERROR, logger="kron.daemon"):
            os.rename(jobs_dir, away)
            await until_true(lambda: any("cannot watch" in m for m in caplog.messages))
            assert "a" in daemon.catalog.active
            assert fire_at(daemon, "a") is not None  # still scheduled
            assert jobs_dir.name not in os.listdir(tmp_path)  # and nothing recreated it
            write_job(away, "b.toml", job_text())
            os.rename(away, jobs_dir)
            # The watcher retries every 5 s; once back, what changed meanwhile is read.
            await until_true(lambda: "b" in daemon.catalog.active, timeout=DEADLINE_S + 10)
        gone = [m for m in caplog.messages if "is gone or not a folder" in m]
        assert gone == [
            f"the jobs directory {jobs_dir} is gone or not a folder; "
            "what is loaded (1 job) stays scheduled until it is back"
        ]
        assert sum("cannot watch" in m for m in caplog.messages) == 1

    live(jobs_dir, body)


def test_a_folder_link_to_a_folder_above_is_not_followed_on_reload(jobs_dir: Path) -> None:
    async def body(daemon: Daemon, clock: FakeClock, events: Events) -> None:
        folder = jobs_dir / "team"
        folder.mkdir()
        os.symlink("../..", folder / "up")  # would reach the jobs directory again, and more
        (folder / "one.toml").write_text(job_text())
        await until_true(lambda: "team/one" in daemon.catalog.active)
        assert sorted(daemon.catalog.active) == ["team/one"]
        problems = [p.message for p in daemon.catalog.folder_problems]
        assert any("holds the jobs directory; not read" in m for m in problems), problems

    live(jobs_dir, body)


def test_a_job_file_replaced_by_a_folder_of_that_name_is_removed(jobs_dir: Path) -> None:
    write_job(jobs_dir, "a.toml", job_text())

    async def body(daemon: Daemon, clock: FakeClock, events: Events) -> None:
        assert "a" in daemon.catalog.active
        os.unlink(jobs_dir / "a.toml")
        os.mkdir(jobs_dir / "a.toml")
        await until_true(lambda: "a" not in daemon.catalog.active)
        assert fire_at(daemon, "a") is None

    live(jobs_dir, body)
