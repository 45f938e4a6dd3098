"""The scheduler: overlap, catch-up, retries, clock steps, DST; real processes, a fake clock."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kron.engine.retries import retry_timeline
from kron.engine.scheduler import Scheduler
from kron.engine.slots import LATE_TOLERANCE, NextFires
from kron.model.run import Outcome, ProcessNote, RunEnded, Trigger
from kron.model.schedule import jitter_offset

from .clock import FakeClock
from .harness import Events, iso, make_job, until_true

T0 = datetime(2026, 3, 2, 10, 0, 30, tzinfo=UTC)  # a Monday, mid-minute


def drive(body: Callable[..., Awaitable[None]], *, start: datetime = T0, **kwargs: object) -> None:
    """Run `body(scheduler, clock, events)` with the scheduler's loop going; shut down after."""

    async def main() -> None:
        clock = FakeClock(start)
        scheduler = Scheduler(clock=clock, **kwargs)  # type: ignore[arg-type]
        events = Events()
        scheduler.subscribe(events)
        loop_task = asyncio.ensure_future(scheduler.run_forever())
        try:
            await body(scheduler, clock, events)
        finally:
            await scheduler.shutdown(timedelta(seconds=5))
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)

    asyncio.run(asyncio.wait_for(main(), 60))


def test_starting_mid_minute_does_not_fire_before_the_next_boundary(jobs_dir: Path) -> None:
    job = make_job(
        jobs_dir,
        "every-minute.toml",
        'schedule = "* * * * *"\ntimezone = "UTC"\ncommand = ["true"]\n',
    )

    async def body(s: Scheduler, clock: FakeClock, events: Events) -> None:
        s.add(job, cursor=clock.now())
        assert s.jobs["every-minute"].fire_at == datetime(2026, 3, 2, 10, 1, tzinfo=UTC)
        await clock.set(datetime(2026, 3, 2, 10, 0, 59, tzinfo=UTC))
        assert events.all == []
        await clock.set(datetime(2026, 3, 2, 10, 1, 0, 2000, tzinfo=UTC))
        await events.until(lambda e: len(e.ended()) == 1)
        assert [iso(e.slot) for e in events.ended()] == ["2026-03-02T10:01:00Z"]
        assert events.outcomes() == ["succeeded"]

    drive(body)


def test_forbid_skips_a_slot_while_the_previous_run_is_alive_and_records_it(jobs_dir: Path) -> None:
    job = make_job(
        jobs_dir,
        "slow.toml",
        'schedule = "* * * * *"\ntimezone = "UTC"\nshell = "sleep 30"\nkill_grace = "1s"\n',
    )

    async def body(s: Scheduler, clock: FakeClock, events: Events) -> None:
        s.add(job, cursor=clock.now())
        await clock.set(datetime(2026, 3, 2, 10, 1, tzinfo=UTC))
        await events.until(lambda e: len(e.started()) == 1)
        first = events.started()[0]
        await clock.set(datetime(2026, 3, 2, 10, 2, tzinfo=UTC))
        await events.until(lambda e: len(e.ended()) == 1)
        skipped = events.ended()[0]
        assert (skipped.outcome, iso(skipped.slot)) == (
            Outcome.SKIPPED,
            "2026-03-02T10:02:00Z",
        )
        assert skipped.error == f"run {first.run_id} is still alive (concurrency = forbid)"
        assert len(events.started()) == 1

    drive(body)


