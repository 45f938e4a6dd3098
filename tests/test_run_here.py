"""`kron run --here` in a real child process, as a CronJob's pod runs it: records on stdout as
NDJSON, logs on stderr, exit 0 only when the run succeeded."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from .docker_engine import IMAGE, require_engine
from .harness import DEADLINE_S
from .httpd import Recorder, serving

BERLIN = 'schedule = "0 3 * * *"\ntimezone = "Europe/Berlin"\n'


def kron(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kron", *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        env={**os.environ, **(env or {})},
        check=False,
    )


def here(
    jobs_dir: Path, job: str, *args: object, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return kron("run", job, "--here", "--jobs-dir", jobs_dir, *args, **kwargs)


def records(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def brief(record: dict[str, Any]) -> tuple[Any, ...]:
    return (record["job"], record["trigger"], record["attempt"], record["outcome"])


@pytest.fixture
def server() -> Iterator[Recorder]:
    """A real HTTP server on 127.0.0.1 that records what it gets."""
    with serving() as httpd:
        yield httpd


def test_a_command_runs_here_and_its_records_go_to_stdout_as_ndjson(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write("j.toml", BERLIN + 'command = ["sh", "-c", "echo out; echo err >&2"]\n')
    ran = here(jobs_dir, "j")
    assert ran.returncode == 0, ran.stderr
    started, ended = records(ran.stdout)
    assert brief(started) == ("j", "manual", 1, "started")
    assert brief(ended) == ("j", "manual", 1, "succeeded")
    assert (ended["run_id"], ended["stdout"], ended["stderr"], ended["exit_code"]) == (
        started["run_id"],
        "out\n",
        "err\n",
        0,
    )
    assert sorted(p.name for p in jobs_dir.iterdir()) == ["j.toml"]  # no records file, no state


def test_a_failing_shell_exits_1(jobs_dir: Path, write: Callable[[str, str], Path]) -> None:
    write("j.toml", BERLIN + 'shell = "echo no; exit 3"\n')
    ran = here(jobs_dir, "j")
    assert ran.returncode == 1
    ended = records(ran.stdout)[-1]
    assert (ended["outcome"], ended["exit_code"], ended["stdout"]) == ("failed", 3, "no\n")


def test_an_http_job_calls_a_real_server(
    jobs_dir: Path, write: Callable[[str, str], Path], server: Recorder
) -> None:
    write("up.toml", BERLIN + f'[http]\nurl = "{server.url("/ping")}"\nexpect_body = "po+ng"\n')
    write("down.toml", BERLIN + f'[http]\nurl = "{server.url("/down")}"\n')
    ran = here(jobs_dir, "up")
    assert ran.returncode == 0, ran.stderr
    assert records(ran.stdout)[-1]["outcome"] == "succeeded"
    failed = here(jobs_dir, "down")
    assert failed.returncode == 1
    assert records(failed.stdout)[-1]["outcome"] == "failed"
    assert [(method, path) for method, path, _ in server.seen] == [
        ("GET", "/ping"),
        ("GET", "/down"),
    ]


@pytest.mark.docker
def test_a_docker_job_runs_its_container(jobs_dir: Path, write: Callable[[str, str], Path]) -> None:
    require_engine()
    write(
        "j.toml",
        BERLIN
        + f'[docker]\nimage = "{IMAGE}"\ncommand = ["echo", "from a container"]\npull = "never"\n',
    )
    ran = here(jobs_dir, "j")
    assert ran.returncode == 0, ran.stderr
    ended = records(ran.stdout)[-1]
    assert (ended["outcome"], ended["stdout"], ended["exit_code"]) == (
        "succeeded",
        "from a container\n",
        0,
    )


def test_an_agent_job_gets_its_answer_from_a_cli(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    agent = [sys.executable, "-c", "import sys; print('answer to', sys.stdin.read())"]
    write("j.toml", BERLIN + f'[agent]\nprompt = "what changed?"\ncommand = {json.dumps(agent)}\n')
    ran = here(jobs_dir, "j")
    assert ran.returncode == 0, ran.stderr
    ended = records(ran.stdout)[-1]
    assert (ended["outcome"], ended["stdout"]) == ("succeeded", "answer to what changed?\n")


def test_retries_triggers_and_notifications_keep_kron_s_semantics_in_one_process(
    tmp_path: Path,
    jobs_dir: Path,
    write: Callable[[str, str], Path],
    server: Recorder,
) -> None:
    marker = tmp_path / "tried"
    write(
        "extract.toml",
        BERLIN
        + f'shell = "[ -e {marker} ] || {{ touch {marker}; exit 1; }}"\ntriggers = ["load"]\n'
        + '[retry]\nattempts = 2\nbackoff = "fixed"\ndelay = "200ms"\n'
        + f'[[notify]]\non = ["success"]\nwebhook = "{server.url("/hook")}"\n',
    )
    write("load.toml", 'schedule = "@manual"\ncommand = ["echo", "loaded"]\n')
    ran = here(jobs_dir, "extract")
    assert ran.returncode == 0, ran.stderr
    lines = records(ran.stdout)
    runs = [brief(r) for r in lines if "outcome" in r]
    assert runs == [
        ("extract", "manual", 1, "started"),
        ("extract", "manual", 1, "failed"),
        ("extract", "manual", 2, "started"),
        ("extract", "manual", 2, "succeeded"),
        ("load", "dependency", 1, "started"),
        ("load", "dependency", 1, "succeeded"),
    ]
    first_end, second_start = lines[1], lines[2]
    waited = datetime.fromisoformat(second_start["started_at"]) - datetime.fromisoformat(
        first_end["ended_at"]
    )
    assert waited.total_seconds() >= 0.2
    load = [r for r in lines if r.get("job") == "load"][-1]
    assert (load["upstream"], load["stdout"]) == (lines[3]["run_id"], "loaded\n")
    notes = [r["delivery"] for r in lines if "delivery" in r]
    assert notes == [{"target": "webhook", "ok": True, "attempts": 1, "error": None}]
    assert [(m, p) for m, p, _ in server.seen] == [("POST", "/hook")]
    body = json.loads(server.seen[0][2])
    assert (body["job"], body["outcome"]) == ("extract", "succeeded")


def _minutes(instant: datetime) -> int:
    return int(instant.timestamp()) // 60


def test_the_job_name_a_cronjob_gives_its_pod_is_the_run_s_slot(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write("j.toml", BERLIN + 'command = ["true"]\n')
    ran = here(jobs_dir, "j", "--cronjob", "j", "--k8s-job", "j-29000000")
    assert ran.returncode == 0, ran.stderr
    ended = records(ran.stdout)[-1]
    assert (ended["slot"], ended["trigger"], ended["outcome"]) == (
        "2025-02-19T21:20:00Z",
        "schedule",
        "succeeded",
    )
    manual = here(jobs_dir, "j", "--cronjob", "j", "--k8s-job", "j-by-hand")
    assert records(manual.stdout)[-1]["trigger"] == "manual"


def test_the_second_pass_of_a_repeated_autumn_hour_is_not_run(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write("j.toml", 'schedule = "30 2 * * *"\ntimezone = "Europe/Berlin"\ncommand = ["true"]\n')
    # 25 October 2026, Europe/Berlin: 02:30 CEST is 00:30 UTC, 02:30 CET is 01:30 UTC.
    first = _minutes(datetime(2026, 10, 25, 0, 30, tzinfo=UTC))
    second = _minutes(datetime(2026, 10, 25, 1, 30, tzinfo=UTC))
    ran = here(jobs_dir, "j", "--cronjob", "j", "--k8s-job", f"j-{first}")
    assert ran.returncode == 0, ran.stderr
    assert records(ran.stdout)[-1]["slot"] == "2026-10-25T00:30:00Z"
    again = here(jobs_dir, "j", "--cronjob", "j", "--k8s-job", f"j-{second}")
    assert (again.returncode, again.stdout) == (0, "")
    assert again.stderr.rstrip().endswith(
        "job j: 2026-10-25 01:30:00+00:00 is not a slot of this job (02:30 in Europe/Berlin "
        "comes twice as daylight saving time ends; kron runs a fixed-time job at the first); "
        "not run"
    )


def test_an_at_job_runs_only_in_its_own_year(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write(
        "j.toml",
        'schedule = "@at 2026-12-07T09:00"\ntimezone = "Europe/Berlin"\ncommand = ["true"]\n',
    )
    at = _minutes(datetime(2026, 12, 7, 8, 0, tzinfo=UTC))
    next_year = _minutes(datetime(2027, 12, 7, 8, 0, tzinfo=UTC))
    assert (
        records(here(jobs_dir, "j", "--cronjob", "j", "--k8s-job", f"j-{at}").stdout)[-1]["outcome"]
        == "succeeded"
    )
    later = here(jobs_dir, "j", "--cronjob", "j", "--k8s-job", f"j-{next_year}")
    assert (later.returncode, later.stdout) == (0, "")


def test_sigterm_stops_the_run_and_records_it_cancelled(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write("j.toml", BERLIN + 'command = ["sleep", "60"]\nkill_grace = "2s"\n')
    child = subprocess.Popen(
        [sys.executable, "-m", "kron", "run", "j", "--here", "--jobs-dir", str(jobs_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], DEADLINE_S)
        assert ready, "no started record"
        started = json.loads(child.stdout.readline())
        assert started["outcome"] == "started"
        sent = time.monotonic()
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=DEADLINE_S)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 1
    ended = json.loads(out.splitlines()[-1])
    assert (ended["run_id"], ended["outcome"], ended["signal"]) == (
        started["run_id"],
        "cancelled",
        signal.SIGTERM.value,
    )
    assert time.monotonic() - sent < DEADLINE_S


def test_an_invalid_job_file_exits_1_with_its_problem(
    jobs_dir: Path, write: Callable[[str, str], Path]
) -> None:
    write("j.toml", 'schedule = "0 3 * *"\ncommand = ["true"]\n')
    ran = here(jobs_dir, "j")
    assert (ran.returncode, ran.stdout) == (1, "")
    assert ran.stderr == (
        f"{jobs_dir}/j.toml:1:1: schedule: cron expressions have 5 fields (or 6 with leading "
        "seconds); got 4\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--wait"], "kron run --here: always waits, and always prints NDJSON records"),
        (["--cronjob", "j"], "kron run --here: give --cronjob and --k8s-job together"),
    ],
)
def test_here_usage_errors_exit_2(
    jobs_dir: Path, write: Callable[[str, str], Path], args: list[str], message: str
) -> None:
    write("j.toml", BERLIN + 'command = ["true"]\n')
    ran = here(jobs_dir, "j", *args)
    assert (ran.returncode, ran.stdout, ran.stderr) == (2, "", message + "\n")
    plain = kron("run", "j", "--jobs-dir", jobs_dir, "--k8s-job", "j-1")
    assert (plain.returncode, plain.stderr) == (
        2,
        "kron run: --cronjob and --k8s-job go with --here\n",
    )
