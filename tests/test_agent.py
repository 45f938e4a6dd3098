"""The agent action: a real CLI script, a real chat-completions server on 127.0.0.1, budgets."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from kron.actions.base import ActionResult
from kron.actions.dispatch import execute
from kron.config.catalog import load_dir
from kron.config.settings import load_settings
from kron.engine import records
from kron.engine.budget import AgentBudget
from kron.engine.scheduler import Scheduler
from kron.engine.store import FileRecordStore
from kron.model.job import Job
from kron.model.run import Outcome, RunEnded, Trigger

from .clock import FakeClock
from .harness import DEADLINE_S, Events, make_job, until_true, write_job
from .test_http_action import Request, Server

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
USAGE = {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as srv:
        yield srv


def chat(answer: str = "All clear.", usage: dict[str, int] | None = USAGE) -> Any:
    """A chat-completions route that answers `answer` (and reports `usage`)."""

    def route(request: Request) -> tuple[int, dict[str, str], bytes]:
        body: dict[str, Any] = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": json.loads(request.body)["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer},
                    "finish_reason": "stop",
                }
            ],
        }
        if usage is not None:
            body["usage"] = usage
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    return route


def script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def agent_job(jobs_dir: Path, body: str, *, name: str = "sweep.toml", extra: str = "") -> Job:
    return make_job(jobs_dir, name, f'schedule = "@manual"\n{extra}\n[agent]\n{body}\n')


def api_body(server: Server, extra: str = "") -> str:
    return (
        f'prompt = "Audit the backups."\nendpoint = "{server.url}/v1"\nmodel = "small-1"\n{extra}'
    )


def call(job: Job, *, budget: AgentBudget | None = None) -> ActionResult:
    async def main() -> ActionResult:
        return await execute(job, run_env={}, stop=asyncio.Event(), budget=budget or AgentBudget())

    return asyncio.run(asyncio.wait_for(main(), DEADLINE_S))


# -- the CLI form -------------------------------------------------------------------------


def test_a_cli_agent_gets_the_prompt_on_stdin_and_its_answer_is_the_output(
    jobs_dir: Path, tmp_path: Path
) -> None:
    agent = script(tmp_path, "agent", 'printf "answer to: %s" "$(cat)"\n')
    result = call(
        agent_job(jobs_dir, f'prompt = "What changed?\\nList it."\ncommand = ["{agent}", "-p"]')
    )
    assert (result.exit_code, result.stdout, result.error) == (
        0,
        "answer to: What changed?\nList it.",
        None,
    )
    assert result.extra == {"agent": "cli"}


def test_a_prompt_argument_is_replaced_and_stdin_is_then_empty(
    jobs_dir: Path, tmp_path: Path
) -> None:
    agent = script(tmp_path, "agent", 'printf "arg=%s stdin=%s" "$2" "$(cat)"\n')
    result = call(
        agent_job(jobs_dir, f'prompt = "Audit X"\ncommand = ["{agent}", "--prompt", "{{prompt}}"]')
    )
    assert result.stdout == "arg=Audit X stdin="


def test_a_cli_agent_that_exits_non_zero_is_a_failed_run(jobs_dir: Path, tmp_path: Path) -> None:
    agent = script(tmp_path, "agent", "echo 'rate limited' >&2; exit 2\n")
    result = call(agent_job(jobs_dir, f'prompt = "hi"\ncommand = ["{agent}"]'))
    assert (result.exit_code, result.stderr) == (2, "rate limited\n")


def test_a_cli_agent_past_the_jobs_timeout_is_stopped(jobs_dir: Path, tmp_path: Path) -> None:
    agent = script(tmp_path, "agent", "exec sleep 60\n")
    result = call(
        agent_job(jobs_dir, f'prompt = "hi"\ncommand = ["{agent}"]', extra='timeout = "200ms"')
    )
    assert (result.timed_out, result.signal) == (True, 15)


def test_a_large_prompt_reaches_a_cli_that_reads_it_all(jobs_dir: Path, tmp_path: Path) -> None:
    agent = script(tmp_path, "agent", "wc -c\n")
    prompt = "x" * 300_000  # several pipe buffers
    result = call(agent_job(jobs_dir, f'prompt = "{prompt}"\ncommand = ["{agent}"]'))
    assert result.stdout.strip() == "300000"


# -- the API form -------------------------------------------------------------------------


def test_the_api_form_posts_a_chat_completion_and_records_the_answer_and_tokens(
    jobs_dir: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.routes["/v1/chat/completions"] = chat("Backups are fresh.")
    monkeypatch.setenv("KRON_TEST_KEY", "sk-test-123")
    job = agent_job(
        jobs_dir,
        api_body(
            server, 'api_key_env = "KRON_TEST_KEY"\nsystem = "You are terse."\nmax_tokens = 200'
        ),
    )
    result = call(job)
    assert (result.ok, result.stdout, result.error) == (True, "Backups are fresh.", None)
    assert result.extra == {
        "agent": "api",
        "agent_model": "small-1",
        "tokens_prompt": 30,
        "tokens_completion": 12,
        "tokens_total": 42,
    }
    [request] = server.requests
    assert (request.method, request.path, request.headers["Authorization"]) == (
        "POST",
        "/v1/chat/completions",
        "Bearer sk-test-123",
    )
    assert json.loads(request.body) == {
        "model": "small-1",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Audit the backups."},
        ],
        "max_tokens": 200,
    }


def test_an_api_that_reports_no_usage_records_no_tokens(jobs_dir: Path, server: Server) -> None:
    server.routes["/v1/chat/completions"] = chat("ok", usage=None)
    result = call(agent_job(jobs_dir, api_body(server)))
    assert (result.ok, result.extra) == (True, {"agent": "api", "agent_model": "small-1"})
    assert "Authorization" not in server.requests[0].headers


def test_a_missing_api_key_is_a_failed_run_that_names_the_variable(
    jobs_dir: Path, server: Server
) -> None:
    result = call(agent_job(jobs_dir, api_body(server, 'api_key_env = "KRON_TEST_ABSENT_KEY"')))
    assert (result.ok, result.error) == (
        False,
        "agent.api_key_env: KRON_TEST_ABSENT_KEY is not set",
    )
    assert server.requests == []


def test_the_api_key_can_come_from_the_env_file(jobs_dir: Path, server: Server) -> None:
    server.routes["/v1/chat/completions"] = chat()
    (jobs_dir / "secrets.env").write_text("AGENT_KEY=sk-from-file\n")
    call(
        agent_job(
            jobs_dir,
            api_body(server, 'api_key_env = "AGENT_KEY"'),
            extra='env_file = "secrets.env"',
        )
    )
    assert server.requests[0].headers["Authorization"] == "Bearer sk-from-file"


def test_an_api_error_is_a_failed_run_with_the_apis_message(jobs_dir: Path, server: Server) -> None:
    body = {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
    server.routes["/v1/chat/completions"] = lambda r: (401, {}, json.dumps(body).encode())
    result = call(agent_job(jobs_dir, api_body(server)))
    assert (result.ok, result.error) == (
        False,
        f"{server.url}/v1/chat/completions answered 401: Incorrect API key provided",
    )


def test_an_answer_that_is_not_a_chat_completion_is_a_failed_run(
    jobs_dir: Path, server: Server
) -> None:
    server.routes["/v1/chat/completions"] = lambda r: (200, {}, b"<html>proxy login</html>")
    result = call(agent_job(jobs_dir, api_body(server)))
    assert (result.ok, result.error) == (
        False,
        f"{server.url}/v1/chat/completions sent no chat completion: <html>proxy login</html>",
    )


def test_an_unreachable_endpoint_is_a_failed_run(jobs_dir: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    job = agent_job(
        jobs_dir, f'prompt = "hi"\nendpoint = "http://127.0.0.1:{port}/v1/"\nmodel = "m"'
    )
    result = call(job)
    assert (result.ok, result.error) == (
        False,
        f"POST http://127.0.0.1:{port}/v1/chat/completions: connection refused",
    )


def test_no_answer_within_the_request_timeout_is_a_failed_run(
    jobs_dir: Path, server: Server
) -> None:
    server.routes["/v1/chat/completions"] = lambda r: server.release.wait(DEADLINE_S) and chat()(r)
    result = call(agent_job(jobs_dir, api_body(server, 'request_timeout = "200ms"')))
    assert (result.ok, result.error) == (
        False,
        f"no answer from {server.url}/v1/chat/completions within 200ms (agent.request_timeout)",
    )


def test_a_stop_cancels_the_api_request(jobs_dir: Path, server: Server) -> None:
    server.routes["/v1/chat/completions"] = lambda r: server.release.wait(DEADLINE_S) and chat()(r)
    job = agent_job(jobs_dir, api_body(server))

    async def main() -> ActionResult:
        stop = asyncio.Event()
        task = asyncio.ensure_future(execute(job, run_env={}, stop=stop, budget=AgentBudget()))
        await until_true(lambda: len(server.requests) == 1)
        stop.set()
        return await task

    result = asyncio.run(asyncio.wait_for(main(), DEADLINE_S))
    assert (result.stopped, result.error) == (
        True,
        f"stopped while waiting for {server.url}/v1/chat/completions",
    )


# -- budgets ------------------------------------------------------------------------------


class Today:
    """A settable UTC clock for the budget's day."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def outcomes(results: list[ActionResult]) -> list[tuple[str | None, str | None]]:
    return [(r.outcome.value if r.outcome else None, r.error) for r in results]