def test_replace_stops_the_old_tree_before_the_new_run_starts(
    jobs_dir: Path, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    job = make_job(
        jobs_dir,
        "replace.toml",
        f"""
        schedule = "* * * * *"
        timezone = "UTC"
        concurrency = "replace"
        kill_grace = "1s"
        shell = "echo $$ >> {pids}; trap '' TERM; sleep 30 & sleep 30; wait"
        """,
    )

    async def body(s: Scheduler, clock: FakeClock, events: Events) -> None:
        s.add(job, cursor=clock.now())
        await clock.set(datetime(2026, 3, 2, 10, 1, tzinfo=UTC))
        await until_true(lambda: pids.exists() and len(pids.read_text().split()) == 1)
        old_pgid = int(pids.read_text().split()[0])
        await clock.set(datetime(2026, 3, 2, 10, 2, tzinfo=UTC))
        await events.until(lambda e: len(e.started()) == 2)
        kinds = [
            type(e).__name__ + ":" + (e.outcome.value if isinstance(e, RunEnded) else "")
            for e in events.all
            if not isinstance(e, ProcessNote)
        ]
        assert kinds == ["RunStarted:", "RunEnded:replaced", "RunStarted:"]
        [first_note, *_] = [e for e in events.all if isinstance(e, ProcessNote)]
        assert first_note.pgid == old_pgid
        replaced = events.ended()[0]
        assert replaced.signal == 9  # it ignored SIGTERM, so SIGKILL after kill_grace
        with pytest.raises(ProcessLookupError):
            os.killpg(old_pgid, 0)

    drive(body)


def test_allow_runs_slots_in_parallel(jobs_dir: Path) -> None:
    job = make_job(
        jobs_dir,
        "par.toml",
        'schedule = "* * * * *"\ntimezone = "UTC"\nconcurrency = "allow"\nshell = "sleep 30"\nkill_grace = "1s"\n',
    )

    async def body(s: Scheduler, clock: FakeClock, events: Events) -> None:
        s.add(job, cursor=clock.now())
        await clock.set(datetime(2026, 3, 2, 10, 1, tzinfo=UTC))
        await clock.set(datetime(2026, 3, 2, 10, 2, tzinfo=UTC))
        await events.until(lambda e: len(e.started()) == 2)
        assert len(s.running()) == 2

    drive(body)


HOURLY = """
schedule = "0 * * * *"
timezone = "UTC"
command = ["true"]
"""
OUTAGE_START = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)  # the last slot that ran
BACK_AT = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)  # 08:00, 09:00 and 10:00 passed unrun


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ('catchup = "none"', [("missed", "08:00"), ("missed", "09:00"), ("missed", "10:00")]),
        (
            'catchup = "last"',
            [("missed", "08:00"), ("missed", "09:00"), ("catchup:succeeded", "10:00")],
        ),
        (
            'catchup = "all"\ncatchup_max = 2',
            [("missed", "08:00"), ("catchup:succeeded", "09:00"), ("catchup:succeeded", "10:00")],
        ),
        (
            'catchup = "all"\nstarting_deadline = "1h"',
            [("missed", "08:00"), ("missed", "09:00"), ("catchup:succeeded", "10:00")],
        ),
        (
            'catchup = "last"\nstarting_deadline = "20m"',
            [("missed", "08:00"), ("missed", "09:00"), ("missed", "10:00")],
        ),
    ],
)
def test_catchup_after_a_three_hour_outage(
    jobs_dir: Path, policy: str, expected: list[tuple[str, str]]
) -> None:
    job = make_job(jobs_dir, "hourly.toml", HOURLY + policy + "\n")

    async def body(s: Scheduler, clock: FakeClock, events: Events) -> None:
        s.add(job, cursor=OUTAGE_START, now=clock.now())
        runs = sum(1 for kind, _ in expected if kind.startswith("catchup"))
        await events.until(lambda e: len(e.ended()) == len(expected))
        got = sorted(
            (
                f"{e.trigger.value}:{e.outcome.value}"
                if e.trigger is Trigger.CATCHUP
                else e.outcome.value,
                e.slot.strftime("%H:%M"),
            )
            for e in events.ended()
        )
        assert got == sorted(expected)
        starts = [e.slot.strftime("%H:%M") for e in events.started()]
        assert starts == sorted(starts)
        assert len(starts) == runs
        assert s.jobs["hourly"].fire_at == datetime(2026, 3, 2, 11, 0, tzinfo=UTC)

    drive(body, start=BACK_AT)


def test_catchup_all_runs_one_at_a_time_under_forbid(jobs_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    job = make_job(
        jobs_dir,
        "h.toml",
        HOURLY.replace(
            'command = ["true"]', f'shell = "echo start >> {log}; sleep 0.2; echo end >> {log}"'
        )
        + 'catchup = "all"\n',
    )

    async def body(s: Scheduler, clock: FakeClock, events: Events) -> None:
        s.add(job, cursor=OUTAGE_START, now=clock.now())
        await events.until(lambda e: len(e.ended()) == 3)
        assert log.read_text().split() == ["start", "end"] * 3
        assert events.outcomes() == ["succeeded"] * 3

    drive(body, start=BACK_AT)


def test_a_backward_clock_step_never_reruns_a_recorded_slot(jobs_dir: Path) -> None:
    job = make_job(
        jobs_dir, "m.toml", 'schedule = "* * * * *"\ntimezone = "UTC"\ncommand = ["true"]\n'
    )

    async def body(s: Scheduler, clock: FakeClock, events: Events) -> None:
        s.add(job, cursor=clock.now())
        await clock.set(datetime(2026, 3, 2, 10, 1, tzinfo=UTC))
        await events.until(lambda e: len(e.ended()) == 1)
        await clock.set(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))  # NTP steps the clock back an hour
        await clock.set(datetime(2026, 3, 2, 10, 1, 30, tzinfo=UTC))
        await clock.set(datetime(2026, 3, 2, 10, 2, tzinfo=UTC))
        await events.until(lambda e: len(e.ended()) == 2)
        assert [iso(e.slot) for e in events.ended()] == [
            "2026-03-02T10:01:00Z",
            "2026-03-02T10:02:00Z",
        ]

    drive(body)


