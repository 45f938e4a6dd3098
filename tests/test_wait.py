"""Wait conditions: the language, real probes (ports, HTTP, files, commands, containers), the
polling loop, the circuit breaker, and what a run records when a wait holds it back."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kron.actions.base import RunEnvironment
from kron.actions.dispatch import execute
from kron.actions.wait import BREAKERS, Breakers, WaitResult, wait_until
from kron.config.catalog import load_dir
from kron.engine.scheduler import Scheduler
from kron.model.conditions import (
    AllOf,
    AnyOf,
    CmdProbe,
    DockerProbe,
    FileProbe,
    HttpProbe,
    Not,
    TcpProbe,
    parse_condition,
)
from kron.model.errors import ValueProblem
from kron.model.job import Job
from kron.model.run import Outcome, Trigger

from .clock import FakeClock
from .docker_engine import IMAGE, require_engine
from .harness import DEADLINE_S, Events, make_job, until_true
from .test_http_action import Server

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, DEADLINE_S))


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def listener() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as srv:
        yield srv


class FakeTime:
    """Monotonic seconds and a sleep that moves them; `on_sleep` runs after each sleep."""

    def __init__(self, on_sleep: Callable[[int], None] | None = None) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))
        await asyncio.sleep(0)


def waiting_job(
    jobs_dir: Path,
    until: str,
    *,
    every: str = "1s",
    timeout: str = "5s",
    on_timeout: str = "fail",
    probe_timeout: str = "2s",
    action: str = 'shell = "echo ran"',
    extra: str = "",
) -> Job:
    return make_job(
        jobs_dir,
        f"w-{uuid.uuid4().hex[:8]}.toml",
        f"""
        schedule = "@manual"
        {action}
        {extra}
        [wait]
        until = {json.dumps(until)}
        every = "{every}"
        timeout = "{timeout}"
        probe_timeout = "{probe_timeout}"
        on_timeout = "{on_timeout}"
        """,
    )


def wait_of(job: Job, *, time: FakeTime, breakers: Breakers | None = None) -> WaitResult:
    assert job.wait is not None
    return run(
        wait_until(
            job.wait,
            job=job,
            env=RunEnvironment.read(job).for_process({}),
            stop=asyncio.Event(),
            breakers=breakers or Breakers(clock=time),
            clock=time,
            sleep=time.sleep,
        )
    )


# -- the language -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "http://127.0.0.1:8080/health==200",
            HttpProbe(
                text="http://127.0.0.1:8080/health==200",
                url="http://127.0.0.1:8080/health",
                status="200",
            ),
        ),
        (
            "https://example.org/ready",
            HttpProbe(
                text="https://example.org/ready", url="https://example.org/ready", status="2xx"
            ),
        ),
        ("http://h/x == 5xx", HttpProbe(text="http://h/x == 5xx", url="http://h/x", status="5xx")),
        ("tcp://db:5432", TcpProbe(text="tcp://db:5432", host="db", port=5432)),
        ("tcp://[::1]:6379", TcpProbe(text="tcp://[::1]:6379", host="::1", port=6379)),
        ("file:/run/ready", FileProbe(text="file:/run/ready", path="/run/ready")),
        ("file:state/ready", FileProbe(text="file:state/ready", path="state/ready")),
        (
            "docker:web:healthy",
            DockerProbe(text="docker:web:healthy", container="web", state="healthy"),
        ),
        (
            "docker:web:running",
            DockerProbe(text="docker:web:running", container="web", state="running"),
        ),
        ("cmd:pg_isready -h db", CmdProbe(text="cmd:pg_isready -h db", script="pg_isready -h db")),
        ("  not( file:/a )  ", Not(item=FileProbe(text="file:/a", path="/a"))),
        (
            "and(tcp://db:5432, or(file:/a, not(file:/b)))",
            AllOf(
                items=(
                    TcpProbe(text="tcp://db:5432", host="db", port=5432),
                    AnyOf(
                        items=(
                            FileProbe(text="file:/a", path="/a"),
                            Not(item=FileProbe(text="file:/b", path="/b")),
                        )
                    ),
                )
            ),
        ),
        (
            "and(cmd:test \"$(echo a,b)\" = 'a,b', cmd:echo (x))",
            AllOf(
                items=(
                    CmdProbe(
                        text="cmd:test \"$(echo a,b)\" = 'a,b'",
                        script="test \"$(echo a,b)\" = 'a,b'",
                    ),
                    CmdProbe(text="cmd:echo (x)", script="echo (x)"),
                )
            ),
        ),
    ],
)
def test_conditions_parse_into_probes_and_combinators(text: str, expected: object) -> None:
    assert parse_condition(text) == expected


def test_a_combined_condition_is_written_back_in_canonical_form() -> None:
    assert (
        parse_condition("and( tcp://db:1 ,or(file:/a,file:/b))").text
        == "and(tcp://db:1, or(file:/a, file:/b))"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty condition"),
        ("   ", "empty condition"),
        (
            "ftp://files/x",
            "unknown scheme 'ftp' in 'ftp://files/x'; use http://, https://, tcp://, file:, docker:, k8s:, cmd:, and(...), or(...), not(...)",
        ),
        (
            "ready",
            "unknown condition 'ready'; use http://, https://, tcp://, file:, docker:, k8s:, cmd:, and(...), or(...), not(...)",
        ),
        (
            "and(tcp://db:1, file:/x",
            "unbalanced parentheses: the `and(` at column 1 is never closed",
        ),
        (
            "or(file:/a, not(file:/b)",
            "unbalanced parentheses: the `or(` at column 1 is never closed",
        ),
        ("tcp://db:1)", "unbalanced parentheses: the `)` at column 11 closes nothing"),
        (
            "and(cmd:echo (x, file:/a)",
            "unbalanced parentheses: the `(` at column 14 is never closed",
        ),
        ("and(cmd:echo 'x, file:/a)", "unterminated ' quote at column 14"),
        ("and()", "and() needs a condition (column 1)"),
        ("and(file:/a,,file:/b)", "empty condition at column 13"),
        ("and(file:/a, )", "empty condition at column 14"),
        ("not(file:/a, file:/b)", "not(...) takes one condition, got 2 (column 1)"),
        ("and(not(file:/a) file:/b)", "unexpected 'f' at column 18; expected `,` or `)`"),
        (
            "file:/a, file:/b",
            "unexpected ',' at column 8; combine conditions with and(...) or or(...)",
        ),
        ("http://:8080/health", "bad URL 'http://:8080/health': no host"),
        ("http://h:99999/", "bad URL 'http://h:99999/': the port must be a number from 1 to 65535"),
        ("http://h/x==ok", "bad expected status 'ok' in 'http://h/x==ok'; write ==200 or ==2xx"),
        ("tcp://db", "bad address 'tcp://db'; write tcp://host:port with a port from 1 to 65535"),
        (
            "tcp://db:5432/x",
            "bad address 'tcp://db:5432/x'; write tcp://host:port with a port from 1 to 65535",
        ),
        (
            "docker:web:up",
            "bad container condition 'docker:web:up'; write docker:NAME:healthy or docker:NAME:running",
        ),
        (
            "docker:web",
            "bad container condition 'docker:web'; write docker:NAME:healthy or docker:NAME:running",
        ),
        ("file:", "'file:' names no file; write file:/path"),
        ("cmd:  ", "'cmd:' has no command; write cmd:<shell command>"),
    ],
)
def test_a_bad_condition_says_what_is_wrong_and_where(text: str, message: str) -> None:
    with pytest.raises(ValueProblem) as caught:
        parse_condition(text)
    assert str(caught.value) == message


def test_kron_validate_reports_a_bad_condition_with_the_field_and_the_line(
    jobs_dir: Path, write: Any
) -> None:
    write(
        "deploy.toml",
        'schedule = "@manual"\nshell = "true"\n[wait]\nevery = "1s"\nuntil = "and(tcp://db:5432, file:/x"\n',
    )
    write("probe.yaml", "schedule: '@manual'\nshell: 'true'\nwait:\n  until: 'gopher://x'\n")
    errors = sorted(str(p).replace(str(jobs_dir) + os.sep, "") for p in load_dir(jobs_dir).errors)
    assert errors == [
        "deploy.toml:5:1: wait.until: unbalanced parentheses: the `and(` at column 1 is never closed",
        "probe.yaml:4:3: wait.until: unknown scheme 'gopher' in 'gopher://x'; use http://, https://, tcp://, file:, docker:, k8s:, cmd:, and(...), or(...), not(...)",
    ]


def test_the_validate_command_prints_the_field_and_line_of_a_bad_condition(
    jobs_dir: Path, write: Any, cli: Any
) -> None:
    write("deploy.toml", 'schedule = "@manual"\nshell = "true"\n[wait]\nuntil = "tcp://db"\n')
    result = cli("validate", "--jobs-dir", jobs_dir)
    assert result.code == 1
    assert (
        f"{jobs_dir / 'deploy.toml'}:4:1: wait.until: bad address 'tcp://db'; write tcp://host:port with a port from 1 to 65535"
        in result.out + result.err
    )


# -- real probes --------------------------------------------------------------------------


def test_a_tcp_condition_holds_when_the_port_accepts_and_names_a_refused_one(
    jobs_dir: Path, listener: int
) -> None:
    dead = closed_port()
    time = FakeTime()
    assert wait_of(waiting_job(jobs_dir, f"tcp://127.0.0.1:{listener}"), time=time).record() == {
        "satisfied": True,
        "waited_s": 0.0,
    }
    result = wait_of(
        waiting_job(jobs_dir, f"tcp://127.0.0.1:{dead}", every="1s", timeout="1s"), time=time
    )
    assert result.record() == {
        "satisfied": False,
        "waited_s": 1.0,
        "blocking": f"tcp://127.0.0.1:{dead}",
        "reason": "connection refused",
    }


def test_an_http_condition_compares_the_status_exactly_or_by_class(
    jobs_dir: Path, server: Server
) -> None:
    server.routes["/health"] = lambda request: (204, {}, b"")
    server.routes["/starting"] = lambda request: (503, {}, b"not yet")
    time = FakeTime()
    cases = {
        f"{server.url}/health==204": None,
        f"{server.url}/health": None,  # any 2xx
        f"{server.url}/health==2xx": None,
        f"{server.url}/health==200": "status 204, expected 200",
        f"{server.url}/starting": "status 503, expected 2xx",
        f"{server.url}/starting==503": None,
    }
    found = {}
    for until in cases:
        result = wait_of(waiting_job(jobs_dir, until, timeout="0s"), time=time)
        found[until] = result.reason
    assert found == cases
    assert [r.path for r in server.requests] == ["/health"] * 4 + ["/starting"] * 2


def test_a_file_condition_reads_a_relative_path_from_the_jobs_folder(jobs_dir: Path) -> None:
    (jobs_dir / "state").mkdir()
    (jobs_dir / "state" / "ready").write_text("")
    time = FakeTime()
    assert wait_of(waiting_job(jobs_dir, "file:state/ready"), time=time).satisfied is True
    assert (
        wait_of(waiting_job(jobs_dir, f"file:{jobs_dir}/state/ready"), time=time).satisfied is True
    )
    missing = wait_of(waiting_job(jobs_dir, "file:state/gone", timeout="0s"), time=time)
    assert (missing.blocking, missing.reason) == ("file:state/gone", "does not exist")


def test_a_cmd_condition_runs_in_the_jobs_folder_with_its_environment(jobs_dir: Path) -> None:
    time = FakeTime()
    job = waiting_job(
        jobs_dir,
        'cmd:test "$MODE" = live && test -d state',
        timeout="0s",
        extra='env = { MODE = "live" }',
    )
    assert wait_of(job, time=time).reason == "exit 1"
    (jobs_dir / "state").mkdir()
    assert wait_of(job, time=time).satisfied is True
    loud = wait_of(
        waiting_job(jobs_dir, "cmd:echo first >&2; echo 'db is down' >&2; exit 3", timeout="0s"),
        time=time,
    )
    assert loud.reason == "exit 3: db is down"


def test_combinators_report_the_part_that_held_the_wait_back(jobs_dir: Path, listener: int) -> None:
    (jobs_dir / "a").write_text("")
    time = FakeTime()
    cases = {
        f"and(file:a, tcp://127.0.0.1:{listener})": (True, None, None),
        "and(file:a, file:b)": (False, "file:b", "does not exist"),
        "or(file:b, file:a)": (True, None, None),
        "or(file:b, file:c)": (
            False,
            "or(file:b, file:c)",
            "none holds: file:b: does not exist; file:c: does not exist",
        ),
        "not(file:b)": (True, None, None),
        "not(file:a)": (False, "not(file:a)", "file:a holds"),
    }
    found = {}
    for until in cases:
        result = wait_of(waiting_job(jobs_dir, until, timeout="0s"), time=time)
        found[until] = (result.satisfied, result.blocking, result.reason)
    assert found == cases


def test_a_probe_that_outlasts_probe_timeout_counts_as_not_holding(
    jobs_dir: Path, server: Server
) -> None:
    server.routes["/stuck"] = lambda request: server.release.wait(DEADLINE_S) and (200, {}, b"")
    time = FakeTime()
    breakers = Breakers(clock=time)
    slow_cmd = waiting_job(jobs_dir, "cmd:exec sleep 30", timeout="0s", probe_timeout="200ms")
    slow_http = waiting_job(jobs_dir, f"{server.url}/stuck", timeout="0s", probe_timeout="200ms")
    assert wait_of(slow_cmd, time=time).reason == "still running after 200ms"
    assert wait_of(slow_http, time=time, breakers=breakers).reason == "no answer within 200ms"
    assert breakers.failures(f"{server.url}/stuck") == 1  # no answer: unreachable


# -- polling ------------------------------------------------------------------------------


def test_a_wait_polls_every_interval_until_the_condition_holds_and_says_what_held_it_back(
    jobs_dir: Path,
) -> None:
    ready = jobs_dir / "ready"
    time = FakeTime(on_sleep=lambda n: ready.write_text("") if n == 3 else None)
    result = wait_of(waiting_job(jobs_dir, "file:ready", every="2s", timeout="1m"), time=time)
    assert result.record() == {
        "satisfied": True,
        "waited_s": 6.0,
        "blocking": "file:ready",
        "reason": "does not exist",
    }
    assert time.sleeps == [2.0, 2.0, 2.0]


def test_a_wait_probes_once_more_at_the_deadline_and_then_gives_up(jobs_dir: Path) -> None:
    time = FakeTime()
    result = wait_of(waiting_job(jobs_dir, "file:never", every="2s", timeout="5s"), time=time)
    assert time.sleeps == [2.0, 2.0, 1.0]
    assert result.record() == {
        "satisfied": False,
        "waited_s": 5.0,
        "blocking": "file:never",
        "reason": "does not exist",
    }
    assert result.describe() == "wait timed out after 5s: file:never (does not exist)"


# -- the circuit breaker ------------------------------------------------------------------


def test_a_breaker_opens_after_three_unreachable_probes_and_backs_off_exponentially_to_a_cap() -> (
    None
):
    time = FakeTime()
    breakers = Breakers(
        threshold=3, base=timedelta(seconds=5), cap=timedelta(seconds=30), clock=time
    )
    cool_downs = []
    for _ in range(7):
        breakers.record("tcp://db:1", reachable=False)
        cool_downs.append(breakers.blocked_for("tcp://db:1"))
    assert cool_downs == [0.0, 0.0, 5.0, 10.0, 20.0, 30.0, 30.0]
    time.now += 30
    assert breakers.blocked_for("tcp://db:1") == 0.0  # half-open: one probe may go
    breakers.record("tcp://db:1", reachable=True)
    breakers.record("tcp://db:1", reachable=False)
    assert (breakers.failures("tcp://db:1"), breakers.blocked_for("tcp://db:1")) == (1, 0.0)
    assert breakers.blocked_for("tcp://other:1") == 0.0


def test_a_dead_target_is_not_hammered_while_its_breaker_is_open(
    jobs_dir: Path, server: Server
) -> None:
    server.routes["/health"] = lambda request: None  # accept, then hang up without an answer
    time = FakeTime()
    breakers = Breakers(
        threshold=3, base=timedelta(seconds=5), cap=timedelta(minutes=1), clock=time
    )
    job = waiting_job(jobs_dir, f"{server.url}/health", every="1s", timeout="10s")
    result = wait_of(job, time=time, breakers=breakers)
    # Probes at 0, 1 and 2 s fail; open until 7 s; the probe at 7 s fails; open until 17 s.
    assert len(server.requests) == 4
    assert result.record() == {
        "satisfied": False,
        "waited_s": 10.0,
        "blocking": f"{server.url}/health",
        "reason": "not probed: unreachable 4 times in a row; next probe in 7.0s",
    }


def test_a_target_that_answers_not_yet_is_polled_at_the_waits_own_pace(
    jobs_dir: Path, server: Server
) -> None:
    server.routes["/ready"] = lambda request: (503, {}, b"starting")
    time = FakeTime()
    result = wait_of(
        waiting_job(jobs_dir, f"{server.url}/ready", every="1s", timeout="10s"), time=time
    )
    assert len(server.requests) == 11
    assert result.reason == "status 503, expected 2xx"


def test_the_breaker_state_is_shared_by_later_runs_in_the_process(
    jobs_dir: Path, server: Server
) -> None:
    server.routes["/hang-up"] = lambda request: None
    # The first wait polls on a fake clock (probes at 0, 1 and 2 s, then the breaker opens for
    # 5 s of real time); the second is a whole run right after, on the real clock.
    first = wait_of(
        waiting_job(jobs_dir, f"{server.url}/hang-up", every="1s", timeout="10s"),
        time=FakeTime(),
        breakers=BREAKERS,
    )
    job = waiting_job(jobs_dir, f"{server.url}/hang-up", every="100ms", timeout="100ms")
    second = run(execute(job, run_env={}, stop=asyncio.Event()))
    assert len(server.requests) == 3  # all from the first wait: the run did not probe at all
    assert first.satisfied is False
    assert second.outcome is Outcome.WAIT_TIMEOUT
    assert re.fullmatch(
        r"not probed: unreachable 3 times in a row; next probe in \d\.\ds",
        second.extra["wait"]["reason"],
    )


# -- in a run -----------------------------------------------------------------------------


def drive(job: Job, body: Callable[[Scheduler, Events], Any]) -> None:
    async def main() -> None:
        scheduler = Scheduler(clock=FakeClock(T0))
        events = Events()
        scheduler.subscribe(events)
        scheduler.add(job, cursor=T0, paused=True, now=T0)
        try:
            await body(scheduler, events)
        finally:
            await scheduler.shutdown(timedelta(seconds=5))

    run(main())


@pytest.mark.parametrize(
    ("on_timeout", "outcome", "stdout", "error"),
    [
        (
            "fail",
            Outcome.WAIT_TIMEOUT,
            "",
            "wait timed out after 200ms: file:missing (does not exist)",
        ),
        (
            "skip",
            Outcome.SKIPPED,
            "",
            "wait timed out after 200ms: file:missing (does not exist)",
        ),
        ("run", Outcome.SUCCEEDED, "ran\n", None),
    ],
)
def test_on_timeout_decides_whether_the_action_runs_and_the_record_says_why(
    jobs_dir: Path, on_timeout: str, outcome: Outcome, stdout: str, error: str | None
) -> None:
    job = waiting_job(
        jobs_dir, "file:missing", every="100ms", timeout="200ms", on_timeout=on_timeout
    )

    async def body(scheduler: Scheduler, events: Events) -> None:
        scheduler.fire(job.id, slot=T0, trigger=Trigger.MANUAL)
        await events.until(lambda e: len(e.ended()) == 1)
        ended = events.ended()[0]
        assert (ended.outcome, ended.stdout, ended.error) == (outcome, stdout, error)
        wait = dict(ended.extra["wait"])
        assert wait.pop("waited_s") >= 0.2
        assert wait == {"satisfied": False, "blocking": "file:missing", "reason": "does not exist"}

    drive(job, body)


def test_a_satisfied_wait_is_recorded_beside_the_actions_output(
    jobs_dir: Path, listener: int
) -> None:
    job = waiting_job(jobs_dir, f"tcp://127.0.0.1:{listener}")

    async def body(scheduler: Scheduler, events: Events) -> None:
        scheduler.fire(job.id, slot=T0, trigger=Trigger.MANUAL)
        await events.until(lambda e: len(e.ended()) == 1)
        ended = events.ended()[0]
        assert (ended.outcome, ended.stdout, ended.extra["wait"]["satisfied"]) == (
            Outcome.SUCCEEDED,
            "ran\n",
            True,
        )

    drive(job, body)


def test_cancelling_a_run_ends_its_wait_at_once(jobs_dir: Path) -> None:
    probes = jobs_dir / "probes.log"
    job = waiting_job(jobs_dir, f"cmd:echo probe >> {probes}; false", every="100ms", timeout="1h")

    async def body(scheduler: Scheduler, events: Events) -> None:
        run_ = scheduler.fire(job.id, slot=T0, trigger=Trigger.MANUAL)
        assert run_ is not None
        await until_true(lambda: probes.exists() and len(probes.read_text().splitlines()) >= 2)
        scheduler.cancel(run_.run_id)
        await events.until(lambda e: len(e.ended()) == 1)
        ended = events.ended()[0]
        assert (ended.outcome, ended.stdout) == (Outcome.CANCELLED, "")
        assert ended.error == f"stopped while waiting for cmd:echo probe >> {probes}; false"
        assert ended.extra["wait"]["reason"] == "exit 1"

    drive(job, body)


def test_cancelling_a_run_during_a_slow_cmd_probe_ends_the_probes_processes(jobs_dir: Path) -> None:
    pid_file = jobs_dir / "probe.pid"
    job = waiting_job(jobs_dir, f"cmd:echo $$ > {pid_file}; exec sleep 30", timeout="1h")

    async def body(scheduler: Scheduler, events: Events) -> None:
        run_ = scheduler.fire(job.id, slot=T0, trigger=Trigger.MANUAL)
        assert run_ is not None
        await until_true(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
        scheduler.cancel(run_.run_id)
        await events.until(lambda e: len(e.ended()) == 1)
        assert events.outcomes() == ["cancelled"]
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid_file.read_text()), 0)

    drive(job, body)


# -- containers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    client = require_engine()
    yield client
    client.close()


def _health(client: Any, name: str) -> str:
    return str(client.api.inspect_container(name)["State"]["Health"]["Status"])


def test_a_container_that_turns_unhealthy_before_healthy_ends_the_wait_healthy(
    jobs_dir: Path, engine: Any
) -> None:
    import docker

    name = f"kron-test-health-{uuid.uuid4().hex[:8]}"
    ms = 1_000_000
    container = engine.containers.run(
        IMAGE,
        ["sleep", "60"],
        name=name,
        detach=True,
        healthcheck=docker.types.Healthcheck(
            test=["CMD-SHELL", "test -f /tmp/ready"],
            interval=200 * ms,
            timeout=2000 * ms,
            retries=1,
        ),
    )
    probes = jobs_dir / "probes.log"
    job = waiting_job(
        jobs_dir,
        f"and(cmd:echo probe >> {probes}, docker:{name}:healthy)",
        every="100ms",
        timeout="30s",
    )

    def polls() -> int:
        return len(probes.read_text().splitlines()) if probes.exists() else 0

    async def body() -> Any:
        task = asyncio.ensure_future(execute(job, run_env={}, stop=asyncio.Event()))
        await until_true(lambda: _health(engine, name) == "unhealthy")
        seen = polls()
        await until_true(lambda: polls() >= seen + 3)
        assert not task.done()  # unhealthy is not final
        await asyncio.to_thread(container.exec_run, ["touch", "/tmp/ready"])
        return await task

    try:
        result = run(body())
    finally:
        container.remove(force=True)
    assert (result.stdout, result.extra["wait"]["satisfied"]) == ("ran\n", True)


def test_a_running_condition_holds_for_a_started_container_only(
    jobs_dir: Path, engine: Any
) -> None:
    name = f"kron-test-running-{uuid.uuid4().hex[:8]}"
    container = engine.containers.create(IMAGE, ["sleep", "60"], name=name)
    time = FakeTime()
    try:
        created = wait_of(waiting_job(jobs_dir, f"docker:{name}:running", timeout="0s"), time=time)
        container.start()
        started = wait_of(waiting_job(jobs_dir, f"docker:{name}:running", timeout="0s"), time=time)
        no_check = wait_of(waiting_job(jobs_dir, f"docker:{name}:healthy", timeout="0s"), time=time)
    finally:
        container.remove(force=True)
    gone = wait_of(waiting_job(jobs_dir, f"docker:{name}:running", timeout="0s"), time=time)
    assert (created.satisfied, created.reason) == (False, "container is created")
    assert started.satisfied is True
    assert no_check.reason == "container is running and has no health check"
    assert gone.reason == f"no container named {name}"


def test_an_unreachable_engine_holds_a_container_condition_back(
    jobs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    time = FakeTime()
    breakers = Breakers(clock=time)
    result = wait_of(
        waiting_job(jobs_dir, "docker:web:healthy", timeout="0s"), time=time, breakers=breakers
    )
    assert (
        result.reason
        == "docker engine not reachable at unix:///nonexistent/docker.sock: no such file or directory"
    )
    assert breakers.failures("docker:web:healthy") == 1
