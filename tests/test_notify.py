"""Notifications: real HTTP and SMTP servers on 127.0.0.1, real job and notifier processes, a fake
clock. Each delivery is checked by what the server received and by the line it left in the
job's records."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme

from kron.engine import records
from kron.engine.scheduler import Scheduler
from kron.engine.store import FileRecordStore, last_outcomes
from kron.model.job import Job
from kron.model.run import HOST, Outcome, RunEnded, Trigger
from kron.notify.deliveries import Deliveries, backoff_s, wants
from kron.notify.message import (
    CUT_MARK,
    EMAIL_TEXT_MAX,
    JSON_OUTPUT_MAX,
    SLACK_TEXT_MAX,
    TELEGRAM_TEXT_MAX,
    build_message,
    render_json,
    render_text,
    utf16_len,
)

from .clock import FakeClock
from .harness import DEADLINE_S, Events, make_job, read_records, until_true
from .servers import Answer, HttpRecorder, MailRecorder, Sleeps, closed_port, json_answer

T0 = datetime(2026, 3, 2, 10, 0, 30, tzinfo=UTC)
AT = "2026-03-02T10:00:30Z"
MANUAL = 'schedule = "@manual"\ntimezone = "UTC"\n'
NOISY_FAILURE = MANUAL + "shell = 'echo out; echo err >&2; exit 3'\n"


@dataclass
class Rig:
    scheduler: Scheduler
    clock: FakeClock
    events: Events
    sink: FileRecordStore
    deliveries: Deliveries
    sleeps: Sleeps
    jobs_dir: Path

    def add(self, name: str, text: str) -> Job:
        job = make_job(self.jobs_dir, name, text)
        self.scheduler.add(job, cursor=self.clock.now())
        return job

    async def run(self, job_id: str) -> RunEnded:
        """Fire the job now (manual), wait for its final record and for its deliveries."""
        run = self.scheduler.fire(job_id, slot=self.clock.now(), trigger=Trigger.MANUAL)
        assert run is not None
        assert run.task is not None
        ended = await asyncio.wait_for(run.task, DEADLINE_S)
        assert ended is not None
        await self.deliveries.drain(DEADLINE_S)
        return ended

    def delivery_lines(self, job_id: str) -> list[dict[str, Any]]:
        return [r for r in read_records(self.sink.path(job_id)) if "delivery" in r]


def drive(jobs_dir: Path, body: Callable[[Rig], Awaitable[None]], *, start: datetime = T0) -> None:
    async def main() -> None:
        clock = FakeClock(start)
        scheduler = Scheduler(clock=clock)
        sink = FileRecordStore(jobs_dir=jobs_dir, records_dir=None, clock=clock)
        scheduler.subscribe(sink.append)
        events = Events()
        scheduler.subscribe(events)
        sleeps = Sleeps()
        deliveries = Deliveries(store=sink, clock=clock, sleep=sleeps)
        deliveries.attach(scheduler)
        loop_task = asyncio.ensure_future(scheduler.run_forever())
        try:
            await body(Rig(scheduler, clock, events, sink, deliveries, sleeps, jobs_dir))
        finally:
            await scheduler.shutdown(timedelta(seconds=5))
            await deliveries.drain(0)
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)

    asyncio.run(asyncio.wait_for(main(), 45))


def delivery_line(
    ended: RunEnded, target: str, *, ok: bool = True, attempts: int = 1, error: str | None = None
) -> dict[str, Any]:
    return {
        "v": 1,
        "run_id": ended.run_id,
        "job": ended.job,
        "delivery": {"target": target, "ok": ok, "attempts": attempts, "error": error},
        "at": AT,
    }


def failure_text(ended: RunEnded, *, headline: str) -> str:
    return (
        f"{headline}\n"
        f"run: {ended.run_id} (attempt 1)\n"
        f"trigger: manual, slot {AT}\n"
        f"host: {HOST}\n"
        "duration: 0.0 s\n"
        "exit code: 3\n"
        "\n"
        "stderr (end):\n"
        "err\n"
        "\n"
        "stdout (end):\n"
        "out"
    )


# -- each channel ------------------------------------------------------------------------------


def test_a_webhook_receives_the_message_as_json_with_its_headers(jobs_dir: Path) -> None:
    async def body(rig: Rig) -> None:
        async with HttpRecorder() as server:
            url = server.url("/hook")
            rig.add(
                "web.toml",
                NOISY_FAILURE
                + f'[[notify]]\nwebhook = {{ url = "{url}", headers = {{ X-Team = "ops" }} }}\n',
            )
            ended = await rig.run("web")
            [request] = server.requests
            assert (request.method, request.path) == ("POST", "/hook")
            assert request.headers["x-team"] == "ops"
            assert request.headers["content-type"] == "application/json"
            assert request.headers["user-agent"] == "kron/0.1.0"
            assert request.json() == {
                "v": 1,
                "job": "web",
                "outcome": "failed",
                "recovery": False,
                "summary": f"kron: web failed (exit code 3, after 0.0 s) on {HOST}",
                "run_id": ended.run_id,
                "attempt": 1,
                "trigger": "manual",
                "slot": AT,
                "started_at": AT,
                "ended_at": AT,
                "duration_s": 0.0,
                "host": HOST,
                "exit_code": 3,
                "signal": None,
                "error": None,
                "upstream": None,
                "stdout": "out\n",
                "stderr": "err\n",
                "truncated": False,
            }
            assert rig.delivery_lines("web") == [delivery_line(ended, "webhook")]

    drive(jobs_dir, body)


def test_slack_gets_incoming_webhook_text_with_output_in_code_blocks_and_mentions_escaped(
    jobs_dir: Path,
) -> None:
    async def body(rig: Rig) -> None:
        async with HttpRecorder() as server:
            rig.add(
                "chat.toml",
                MANUAL
                + "shell = 'echo \"<!channel> & co\"; exit 3'\n"
                + f'[[notify]]\nslack = "{server.url("/services/T0/B0/x")}"\n',
            )
            ended = await rig.run("chat")
            [request] = server.requests
            assert request.path == "/services/T0/B0/x"
            assert request.json() == {
                "text": (
                    "*kron: chat failed*\n"
                    f"run: {ended.run_id} (attempt 1)\n"
                    f"trigger: manual, slot {AT}\n"
                    f"host: {HOST}\n"
                    "duration: 0.0 s\n"
                    "exit code: 3\n"
                    "\n"
                    "stdout (end):\n"
                    "```\n"
                    "&lt;!channel&gt; &amp; co\n"
                    "```"
                )
            }
            assert rig.delivery_lines("chat") == [delivery_line(ended, "slack")]

    drive(jobs_dir, body)


def test_telegram_posts_send_message_to_the_bot_api_with_the_token_from_the_job_env(
    jobs_dir: Path,
) -> None:
    async def body(rig: Rig) -> None:
        async with HttpRecorder() as server:
            server.answer("/bot123:ABC/sendMessage", json_answer({"ok": True, "result": {}}))
            rig.add(
                "tg.toml",
                NOISY_FAILURE
                + '[env]\nTG_TOKEN = { value = "123:ABC", secret = true }\n'
                + "[[notify]]\n"
                + f'telegram = {{ bot_token_env = "TG_TOKEN", chat_id = -100123, base_url = "{server.url("")}" }}\n',
            )
            ended = await rig.run("tg")
            [request] = server.requests
            assert (request.method, request.path) == ("POST", "/bot123:ABC/sendMessage")
            assert request.json() == {
                "chat_id": -100123,
                "text": failure_text(ended, headline="kron: tg failed"),
                "disable_web_page_preview": True,
            }
            assert rig.delivery_lines("tg") == [delivery_line(ended, "telegram")]

    drive(jobs_dir, body)


def test_a_telegram_answer_that_is_not_ok_is_a_failed_delivery(jobs_dir: Path) -> None:
    async def body(rig: Rig) -> None:
        async with HttpRecorder() as server:
            server.answer(
                "/bot4242:AAE-test/sendMessage",
                Answer(
                    status=400,
                    body=b'{"ok":false,"description":"Bad Request: chat not found"}',
                    content_type="application/json",
                ),
            )
            rig.add(
                "tg.toml",
                NOISY_FAILURE
                + f'[[notify]]\ntelegram = {{ bot_token = "4242:AAE-test", chat_id = 1, base_url = "{server.url("")}" }}\n',
            )
            ended = await rig.run("tg")
            error = 'Telegram: HTTP 400: {"ok":false,"description":"Bad Request: chat not found"}'
            assert rig.delivery_lines("tg") == [
                delivery_line(ended, "telegram", ok=False, attempts=1, error=error)
            ]

    drive(jobs_dir, body)


@pytest.fixture
def smtp_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 from a CA that kron's client trusts."""
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))  # what an operator with a private CA sets
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def test_email_goes_over_starttls_with_a_login_whose_password_comes_from_the_env(
    jobs_dir: Path, smtp_tls: ssl.SSLContext
) -> None:
    async def body(rig: Rig) -> None:
        async with MailRecorder(tls_context=smtp_tls, logins={"kron": "s3cret-pw"}) as mail:
            rig.add(
                "mailed.toml",
                NOISY_FAILURE
                + '[env]\nSMTP_PASSWORD = { value = "s3cret-pw", secret = true }\n'
                + "[[notify]]\n"
                + f'email = {{ to = ["ops@example.com", "dev@example.com"], from = "kron@example.com", host = "127.0.0.1", port = {mail.port}, username = "kron", password_env = "SMTP_PASSWORD" }}\n',
            )
            ended = await rig.run("mailed")
            [got] = mail.mails
            assert (got.sender, got.recipients, got.tls, got.login) == (
                "kron@example.com",
                ["ops@example.com", "dev@example.com"],
                True,
                "kron",
            )
            message = got.message
            assert message["Subject"] == f"kron: mailed failed (exit code 3, after 0.0 s) on {HOST}"
            assert message["To"] == "ops@example.com, dev@example.com"
            assert (message["X-Kron-Job"], message["X-Kron-Run-Id"]) == ("mailed", ended.run_id)
            assert (
                message.get_content() == failure_text(ended, headline="kron: mailed failed") + "\n"
            )
            assert rig.delivery_lines("mailed") == [delivery_line(ended, "email")]

    drive(jobs_dir, body)