def test_a_forward_clock_step_is_handled_like_downtime(jobs_dir: Path) -> None:
    job = make_job(jobs_dir, "hourly.toml", HOURLY + 'catchup = "none"\n')

    async def body(s: Scheduler, clock: FakeClock, events: Events) -> None:
        s.add(job, cursor=clock.now())
        await clock.set(datetime(2026, 3, 2, 13, 0, 20, tzinfo=UTC))  # a 3 h step forward
        await events.until(lambda e: len(e.ended()) == 3)
        got = [(e.outcome.value, e.slot.strftime("%H:%M")) for e in events.ended()]
        assert got == [("missed", "11:00"), ("missed", "12:00"), ("succeeded", "13:00")]

    drive(body)


def test_a_slot_later_than_the_tolerance_counts_as_missed(jobs_dir: Path) -> None:
    job = make_job(jobs_dir, "hourly.toml", HOURLY)

    async def body(s: Scheduler, clock: FakeClock, events: Events) -> None:
        s.add(job, cursor=clock.now())
        await clock.set(
            datetime(2026, 3, 2, 11, 0, tzinfo=UTC) + LATE_TOLERANCE + timedelta(seconds=1)
        )
        await events.until(lambda e: len(e.ended()) == 1)
        assert events.outcomes() == ["missed"]

    drive(body)


def test_the_retry_timeline_of_a_failing_job(jobs_dir: Path) -> None:
    job = make_job(
        jobs_dir,
        "flaky.toml",
        """
        schedule = "@manual"
        command = ["false"]
        [retry]
        attempts = 4
        backoff = "exponential"
        delay = "10s"
        max_delay = "60s"
        """,
    )
    assert retry_timeline(job.retry) == [10.0, 20.0, 40.0]

    async def body(s: Scheduler, clock: FakeClock, events: Events) -> None:
        s.add(job, cursor=clock.now())
        s.fire("flaky", slot=clock.now(), trigger=Trigger.MANUAL)
        for n in range(1, 4):
            await events.until(lambda e, n=n: len(e.ended()) == n)
            await until_true(lambda: clock.sleepers >= 1)
            await clock.advance([10, 20, 40][n - 1])
        await events.until(lambda e: len(e.ended()) == 4)
        offsets = [(e.started_at - T0).total_seconds() for e in events.started()]
        assert offsets == [0.0, 10.0, 30.0, 70.0]
        assert [e.attempt for e in events.ended()] == [1, 2, 3, 4]
        assert events.outcomes() == ["failed"] * 4
        assert len({e.run_id for e in events.ended()}) == 4

    drive(body)


def test_a_slot_that_arrives_while_a_retry_is_pending_is_skipped_under_forbid(
    jobs_dir: Path,
) -> None:
    job = make_job(
        jobs_dir,
        "flaky.toml",
        'schedule = "* * * * *"\ntimezone = "UTC"\ncommand = ["false"]\n[retry]\nattempts = 2\ndelay = "90s"\n',
    )

    async def body(s: Scheduler, clock: FakeClock, events: Events) -> None:
        s.add(job, cursor=clock.now())
        await clock.set(datetime(2026, 3, 2, 10, 1, tzinfo=UTC))
        await events.until(lambda e: len(e.ended()) == 1)
        await clock.set(datetime(2026, 3, 2, 10, 2, tzinfo=UTC))  # the retry waits until 10:02:30
        await events.until(lambda e: len(e.ended()) == 2)
        assert events.outcomes() == ["failed", "skipped"]
        await clock.set(datetime(2026, 3, 2, 10, 2, 30, tzinfo=UTC))
        await events.until(lambda e: len(e.ended()) == 3)
        last = events.ended()[-1]
        assert (last.outcome.value, last.attempt, iso(last.slot)) == (
            "failed",
            2,
            "2026-03-02T10:01:00Z",
        )
        assert len(events.started()) == 2  # never two runs at once

    drive(body)


