"""Healthcheck pings (healthchecks.io convention) against a real HTTP server on 127.0.0.1,
with real job processes and a fake clock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kron.engine.scheduler import Scheduler
from kron.model.run import Outcome, Trigger
from kron.notify.healthcheck import Healthchecks, ping_for, ping_url

from .clock import FakeClock
from .harness import DEADLINE_S, Events, make_job, until_true
from .servers import Answer, HttpRecorder, Sleeps, closed_port

T0 = datetime(2026, 3, 2, 10, 0, 30, tzinfo=UTC)
MANUAL = 'schedule = "@manual"\ntimezone = "UTC"\n'


@dataclass
class Rig:
    scheduler: Scheduler
    clock: FakeClock
    events: Events
    pings: Healthchecks
    sleeps: Sleeps
    jobs_dir: Path

    def add(self, name: str, text: str) -> None:
        self.scheduler.add(make_job(self.jobs_dir, name, text), cursor=self.clock.now())

    async def run(self, job_id: str) -> None:
        """Fire the job now, wait for its final record and for its pings."""
        run = self.scheduler.fire(job_id, slot=self.clock.now(), trigger=Trigger.MANUAL)
        assert run is not None
        assert run.task is not None
        await asyncio.wait_for(run.task, DEADLINE_S)
        await self.pings.drain(DEADLINE_S)


def drive(jobs_dir: Path, body: Callable[[Rig], Awaitable[None]]) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        scheduler = Scheduler(clock=clock)
        events = Events()
        scheduler.subscribe(events)
        sleeps = Sleeps()
        pings = Healthchecks(timeout_s=30, sleep=sleeps)
        pings.attach(scheduler)
        loop_task = asyncio.ensure_future(scheduler.run_forever())
        try:
            await body(Rig(scheduler, clock, events, pings, sleeps, jobs_dir))
        finally:
            await scheduler.shutdown(timedelta(seconds=5))
            await pings.drain(0)
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)

    asyncio.run(asyncio.wait_for(main(), 45))


def test_a_run_that_succeeds_pings_start_then_the_url(jobs_dir: Path) -> None:
    async def body(rig: Rig) -> None:
        async with HttpRecorder() as server:
            rig.add(
                "ok.toml",
                MANUAL + f'command = ["true"]\nhealthcheck = "{server.url("/ping/abc")}"\n',
            )
            await rig.run("ok")
            assert [(r.method, r.path) for r in server.requests] == [
                ("GET", "/ping/abc/start"),
                ("GET", "/ping/abc"),
            ]
            assert server.requests[0].headers["user-agent"] == "kron/0.1.0"

    drive(jobs_dir, body)


def test_a_run_that_fails_for_good_pings_start_per_attempt_and_fail_once_at_the_end(
    jobs_dir: Path,
) -> None:
    async def body(rig: Rig) -> None:
        async with HttpRecorder() as server:
            rig.add(
                "bad.toml",
                MANUAL
                + f'shell = "exit 2"\nhealthcheck = "{server.url("/ping/abc/")}"\n'
                + '[retry]\nattempts = 2\nbackoff = "fixed"\ndelay = "1s"\n',
            )
            run = rig.scheduler.fire("bad", slot=rig.clock.now(), trigger=Trigger.MANUAL)
            assert run is not None
            assert run.task is not None
            await rig.events.until(lambda e: len(e.ended()) == 1)
            await until_true(lambda: rig.clock.sleepers == 1)
            await rig.clock.advance(1)
            await asyncio.wait_for(run.task, DEADLINE_S)
            await rig.pings.drain(DEADLINE_S)
            assert server.paths() == ["/ping/abc/start", "/ping/abc/start", "/ping/abc/fail"]

    drive(jobs_dir, body)


def test_a_run_that_times_out_pings_fail(jobs_dir: Path) -> None:
    async def body(rig: Rig) -> None:
        async with HttpRecorder() as server:
            rig.add(
                "slow.toml",
                MANUAL
                + f'shell = "sleep 30"\ntimeout = "200ms"\nkill_grace = "1s"\nhealthcheck = "{server.url("/p")}"\n',
            )
            await rig.run("slow")
            assert rig.events.outcomes() == ["timeout"]
            assert server.paths() == ["/p/start", "/p/fail"]

    drive(jobs_dir, body)


@pytest.mark.parametrize(
    ("outcome", "ping"),
    [
        (Outcome.SUCCEEDED, ""),
        (Outcome.SKIPPED, ""),
        (Outcome.FAILED, "fail"),
        (Outcome.TIMEOUT, "fail"),
        (Outcome.WAIT_TIMEOUT, "fail"),
        (Outcome.CANCELLED, "fail"),
        (Outcome.ABANDONED, "fail"),
        (Outcome.REPLACED, None),
        (Outcome.MISSED, None),
        (Outcome.DEPENDENCY_FAILED, None),
    ],
)
def test_each_final_outcome_sends_success_fail_or_nothing(
    outcome: Outcome, ping: str | None
) -> None:
    assert ping_for(outcome) == ping


@pytest.mark.parametrize(
    ("url", "kind", "expected"),
    [
        ("https://hc-ping.com/5f1c", "start", "https://hc-ping.com/5f1c/start"),
        ("https://hc-ping.com/5f1c/", "fail", "https://hc-ping.com/5f1c/fail"),
        ("https://hc-ping.com/5f1c", "", "https://hc-ping.com/5f1c"),
        (
            "https://hc.example/ping/k/nightly?create=1",
            "start",
            "https://hc.example/ping/k/nightly/start?create=1",
        ),
    ],
)
def test_ping_urls_follow_the_healthchecks_io_convention(
    url: str, kind: str, expected: str
) -> None:
    assert ping_url(url, kind) == expected


def test_a_slow_start_ping_still_lands_before_the_outcome(jobs_dir: Path) -> None:
    async def body(rig: Rig) -> None:
        async with HttpRecorder() as server:
            release = asyncio.Event()
            server.answer("/p/start", Answer(gate=release))
            rig.add("ok.toml", MANUAL + f'command = ["true"]\nhealthcheck = "{server.url("/p")}"\n')
            run = rig.scheduler.fire("ok", slot=rig.clock.now(), trigger=Trigger.MANUAL)
            assert run is not None
            assert run.task is not None
            await asyncio.wait_for(run.task, DEADLINE_S)
            await server.until(1)
            assert rig.pings.in_flight == 2  # the success ping waits for /start's answer
            assert server.paths() == ["/p/start"]
            release.set()
            await rig.pings.drain(DEADLINE_S)
            assert server.paths() == ["/p/start", "/p"]

    drive(jobs_dir, body)


def test_a_hanging_healthcheck_does_not_delay_the_next_scheduled_run(jobs_dir: Path) -> None:
    async def body(rig: Rig) -> None:
        async with HttpRecorder() as server:
            server.answer("/p/start", Answer(hang=True))
            rig.add(
                "minutely.toml",
                'schedule = "* * * * *"\ntimezone = "UTC"\ncommand = ["true"]\n'
                + f'healthcheck = "{server.url("/p")}"\n',
            )
            await rig.clock.set(datetime(2026, 3, 2, 10, 1, tzinfo=UTC))
            await server.until(1)
            await rig.clock.set(datetime(2026, 3, 2, 10, 2, tzinfo=UTC))
            await rig.events.until(lambda e: len(e.ended()) == 2)
            assert [e.started_at for e in rig.events.started()] == [
                datetime(2026, 3, 2, 10, 1, tzinfo=UTC),
                datetime(2026, 3, 2, 10, 2, tzinfo=UTC),
            ]
            assert rig.events.outcomes() == ["succeeded", "succeeded"]
            assert server.paths() == ["/p/start"]
            assert rig.pings.in_flight == 4

    drive(jobs_dir, body)


def test_a_ping_that_cannot_connect_is_retried_then_logged_without_its_url(
    jobs_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = closed_port()

    async def body(rig: Rig) -> None:
        rig.add(
            "ok.toml",
            MANUAL + f'command = ["true"]\nhealthcheck = "http://127.0.0.1:{port}/secret-uuid"\n',
        )
        await rig.run("ok")
        assert rig.events.outcomes() == ["succeeded"]
        assert rig.sleeps.asked == [1.0, 2.0, 1.0, 2.0]

    with caplog.at_level(logging.WARNING, logger="kron.healthcheck"):
        drive(jobs_dir, body)
    assert [r.getMessage() for r in caplog.records if r.name == "kron.healthcheck"] == [
        "job ok: healthcheck start ping to 127.0.0.1 failed after 3 attempt(s): connection refused",
        "job ok: healthcheck success ping to 127.0.0.1 failed after 3 attempt(s): connection refused",
    ]


def test_a_ping_answered_with_a_client_error_is_not_retried(
    jobs_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(rig: Rig) -> None:
        async with HttpRecorder() as server:
            server.answer("/p/start", Answer(status=404))
            rig.add("ok.toml", MANUAL + f'command = ["true"]\nhealthcheck = "{server.url("/p")}"\n')
            await rig.run("ok")
            assert server.paths() == ["/p/start", "/p"]
            assert rig.sleeps.asked == []

    with caplog.at_level(logging.WARNING, logger="kron.healthcheck"):
        drive(jobs_dir, body)
    assert [r.getMessage() for r in caplog.records if r.name == "kron.healthcheck"] == [
        "job ok: healthcheck start ping to 127.0.0.1 failed after 1 attempt(s): HTTP 404"
    ]


def test_a_job_without_a_healthcheck_sends_no_ping(jobs_dir: Path) -> None:
    async def body(rig: Rig) -> None:
        async with HttpRecorder() as server:
            rig.add("plain.toml", MANUAL + 'command = ["true"]\n')
            await rig.run("plain")
            assert rig.events.outcomes() == ["succeeded"]
            assert (server.requests, rig.pings.in_flight) == ([], 0)

    drive(jobs_dir, body)