def test_a_jobs_run_budget_skips_runs_once_spent_and_resets_the_next_utc_day(
    jobs_dir: Path, tmp_path: Path
) -> None:
    agent = script(tmp_path, "agent", "echo ok\n")
    job = agent_job(jobs_dir, f'prompt = "hi"\ncommand = ["{agent}"]\nmax_runs_per_day = 2')
    today = Today(datetime(2026, 3, 2, 23, 59, tzinfo=UTC))
    budget = AgentBudget(now=today)
    results = [call(job, budget=budget) for _ in range(3)]
    today.now = datetime(2026, 3, 3, 0, 0, 1, tzinfo=UTC)
    results.append(call(job, budget=budget))
    assert outcomes(results) == [
        (None, None),
        (None, None),
        (
            "skipped",
            "agent budget spent: 2 of 2 runs today (UTC) for this job (agent.max_runs_per_day)",
        ),
        (None, None),
    ]


def test_a_jobs_token_budget_counts_the_tokens_the_api_reported(
    jobs_dir: Path, server: Server
) -> None:
    server.routes["/v1/chat/completions"] = chat()
    job = agent_job(jobs_dir, api_body(server, "max_tokens_per_day = 50"))
    budget = AgentBudget(now=Today(T0))
    results = [call(job, budget=budget) for _ in range(3)]
    assert outcomes(results)[2] == (
        "skipped",
        "agent budget spent: 84 of 50 tokens today (UTC) for this job (agent.max_tokens_per_day)",
    )
    assert [r.ok for r in results] == [True, True, None]
    assert len(server.requests) == 2
    assert budget.spent_today(job.id) == (2, 84)