def test_retry_on_timeout_only_when_asked(jobs_dir: Path) -> None:
    job = make_job(
        jobs_dir,
        "t.toml",
        'schedule = "@manual"\nshell = "sleep 30"\ntimeout = "200ms"\nkill_grace = "200ms"\n[retry]\nattempts = 3\n',
    )

    async def body(s: Scheduler, clock: FakeClock, events: Events) -> None:
        s.add(job, cursor=clock.now())
        run = s.fire("t", slot=clock.now(), trigger=Trigger.MANUAL)
        assert run is not None
        assert run.task is not None
        ended = await asyncio.wait_for(run.task, 20)
        assert ended is not None
        assert (ended.outcome.value, ended.attempt) == ("timeout", 1)
        assert ended.signal == 15

    drive(body)


def test_a_missing_executable_is_a_failed_record_with_the_error(jobs_dir: Path) -> None:
    job = make_job(
        jobs_dir, "missing.toml", 'schedule = "@manual"\ncommand = ["/no/such/program", "x"]\n'
    )

    async def body(s: Scheduler, clock: FakeClock, events: Events) -> None:
        s.add(job, cursor=clock.now())
        run = s.fire("missing", slot=clock.now(), trigger=Trigger.MANUAL)
        assert run is not None
        assert run.task is not None
        ended = await asyncio.wait_for(run.task, 20)
        assert ended is not None
        assert ended.outcome is Outcome.FAILED
        assert ended.exit_code is None
        assert ended.error is not None
        assert "/no/such/program" in ended.error

    drive(body)


def test_success_codes_decide_success(jobs_dir: Path) -> None:
    job = make_job(
        jobs_dir, "codes.toml", 'schedule = "@manual"\nshell = "exit 3"\nsuccess_codes = [0, 3]\n'
    )

    async def body(s: Scheduler, clock: FakeClock, events: Events) -> None:
        s.add(job, cursor=clock.now())
        run = s.fire("codes", slot=clock.now(), trigger=Trigger.MANUAL)
        assert run is not None
        assert run.task is not None
        ended = await asyncio.wait_for(run.task, 20)
        assert ended is not None
        assert (ended.outcome.value, ended.exit_code) == ("succeeded", 3)

    drive(body)