def test_email_goes_over_plain_smtp_when_starttls_is_off(jobs_dir: Path) -> None:
    async def body(rig: Rig) -> None:
        async with MailRecorder() as mail:
            rig.add(
                "mailed.toml",
                NOISY_FAILURE
                + "[[notify]]\n"
                + f'email = {{ to = ["ops@example.com"], host = "127.0.0.1", port = {mail.port}, starttls = false }}\n',
            )
            ended = await rig.run("mailed")
            [got] = mail.mails
            assert (got.sender, got.recipients, got.tls, got.login) == (
                "kron@localhost",
                ["ops@example.com"],
                False,
                None,
            )
            assert (
                got.message.get_content()
                == failure_text(ended, headline="kron: mailed failed") + "\n"
            )
            assert rig.delivery_lines("mailed") == [delivery_line(ended, "email")]

    drive(jobs_dir, body)


def test_email_is_never_sent_in_plain_text_when_starttls_is_on_and_not_offered(
    jobs_dir: Path,
) -> None:
    async def body(rig: Rig) -> None:
        async with MailRecorder() as mail:
            rig.add(
                "mailed.toml",
                NOISY_FAILURE
                + "[[notify]]\n"
                + f'email = {{ to = ["ops@example.com"], host = "127.0.0.1", port = {mail.port} }}\n',
            )
            ended = await rig.run("mailed")
            assert mail.mails == []
            error = "SMTP: the server does not offer STARTTLS"
            assert rig.delivery_lines("mailed") == [
                delivery_line(ended, "email", ok=False, attempts=1, error=error)
            ]

    drive(jobs_dir, body)