def test_global_budgets_from_kron_toml_count_every_agent_job(
    jobs_dir: Path, server: Server, write: Any
) -> None:
    server.routes["/v1/chat/completions"] = chat()
    write("kron.toml", "max_runs_per_day = 3\nmax_tokens_per_day = 1000\n")
    settings, problems = load_settings(jobs_dir)
    assert problems == []
    budget = AgentBudget.from_settings(settings, records_root=jobs_dir, now=Today(T0))
    a = agent_job(jobs_dir, api_body(server), name="a.toml")
    b = agent_job(jobs_dir, api_body(server), name="b.toml")
    results = [call(job, budget=budget) for job in (a, b, a, b)]
    assert outcomes(results)[3] == (
        "skipped",
        "agent budget spent: 3 of 3 agent runs today (UTC) across all jobs (max_runs_per_day in kron.toml)",
    )
    tokens = AgentBudget(max_tokens_per_day=80, records_root=jobs_dir, now=Today(T0))
    results = [call(job, budget=tokens) for job in (a, b, a)]
    assert outcomes(results)[2] == (
        "skipped",
        "agent budget spent: 84 of 80 agent tokens today (UTC) across all jobs (max_tokens_per_day in kron.toml)",
    )


def test_a_run_in_flight_counts_against_the_budget(jobs_dir: Path, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    agent = script(
        tmp_path,
        "agent",
        f"touch {tmp_path}/running; while [ ! -e {gate} ]; do sleep 0.01; done; echo done\n",
    )
    job = agent_job(jobs_dir, f'prompt = "hi"\ncommand = ["{agent}"]\nmax_runs_per_day = 1')
    budget = AgentBudget(now=Today(T0))

    async def main() -> list[ActionResult]:
        first = asyncio.ensure_future(execute(job, run_env={}, stop=asyncio.Event(), budget=budget))
        await until_true((tmp_path / "running").exists)
        second = await execute(job, run_env={}, stop=asyncio.Event(), budget=budget)
        gate.write_text("")
        return [await first, second]

    results = asyncio.run(asyncio.wait_for(main(), DEADLINE_S))
    assert outcomes(results) == [
        (None, None),
        (
            "skipped",
            "agent budget spent: 1 of 1 runs today (UTC) for this job (agent.max_runs_per_day)",
        ),
    ]


def test_a_skipped_agent_run_is_recorded_skipped_with_the_reason(
    jobs_dir: Path, server: Server
) -> None:
    server.routes["/v1/chat/completions"] = chat()
    job = agent_job(jobs_dir, api_body(server, "max_runs_per_day = 1"))
    budget = AgentBudget(now=Today(T0))

    async def main() -> None:
        scheduler = Scheduler(clock=FakeClock(T0), execute_action=partial(execute, budget=budget))
        events = Events()
        scheduler.subscribe(events)
        scheduler.add(job, cursor=T0, paused=True, now=T0)
        try:
            for n in (1, 2):
                scheduler.fire(job.id, slot=T0, trigger=Trigger.MANUAL)
                await events.until(lambda e, n=n: len(e.ended()) == n)  # type: ignore[misc]
        finally:
            await scheduler.shutdown(timedelta(seconds=5))
        assert [(e.outcome.value, e.error) for e in events.ended()] == [
            ("succeeded", None),
            (
                "skipped",
                "agent budget spent: 1 of 1 runs today (UTC) for this job (agent.max_runs_per_day)",
            ),
        ]

    asyncio.run(asyncio.wait_for(main(), DEADLINE_S))


def test_a_restarted_daemon_counts_todays_runs_from_the_records(
    jobs_dir: Path, server: Server
) -> None:
    server.routes["/v1/chat/completions"] = chat()
    job = agent_job(jobs_dir, api_body(server, "max_tokens_per_day = 100"), name="ops/sweep.toml")

    async def day_of_runs() -> None:
        clock = FakeClock(T0)
        scheduler = Scheduler(
            clock=clock,
            execute_action=partial(
                execute, budget=AgentBudget(records_root=jobs_dir, now=clock.now)
            ),
        )
        events = Events()
        scheduler.subscribe(events)
        scheduler.subscribe(
            FileRecordStore(jobs_dir=jobs_dir, records_dir=None, clock=clock).append
        )
        scheduler.add(job, cursor=T0, paused=True, now=T0)
        try:
            for n in (1, 2):
                scheduler.fire(job.id, slot=T0, trigger=Trigger.MANUAL)
                await events.until(lambda e, n=n: len(e.ended()) == n)  # type: ignore[misc]
        finally:
            await scheduler.shutdown(timedelta(seconds=5))

    asyncio.run(asyncio.wait_for(day_of_runs(), DEADLINE_S))
    assert [
        r["tokens_total"]
        for r in records.read(jobs_dir / "ops" / "sweep.runs.jsonl")
        if "agent" in r
    ] == [42, 42]
    later_that_day = AgentBudget(records_root=jobs_dir, now=Today(T0 + timedelta(hours=13)))
    assert outcomes([call(job, budget=later_that_day) for _ in range(2)]) == [
        (None, None),  # 84 of 100 tokens spent before the restart
        (
            "skipped",
            "agent budget spent: 126 of 100 tokens today (UTC) for this job (agent.max_tokens_per_day)",
        ),
    ]
    next_day = AgentBudget(records_root=jobs_dir, now=Today(T0 + timedelta(days=1)))
    assert outcomes([call(job, budget=next_day)]) == [(None, None)]


def test_seeding_counts_only_todays_agent_runs_that_ended(jobs_dir: Path) -> None:
    path = jobs_dir / "sweep.runs.jsonl"

    def ended(run_id: str, started: datetime, outcome: Outcome, **extra: Any) -> None:
        records.append(
            path,
            RunEnded(
                run_id=run_id,
                job="sweep",
                slot=started,
                trigger=Trigger.SCHEDULE,
                attempt=1,
                outcome=outcome,
                started_at=started,
                ended_at=started + timedelta(seconds=1),
                config_sha="x",
                extra=extra,
            ).to_json(),
        )

    ended("yesterday", T0 - timedelta(days=1), Outcome.SUCCEEDED, agent="api", tokens_total=500)
    ended("shell-run", T0, Outcome.SUCCEEDED)  # no `agent` field: not an agent run
    ended("today-1", T0, Outcome.SUCCEEDED, agent="api", tokens_total=40)
    ended("today-2", T0 + timedelta(hours=1), Outcome.FAILED, agent="cli")
    write_job(
        jobs_dir,
        "sweep.toml",
        'schedule = "@manual"\n[agent]\nprompt = "hi"\ncommand = ["true"]\nmax_runs_per_day = 3\n',
    )
    job = load_dir(jobs_dir).jobs["sweep"]
    budget = AgentBudget(records_root=jobs_dir, now=Today(T0 + timedelta(hours=2)))
    results = [call(job, budget=budget) for _ in range(2)]
    assert outcomes(results) == [
        (None, None),
        (
            "skipped",
            "agent budget spent: 3 of 3 runs today (UTC) for this job (agent.max_runs_per_day)",
        ),
    ]
    assert budget.spent_today() == (3, 40)


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            'prompt = "hi"',
            "sweep.toml:3:1: agent: an agent needs `command` (an agent CLI) or `endpoint` and `model`",
        ),
        (
            'prompt = "hi"\nendpoint = "http://127.0.0.1:1/v1"',
            "sweep.toml:3:1: agent: an agent needs `command` (an agent CLI) or `endpoint` and `model`",
        ),
        (
            'prompt = "hi"\ncommand = ["llm"]\nendpoint = "http://127.0.0.1:1/v1"\nmodel = "m"',
            "sweep.toml:6:1: agent.endpoint: give `command` or `endpoint`, not both",
        ),
        (
            'prompt = "hi"\nendpoint = "http://:1/v1"\nmodel = "m"',
            "sweep.toml:5:1: agent.endpoint: bad URL 'http://:1/v1': no host",
        ),
        ('command = ["llm"]', "sweep.toml:3:1: agent: 'prompt' is required"),
    ],
)
def test_a_bad_agent_job_is_a_validation_error_with_its_field_and_line(
    jobs_dir: Path, write: Any, body: str, expected: str
) -> None:
    write("sweep.toml", f'schedule = "@manual"\n\n[agent]\n{body}\n')
    assert [str(p).replace(f"{jobs_dir}/", "") for p in load_dir(jobs_dir).errors] == [expected]