def test_max_concurrent_queues_runs_and_never_drops_them(jobs_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    jobs = [
        make_job(
            jobs_dir,
            f"j{i}.toml",
            f'schedule = "* * * * *"\ntimezone = "UTC"\nshell = "echo start >> {log}; sleep 0.1; echo end >> {log}"\n',
        )
        for i in range(4)
    ]

    async def body(s: Scheduler, clock: FakeClock, events: Events) -> None:
        for job in jobs:
            s.add(job, cursor=clock.now())
        await clock.set(datetime(2026, 3, 2, 10, 1, tzinfo=UTC))
        await events.until(lambda e: len(e.ended()) == 4)
        assert events.outcomes() == ["succeeded"] * 4
        assert log.read_text().split() == ["start", "end"] * 4

    drive(body, max_concurrent=1)


def test_a_disabled_job_is_never_fired_by_its_schedule(jobs_dir: Path) -> None:
    job = make_job(
        jobs_dir,
        "off.toml",
        'schedule = "* * * * *"\ntimezone = "UTC"\nenabled = false\ncommand = ["true"]\n',
    )

    async def body(s: Scheduler, clock: FakeClock, events: Events) -> None:
        s.add(job, cursor=datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
        await clock.set(datetime(2026, 3, 2, 10, 5, tzinfo=UTC))
        assert s.jobs["off"].fire_at is None
        assert events.all == []

    drive(body)


def test_jitter_delays_the_fire_but_keeps_the_slot(jobs_dir: Path) -> None:
    job = make_job(
        jobs_dir,
        "j.toml",
        'schedule = "0 * * * *"\ntimezone = "UTC"\njitter = "5m"\ncommand = ["true"]\n',
    )
    offset = jitter_offset("j", timedelta(minutes=5))
    assert timedelta(0) < offset < timedelta(minutes=5)

    async def body(s: Scheduler, clock: FakeClock, events: Events) -> None:
        s.add(job, cursor=clock.now())
        slot = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
        assert s.jobs["j"].fire_at == slot + offset
        await clock.set(slot + offset)
        await events.until(lambda e: len(e.ended()) == 1)
        assert events.ended()[0].slot == slot
        assert events.started()[0].started_at == slot + offset

    drive(body)


def test_a_fixed_time_job_fires_once_on_both_dst_days_in_berlin(jobs_dir: Path) -> None:
    # Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET.
    job = make_job(
        jobs_dir,
        "dst.toml",
        'schedule = "30 2 * * *"\ntimezone = "Europe/Berlin"\ncommand = ["true"]\n',
    )

    async def body(s: Scheduler, clock: FakeClock, events: Events) -> None:
        s.add(job, cursor=clock.now())
        for day in range(3):
            fire_at = s.jobs["dst"].fire_at
            assert fire_at is not None
            await clock.set(fire_at)
            await events.until(lambda e, n=day + 1: len(e.ended()) == n)
        assert [iso(e.slot) for e in events.ended()] == [
            "2026-03-28T01:30:00Z",  # 02:30 CET
            "2026-03-29T01:00:00Z",  # 02:30 does not exist: once, at 03:00 CEST
            "2026-03-30T00:30:00Z",  # 02:30 CEST
        ]
        s.remove("dst")
        s.add(job, cursor=datetime(2026, 10, 24, 12, 0, tzinfo=UTC))
        for day in range(3):
            fire_at = s.jobs["dst"].fire_at
            assert fire_at is not None
            await clock.set(fire_at)
            await events.until(lambda e, n=day + 4: len(e.ended()) == n)
        assert [iso(e.slot) for e in events.ended()[3:]] == [
            "2026-10-25T00:30:00Z",  # 02:30 CEST, the first of the two 02:30s; not again at 01:30Z
            "2026-10-26T01:30:00Z",  # 02:30 CET
            "2026-10-27T01:30:00Z",
        ]

    drive(body, start=datetime(2026, 3, 27, 12, 0, tzinfo=UTC))


def test_a_removed_job_never_fires_again(jobs_dir: Path) -> None:
    job = make_job(
        jobs_dir, "m.toml", 'schedule = "* * * * *"\ntimezone = "UTC"\ncommand = ["true"]\n'
    )

    async def body(s: Scheduler, clock: FakeClock, events: Events) -> None:
        s.add(job, cursor=clock.now())
        s.remove("m")
        await clock.set(datetime(2026, 3, 2, 10, 5, tzinfo=UTC))
        assert events.all == []

    drive(body)


def test_cancel_stops_the_tree_and_records_cancelled(jobs_dir: Path) -> None:
    job = make_job(
        jobs_dir,
        "c.toml",
        'schedule = "@manual"\nshell = "sleep 30 & sleep 30; wait"\nkill_grace = "1s"\n',
    )

    async def body(s: Scheduler, clock: FakeClock, events: Events) -> None:
        s.add(job, cursor=clock.now())
        run = s.fire("c", slot=clock.now(), trigger=Trigger.MANUAL)
        assert run is not None
        assert run.task is not None
        await until_true(lambda: run.pgid is not None)
        assert s.cancel(run.run_id) is run
        ended = await asyncio.wait_for(run.task, 20)
        assert ended is not None
        assert ended.outcome is Outcome.CANCELLED
        assert run.pgid is not None
        with pytest.raises(ProcessLookupError):
            os.killpg(run.pgid, 0)

    drive(body)


# -- next-fire memo -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "zone"),
    [
        ("30 2 * * *", "Europe/Berlin"),  # a fixed time across both DST changes
        ("*/20 * * * *", "America/New_York"),
        ("0 * * * *", "Australia/Lord_Howe"),  # a 30-minute DST shift
        ("@every 7m", "UTC"),
        ("@at 2026-10-25T02:30", "Europe/Berlin"),
        ("@manual", "UTC"),
    ],
)
def test_the_remembered_next_fire_equals_the_schedule_for_any_order_of_questions(
    expr: str, zone: str
) -> None:
    import random
    from zoneinfo import ZoneInfo

    from kron.model.schedule import parse_schedule

    schedule = parse_schedule(expr, ZoneInfo(zone))
    remembered = NextFires()
    start = datetime(2026, 10, 24, 12, tzinfo=UTC)
    rng = random.Random(7)
    # Cursors of many jobs: ascending runs, repeats, steps back, and slots themselves.
    afters = sorted(start + timedelta(seconds=rng.uniform(0, 3 * 86400)) for _ in range(300))
    afters += [start + timedelta(seconds=rng.uniform(0, 3 * 86400)) for _ in range(300)]
    afters += [s for a in afters[:50] if (s := schedule.next_fire(a)) is not None]
    for after in afters:
        assert remembered.after(schedule, after) == schedule.next_fire(after), after