def test_a_command_reads_the_message_as_json_on_stdin(jobs_dir: Path, tmp_path: Path) -> None:
    got, env = tmp_path / "stdin.json", tmp_path / "env"
    script = f"cat > {got}; echo $KRON_JOB $KRON_RUN_ID > {env}"

    async def body(rig: Rig) -> None:
        rig.add(
            "cmd.toml", NOISY_FAILURE + f"[[notify]]\ncommand = ['/bin/sh', '-c', '{script}']\n"
        )
        ended = await rig.run("cmd")
        job = rig.scheduler.jobs["cmd"].job
        message = build_message(job, ended, recovery=False, secrets=[])
        assert json.loads(got.read_text()) == render_json(message)
        assert json.loads(got.read_text())["stderr"] == "err\n"
        assert env.read_text() == f"cmd {ended.run_id}\n"
        assert rig.delivery_lines("cmd") == [delivery_line(ended, "command")]

    drive(jobs_dir, body)


def test_a_command_that_outlives_its_timeout_is_killed_with_its_process_group(
    jobs_dir: Path, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    script = f"echo $$ > {pid_file}; sleep 60 & sleep 60"

    async def body(rig: Rig) -> None:
        rig.add(
            "cmd.toml",
            NOISY_FAILURE
            + f"[[notify]]\ncommand = ['/bin/sh', '-c', '{script}']\ntimeout = '1s'\nretries = 0\n",
        )
        ended = await rig.run("cmd")
        error = "command timed out after 1s"
        assert rig.delivery_lines("cmd") == [
            delivery_line(ended, "command", ok=False, attempts=1, error=error)
        ]
        with pytest.raises(ProcessLookupError):
            os.killpg(int(pid_file.read_text()), 0)

    drive(jobs_dir, body)


# -- when, how often, and what is left on record -----------------------------------------------


def test_recovery_is_sent_once_for_the_first_success_after_a_failure(
    jobs_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "failed-once"

    async def body(rig: Rig) -> None:
        async with HttpRecorder() as server:
            rig.add(
                "flaky.toml",
                MANUAL
                + f"shell = 'test -e {marker} || {{ touch {marker}; exit 1; }}'\n"
                + f'[[notify]]\non = "recovery"\nwebhook = "{server.url("/hook")}"\n',
            )
            runs = [await rig.run("flaky") for _ in range(3)]
            assert [r.outcome for r in runs] == [
                Outcome.FAILED,
                Outcome.SUCCEEDED,
                Outcome.SUCCEEDED,
            ]
            [request] = server.requests
            sent = request.json()
            assert (sent["run_id"], sent["outcome"], sent["recovery"]) == (
                runs[1].run_id,
                "succeeded",
                True,
            )
            assert sent["summary"] == (
                f"kron: flaky recovered (succeeded) (exit code 0, after 0.0 s) on {HOST}"
            )
            assert rig.delivery_lines("flaky") == [delivery_line(runs[1], "webhook")]

    drive(jobs_dir, body)


@pytest.mark.parametrize(
    ("before", "recovery"),
    [
        (["failed"], True),
        (["timeout", "started"], True),
        (["failed", "skipped", "dependency_failed"], True),
        (["abandoned"], True),
        (["failed", "succeeded"], False),
        (["replaced"], False),
        ([], False),
    ],
)
def test_the_previous_outcome_is_read_from_the_records_after_a_restart(
    jobs_dir: Path, before: list[str], recovery: bool
) -> None:
    for number, outcome in enumerate(before):
        records.append(
            jobs_dir / "ok.runs.jsonl",
            {
                "v": 1,
                "run_id": f"old{number}",
                "job": "ok",
                "slot": "2026-03-01T00:00:00Z",
                "trigger": "schedule",
                "attempt": 1,
                "outcome": outcome,
                "started_at": "2026-03-01T00:00:00Z",
                "ended_at": "2026-03-01T00:00:01Z",
            },
        )

    async def body(rig: Rig) -> None:
        async with HttpRecorder() as server:
            rig.add(
                "ok.toml",
                MANUAL
                + 'command = ["true"]\n'
                + f'[[notify]]\non = "recovery"\nwebhook = "{server.url("/hook")}"\n',
            )
            await rig.run("ok")
            assert len(server.requests) == (1 if recovery else 0)

    drive(jobs_dir, body)


def test_an_attempt_that_failed_before_a_retry_succeeded_is_no_failure_to_recover_from(
    jobs_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "tried"

    async def body(rig: Rig) -> None:
        async with HttpRecorder() as server:
            rig.add(
                "retried.toml",
                MANUAL
                + f"shell = 'test -e {marker} || {{ touch {marker}; exit 1; }}'\n"
                + f'[[notify]]\non = ["recovery", "failure"]\nwebhook = "{server.url("/hook")}"\n'
                + '[retry]\nattempts = 2\nbackoff = "fixed"\ndelay = "1s"\n',
            )
            run = rig.scheduler.fire("retried", slot=rig.clock.now(), trigger=Trigger.MANUAL)
            assert run is not None
            assert run.task is not None
            await rig.events.until(lambda e: len(e.ended()) == 1)
            await until_true(lambda: rig.clock.sleepers == 1)
            await rig.clock.advance(1)
            ended = await asyncio.wait_for(run.task, DEADLINE_S)
            await rig.deliveries.drain(DEADLINE_S)
            assert ended is not None
            assert ended.outcome is Outcome.SUCCEEDED
            assert server.requests == []
            assert rig.delivery_lines("retried") == []

    drive(jobs_dir, body)


def test_a_delivery_that_keeps_failing_is_retried_with_backoff_then_recorded_failed(
    jobs_dir: Path,
) -> None:
    async def body(rig: Rig) -> None:
        async with HttpRecorder() as server:
            server.answer("/hook", Answer(status=503, body=b"down for maintenance"))
            rig.add("web.toml", NOISY_FAILURE + f'[[notify]]\nwebhook = "{server.url("/hook")}"\n')
            ended = await rig.run("web")
            assert server.paths() == ["/hook", "/hook", "/hook"]
            assert rig.sleeps.asked == [1.0, 2.0]
            error = "HTTP 503: down for maintenance"
            assert rig.delivery_lines("web") == [
                delivery_line(ended, "webhook", ok=False, attempts=3, error=error)
            ]

    drive(jobs_dir, body)


def test_a_refused_delivery_is_not_retried(jobs_dir: Path) -> None:
    async def body(rig: Rig) -> None:
        async with HttpRecorder() as server:
            server.answer("/hook", Answer(status=404, body=b"no_service"))
            rig.add("web.toml", NOISY_FAILURE + f'[[notify]]\nslack = "{server.url("/hook")}"\n')
            ended = await rig.run("web")
            assert server.paths() == ["/hook"]
            assert rig.sleeps.asked == []
            assert rig.delivery_lines("web") == [
                delivery_line(ended, "slack", ok=False, attempts=1, error="HTTP 404: no_service")
            ]

    drive(jobs_dir, body)


def test_an_endpoint_that_refuses_connections_is_recorded_with_the_reason(
    jobs_dir: Path,
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"

    async def body(rig: Rig) -> None:
        rig.add("web.toml", NOISY_FAILURE + f'[[notify]]\nwebhook = "{url}"\nretries = 1\n')
        ended = await rig.run("web")
        assert rig.delivery_lines("web") == [
            delivery_line(ended, "webhook", ok=False, attempts=2, error="connection refused")
        ]

    drive(jobs_dir, body)


def test_a_missing_token_variable_is_recorded_without_an_attempt(jobs_dir: Path) -> None:
    async def body(rig: Rig) -> None:
        rig.add(
            "tg.toml",
            NOISY_FAILURE
            + '[[notify]]\ntelegram = { bot_token_env = "KRON_TEST_NO_SUCH_TOKEN", chat_id = 1 }\n',
        )
        ended = await rig.run("tg")
        error = "bot_token_env: variable KRON_TEST_NO_SUCH_TOKEN is not set"
        assert rig.delivery_lines("tg") == [
            delivery_line(ended, "telegram", ok=False, attempts=0, error=error)
        ]

    drive(jobs_dir, body)


def test_a_hanging_endpoint_does_not_delay_the_next_scheduled_job(jobs_dir: Path) -> None:
    async def body(rig: Rig) -> None:
        async with HttpRecorder() as server:
            server.answer("/hook", Answer(hang=True))
            rig.add(
                "minutely.toml",
                'schedule = "* * * * *"\ntimezone = "UTC"\ncommand = ["true"]\n'
                + f'[[notify]]\non = "always"\nwebhook = "{server.url("/hook")}"\ntimeout = "50s"\n',
            )
            await rig.clock.set(datetime(2026, 3, 2, 10, 1, tzinfo=UTC))
            await server.until(1)  # the first run's message is stuck in a request never answered
            await rig.clock.set(datetime(2026, 3, 2, 10, 2, tzinfo=UTC))
            await rig.events.until(lambda e: len(e.ended()) == 2)
            first, second = rig.events.ended()
            assert [e.started_at for e in rig.events.started()] == [
                datetime(2026, 3, 2, 10, 1, tzinfo=UTC),
                datetime(2026, 3, 2, 10, 2, tzinfo=UTC),
            ]
            assert (first.outcome, second.outcome) == (Outcome.SUCCEEDED, Outcome.SUCCEEDED)
            await server.until(2)
            assert rig.deliveries.in_flight == 2
            assert rig.delivery_lines("minutely") == []
            await rig.deliveries.drain(0)
            stopped = "the daemon stopped before the delivery finished"
            assert sorted(
                (line["run_id"], line["delivery"]["error"], line["delivery"]["attempts"])
                for line in rig.delivery_lines("minutely")
            ) == sorted([(first.run_id, stopped, 1), (second.run_id, stopped, 1)])

    drive(jobs_dir, body)


def test_delivery_lines_are_no_outcome_to_readers_of_outcomes(jobs_dir: Path) -> None:
    async def body(rig: Rig) -> None:
        async with HttpRecorder() as server:
            rig.add("web.toml", NOISY_FAILURE + f'[[notify]]\nwebhook = "{server.url("/")}"\n')
            ended = await rig.run("web")
            lines = read_records(rig.sink.path("web"))
            assert [line.get("outcome") for line in lines] == ["started", "failed", None]
            assert last_outcomes(jobs_dir, ["web"]) == {"web": "failed"}
            assert records.last_slot(rig.sink.path("web")) == ended.slot
            assert records.unfinished_runs(rig.sink.path("web")) == []

    drive(jobs_dir, body)


def test_secrets_never_appear_in_a_delivered_message(jobs_dir: Path, tmp_path: Path) -> None:
    stdin_file = tmp_path / "stdin.json"
    secrets = ("hunter2-env-secret", "tg-literal-token-77", "bearer-header-secret")
    printed = " ".join(secrets)

    async def body(rig: Rig) -> None:
        async with HttpRecorder() as server:
            server.answer("/bottg-literal-token-77/sendMessage", json_answer({"ok": True}))
            rig.add(
                "leaky.toml",
                MANUAL
                + f"shell = 'echo {printed}; echo $API_KEY >&2; exit 1'\n"
                + '[env]\nAPI_KEY = { value = "hunter2-env-secret", secret = true }\n'
                + "[[notify]]\n"
                + f'webhook = {{ url = "{server.url("/hook")}", headers = {{ Authorization = "bearer-header-secret" }} }}\n'
                + "[[notify]]\n"
                + f'slack = "{server.url("/slack")}"\n'
                + "[[notify]]\n"
                + f'telegram = {{ bot_token = "tg-literal-token-77", chat_id = 5, base_url = "{server.url("")}" }}\n'
                + "[[notify]]\n"
                + f"command = ['/bin/sh', '-c', 'cat > {stdin_file}']\n",
            )
            ended = await rig.run("leaky")
            assert ended.outcome is Outcome.FAILED
            assert len(server.requests) == 3
            delivered = [r.body.decode() for r in server.requests] + [stdin_file.read_text()]
            for text in delivered:
                for secret in secrets:
                    assert secret not in text
            webhook = server.requests[0].json()
            assert (webhook["stdout"], webhook["stderr"]) == ("*** *** ***\n", "***\n")
            assert [line["delivery"]["ok"] for line in rig.delivery_lines("leaky")] == [True] * 4

    drive(jobs_dir, body)


# -- the policy and the message, as tables -----------------------------------------------------


@pytest.mark.parametrize(
    ("on", "outcome", "recovery", "sends"),
    [
        ({"failure"}, Outcome.FAILED, False, True),
        ({"failure"}, Outcome.TIMEOUT, False, True),
        ({"failure"}, Outcome.WAIT_TIMEOUT, False, True),
        ({"failure"}, Outcome.CANCELLED, False, True),
        ({"failure"}, Outcome.SKIPPED, False, False),
        ({"failure"}, Outcome.REPLACED, False, False),
        ({"failure"}, Outcome.SUCCEEDED, True, False),
        ({"success"}, Outcome.SUCCEEDED, False, True),
        ({"success"}, Outcome.FAILED, False, False),
        ({"recovery"}, Outcome.SUCCEEDED, False, False),
        ({"recovery"}, Outcome.SUCCEEDED, True, True),
        ({"always"}, Outcome.REPLACED, False, True),
        ({"always"}, Outcome.SKIPPED, False, True),
        ({"failure", "recovery"}, Outcome.SUCCEEDED, True, True),
    ],
)
def test_on_picks_the_final_outcomes_a_delivery_is_sent_for(
    on: set[str], outcome: Outcome, recovery: bool, sends: bool
) -> None:
    assert wants(frozenset(on), outcome, recovery=recovery) is sends


def test_backoff_between_delivery_attempts_doubles_up_to_thirty_seconds() -> None:
    assert [backoff_s(n) for n in range(1, 9)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def a_run(**fields: Any) -> RunEnded:
    return RunEnded(
        **{
            "run_id": "r1",
            "job": "big",
            "slot": T0,
            "trigger": Trigger.SCHEDULE,
            "attempt": 1,
            "outcome": Outcome.FAILED,
            "started_at": T0,
            "ended_at": T0 + timedelta(seconds=2),
            "config_sha": "x",
            "exit_code": 1,
            **fields,
        }
    )


def test_each_channels_text_fits_its_size_limit_and_keeps_the_end_of_the_output(
    jobs_dir: Path,
) -> None:
    job = make_job(jobs_dir, "big.toml", MANUAL + 'command = ["true"]\n')
    lines = "".join(f"line {n} 🙂\n" for n in range(20_000))
    message = build_message(
        job, a_run(stdout=lines, stderr="E" * 30_000), recovery=False, secrets=[]
    )
    slack = render_text(message, limit=SLACK_TEXT_MAX, slack=True)
    telegram = render_text(message, limit=TELEGRAM_TEXT_MAX, measure=utf16_len)
    mail = render_text(message, limit=EMAIL_TEXT_MAX)
    assert (len(slack), utf16_len(telegram), len(mail)) == (40_000, 4096, 100_000)
    assert [text.count(CUT_MARK) for text in (slack, telegram, mail)] == [2, 2, 1]
    assert slack.startswith("*kron: big failed*\n")
    assert slack.endswith("line 19999 🙂\n```")
    assert telegram.startswith("kron: big failed\n")
    assert telegram.endswith("line 19999 🙂")
    assert "\n\nstderr (end):\n" + "E" * 30_000 + "\n\nstdout (end):\n" + CUT_MARK in mail
    shown = render_json(message)
    assert (len(shown["stdout"]), len(shown["stderr"]), shown["truncated"]) == (
        JSON_OUTPUT_MAX,
        JSON_OUTPUT_MAX,
        True,
    )
    assert shown["stdout"].startswith(CUT_MARK + "\n")
    assert shown["stdout"].endswith("line 19999 🙂\n")


def test_an_agent_answer_is_the_message_and_is_kept_from_its_start(jobs_dir: Path) -> None:
    job = make_job(
        jobs_dir, "audit.toml", MANUAL + '[agent]\nprompt = "audit"\ncommand = ["cat"]\n'
    )
    answer = "# Findings\n" + "".join(f"- finding {n}\n" for n in range(2000))
    message = build_message(
        job,
        a_run(job="audit", outcome=Outcome.SUCCEEDED, exit_code=0, stdout=answer, stderr="noise"),
        recovery=False,
        secrets=[],
    )
    text = render_text(message, limit=TELEGRAM_TEXT_MAX, measure=utf16_len)
    assert utf16_len(text) <= TELEGRAM_TEXT_MAX
    assert "\n\nanswer:\n# Findings\n- finding 0\n- finding 1\n" in text
    assert text.endswith("\n" + CUT_MARK)
    assert "noise" not in text
    assert render_json(message)["stdout"].startswith("# Findings\n- finding 0\n")
    short = replace(message, stdout="All clear.\n")
    assert render_text(short, limit=TELEGRAM_TEXT_MAX).endswith("\n\nanswer:\nAll clear.")


def test_secrets_are_masked_in_the_message_before_anything_is_cut(jobs_dir: Path) -> None:
    job = make_job(jobs_dir, "big.toml", MANUAL + 'command = ["true"]\n')
    secret = "S" * 40
    run = a_run(stdout="x" * 100 + secret, error=f"failed with {secret}", stderr=secret)
    message = build_message(job, run, recovery=False, secrets=[secret])
    assert (message.stdout, message.error, message.stderr) == (
        "x" * 100 + "***",
        "failed with ***",
        "***",
    )
    assert "S" * 10 not in render_text(message, limit=120)
