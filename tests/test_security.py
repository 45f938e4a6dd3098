"""[policy] at load and at fire time, and secrets that never reach records, logs or validate."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kron.config.catalog import load_dir
from kron.config.loader import load_job
from kron.config.settings import load_settings
from kron.model.policy import policy_violation
from kron.service.daemon import Daemon

from .clock import FakeClock
from .conftest import CliResult
from .harness import DEADLINE_S, Events, make_job, read_records, write_job

T0 = datetime(2026, 3, 2, 7, 0, 30, tzinfo=UTC)
EVERY_MINUTE = 'schedule = "* * * * *"\ntimezone = "UTC"\n'


def errors_of(jobs_dir: Path) -> list[str]:
    return [str(p) for p in load_dir(jobs_dir).errors]


# -- [policy] at load -------------------------------------------------------------------------


def test_allow_present_is_the_exhaustive_list_of_commands_that_may_run(jobs_dir: Path) -> None:
    write_job(jobs_dir, "kron.toml", '[policy]\nallow = ["/usr/local/bin/backup *", "true"]\n')
    write_job(
        jobs_dir, "backup.toml", EVERY_MINUTE + 'command = ["/usr/local/bin/backup", "--all"]\n'
    )
    write_job(jobs_dir, "plain.toml", EVERY_MINUTE + 'command = ["true"]\n')
    write_job(jobs_dir, "other.toml", EVERY_MINUTE + 'command = ["rm", "-rf", "/srv/x"]\n')
    assert sorted(load_dir(jobs_dir).jobs) == ["backup", "plain"]
    assert errors_of(jobs_dir) == [
        f"{jobs_dir}/other.toml:3:1: command: command 'rm -rf /srv/x' matches no policy allow pattern"
    ]


def test_an_empty_allow_list_refuses_every_command_and_script(jobs_dir: Path) -> None:
    write_job(jobs_dir, "kron.toml", "[policy]\nallow = []\n")
    write_job(jobs_dir, "a.toml", EVERY_MINUTE + 'command = ["true"]\n')
    write_job(jobs_dir, "b.toml", EVERY_MINUTE + 'shell = "true"\n')
    assert load_dir(jobs_dir).jobs == {}
    assert errors_of(jobs_dir) == [
        f"{jobs_dir}/a.toml:3:1: command: command 'true' matches no policy allow pattern",
        f"{jobs_dir}/b.toml:3:1: shell: command 'true' matches no policy allow pattern",
    ]


def test_deny_wins_over_allow(jobs_dir: Path) -> None:
    write_job(jobs_dir, "kron.toml", '[policy]\nallow = ["*"]\ndeny = ["*rm -rf*"]\n')
    write_job(jobs_dir, "a.toml", EVERY_MINUTE + 'shell = "cd /srv && rm -rf cache"\n')
    assert errors_of(jobs_dir) == [
        f"{jobs_dir}/a.toml:3:1: shell: command 'cd /srv && rm -rf cache' is denied by policy "
        "pattern '*rm -rf*'"
    ]


def test_patterns_match_the_whole_command_line_as_the_shell_would_quote_it(
    jobs_dir: Path,
) -> None:
    # A pattern is anchored at both ends: "rm *" does not catch "/bin/rm -rf /".
    write_job(jobs_dir, "kron.toml", '[policy]\ndeny = ["rm *", "echo \'a b\'"]\n')
    job = write_job(jobs_dir, "abs.toml", EVERY_MINUTE + 'command = ["/bin/rm", "-rf", "/x"]\n')
    quoted = write_job(jobs_dir, "quoted.toml", EVERY_MINUTE + 'command = ["echo", "a b"]\n')
    settings, _ = load_settings(jobs_dir)
    loaded, _ = load_job(job, jobs_dir=jobs_dir, settings=settings)
    assert policy_violation(loaded.action, settings.policy) is None
    assert errors_of(jobs_dir) == [
        f"{quoted}:3:1: command: command \"echo 'a b'\" is denied by policy pattern \"echo 'a b'\""
    ]


def test_denying_shell_metacharacters_stops_an_allowed_prefix_from_being_extended(
    jobs_dir: Path,
) -> None:
    # The recipe of docs/security.md: an allow-list of programs, and no way to chain commands.
    write_job(
        jobs_dir,
        "kron.toml",
        '[policy]\nallow = ["/usr/local/bin/backup *"]\n'
        'deny = ["*;*", "*|*", "*&*", "*`*", "*$(*", "*>*", "*<*", "*\\n*"]\n',
    )
    write_job(jobs_dir, "ok.toml", EVERY_MINUTE + 'command = ["/usr/local/bin/backup", "--all"]\n')
    scripts = {
        "semicolon": "/usr/local/bin/backup x; rm -rf /srv",
        "and": "/usr/local/bin/backup x && rm -rf /srv",
        "pipe": "/usr/local/bin/backup x | sh",
        "subst": "/usr/local/bin/backup $(rm -rf /srv)",
        "newline": "/usr/local/bin/backup x\nrm -rf /srv",
    }
    for name, script in scripts.items():
        write_job(jobs_dir, f"{name}.toml", EVERY_MINUTE + f"shell = {json.dumps(script)}\n")
    assert list(load_dir(jobs_dir).jobs) == ["ok"]
    assert len(errors_of(jobs_dir)) == len(scripts)


def test_docker_jobs_match_as_docker_image_and_command(jobs_dir: Path) -> None:
    write_job(jobs_dir, "kron.toml", '[policy]\nallow = ["docker:alpine:3.20 *"]\n')
    write_job(
        jobs_dir, "ok.toml", EVERY_MINUTE + '[docker]\nimage = "alpine:3.20"\ncommand = "df -h"\n'
    )
    write_job(
        jobs_dir, "no.toml", EVERY_MINUTE + '[docker]\nimage = "evil/miner"\ncommand = ["run"]\n'
    )
    assert list(load_dir(jobs_dir).jobs) == ["ok"]
    assert errors_of(jobs_dir) == [
        f"{jobs_dir}/no.toml:3:1: docker: command 'docker:evil/miner run' matches no policy "
        "allow pattern"
    ]


def test_http_jobs_run_no_command_and_are_outside_the_policy(jobs_dir: Path) -> None:
    write_job(jobs_dir, "kron.toml", "[policy]\nallow = []\n")
    write_job(jobs_dir, "ping.toml", EVERY_MINUTE + '[http]\nurl = "http://127.0.0.1:9/health"\n')
    assert list(load_dir(jobs_dir).jobs) == ["ping"]


# -- [policy] at fire time --------------------------------------------------------------------


def test_a_policy_change_refuses_an_already_loaded_job_at_fire_time(jobs_dir: Path) -> None:
    write_job(jobs_dir, "j.toml", EVERY_MINUTE + 'command = ["true"]\n')
    clock = FakeClock(T0)

    async def main() -> None:
        daemon = Daemon(jobs_dir, clock=clock, boot_id="b")
        await daemon.start()
        assert daemon.scheduler is not None
        events = Events()
        daemon.scheduler.subscribe(events)
        serving = asyncio.ensure_future(daemon.serve(watch=False))
        try:
            await clock.set(datetime(2026, 3, 2, 7, 1, tzinfo=UTC))
            await events.until(lambda e: e.outcomes("j") == ["succeeded"])
            write_job(jobs_dir, "kron.toml", '[policy]\ndeny = ["tru?"]\n')
            daemon.reload(None)  # as on SIGHUP; the watcher does the same on its own
            # The file is now invalid; its last good version stays scheduled...
            assert list(daemon.catalog.invalid_files) == [str(jobs_dir / "j.toml")]
            assert "j" in daemon.scheduler.jobs
            await clock.set(datetime(2026, 3, 2, 7, 2, tzinfo=UTC))
            await events.until(lambda e: len(e.outcomes("j")) == 2)
        finally:
            daemon.request_stop()
            await asyncio.wait_for(serving, DEADLINE_S)

    asyncio.run(asyncio.wait_for(main(), 60))
    # ...and is refused right before it fires, with the reason in its record.
    last = read_records(jobs_dir / "j.runs.jsonl")[-1]
    assert (last["slot"], last["outcome"], last["error"], last["exit_code"]) == (
        "2026-03-02T07:02:00Z",
        "failed",
        "refused at fire time: command 'true' is denied by policy pattern 'tru?'",
        None,
    )


# -- secrets ----------------------------------------------------------------------------------

TOKEN = "tok-8f3a91c2e7"
API_KEY = "key-5d0b7e64a1"


def write_secret_jobs(jobs_dir: Path) -> None:
    write_job(jobs_dir, "secrets.env", f"# read by the jobs\nexport API_KEY='{API_KEY}'\n")
    secret_env = f'[env]\nTOKEN = {{ value = "{TOKEN}", secret = true }}\nPLAIN = "visible"\n'
    write_job(
        jobs_dir,
        "leaky.toml",
        'schedule = "* * * * * *"\ntimezone = "UTC"\nenv_file = "secrets.env"\n'
        'shell = \'echo "token=$TOKEN plain=$PLAIN"; echo "key=$API_KEY" >&2; '
        'echo "$TOKEN" > /dev/null; exit 3\'\n' + secret_env,
    )
    write_job(
        jobs_dir,
        "waiting.toml",
        'schedule = "* * * * * *"\ntimezone = "UTC"\nenv_file = "secrets.env"\n'
        'command = ["true"]\n'
        '[wait]\nuntil = "cmd:echo \\"refused with $API_KEY and $TOKEN\\" >&2; exit 1"\n'
        'every = "100ms"\ntimeout = "300ms"\n' + secret_env,
    )


def all_text_below(folder: Path) -> str:
    return "\n".join(
        p.read_text(errors="replace") for p in sorted(folder.rglob("*")) if p.is_file()
    )


def test_secrets_from_env_and_env_file_never_reach_records_audit_or_the_log(
    jobs_dir: Path, tmp_path: Path
) -> None:
    write_secret_jobs(jobs_dir)
    records_dir = tmp_path / "records"
    log = tmp_path / "daemon.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "kron", "daemon", "--log-level", "debug"),
                *("--jobs-dir", str(jobs_dir), "--records-dir", str(records_dir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=handle,
        )
    try:
        deadline = time.monotonic() + DEADLINE_S

        def ended(job: str) -> list[dict[str, object]]:
            path = records_dir / f"{job}.runs.jsonl"
            return [r for r in read_records(path) if r["outcome"] not in ("started", "skipped")]

        while not (ended("leaky") and ended("waiting")):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(DEADLINE_S)
    leaky, waiting = ended("leaky")[0], ended("waiting")[0]
    # The jobs did print their secrets; kron wrote *** in their place.
    assert (leaky["outcome"], leaky["stdout"], leaky["stderr"]) == (
        "failed",
        "token=*** plain=visible\n",
        "key=***\n",
    )
    assert waiting["outcome"] == "wait_timeout"
    assert waiting["wait"]["reason"] == "exit 1: refused with *** and ***"  # type: ignore[index]
    written = all_text_below(records_dir) + log.read_text()
    assert "plain=visible" in written
    assert TOKEN not in written
    assert API_KEY not in written


@pytest.mark.parametrize("fmt", ["text", "json", "github"])
def test_kron_validate_masks_secret_values_in_errors_and_warnings(
    jobs_dir: Path, cli: Callable[..., CliResult], fmt: str
) -> None:
    write_job(jobs_dir, "kron.toml", '[policy]\ndeny = ["*curl*"]\n')
    write_job(
        jobs_dir,
        "denied.toml",
        f'schedule = "@daily"\ntimezone = "UTC"\nshell = "curl -u admin:{TOKEN} http://x"\n'
        f'[env]\nTOKEN = {{ value = "{TOKEN}", secret = true }}\n',
    )
    write_job(
        jobs_dir,
        "typed.toml",
        'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\n'
        "[env]\nPIN = { value = 918273645, secret = true }\n",
    )
    result = cli("validate", "--format", fmt, "--jobs-dir", jobs_dir)
    assert result.code == 1
    assert TOKEN not in result.out + result.err
    assert "918273645" not in result.out + result.err
    if fmt == "json":
        messages = [e["message"] for e in json.loads(result.out)["errors"]]
        assert messages == [
            "command 'curl -u admin:*** http://x' is denied by policy pattern '*curl*'",
            "expected a string, got ***",
        ]


def test_an_env_file_made_writable_after_load_is_refused_at_fire_time(tmp_path: Path) -> None:
    import asyncio
    import os

    from kron.actions.dispatch import execute

    jobs = tmp_path / "jobs.d"
    jobs.mkdir()
    (jobs / "secrets.env").write_text("TOKEN=abc\n")
    (jobs / "j.toml").write_text(
        'schedule = "@manual"\nshell = "echo $TOKEN"\nenv_file = "secrets.env"\n'
    )
    from kron.config.catalog import load_dir

    job = load_dir(jobs).jobs["j"]
    os.chmod(jobs / "secrets.env", 0o666)
    result = asyncio.run(execute(job, run_env={}, stop=asyncio.Event()))
    assert result.exit_code is None
    assert result.error is not None
    assert result.error.startswith("env_file: ")
    assert "writable by group and others" in result.error


def test_a_secret_is_masked_before_the_output_is_cut_and_across_reads(jobs_dir: Path) -> None:
    import asyncio

    from kron.actions.dispatch import execute

    secret = "s3cr3t-t0ken-v4lue"
    # The secret is printed where the head/tail cut of max_output = 40 falls, and once written
    # in two pieces with a pause, so that it arrives in two reads of the pipe.
    script = (
        f'printf "%s" "0123456789012345{secret}"; printf "%s" "{secret[:7]}"; sleep 0.2; '
        f'printf "%s" "{secret[7:]}"; printf "%s" "$(head -c 60 /dev/zero | tr "\\\\0" x)"'
    )
    job = make_job(
        jobs_dir,
        "cut.toml",
        f"schedule = \"@manual\"\nmax_output = 40\nshell = '{script}'\n"
        f'[env]\nTOKEN = {{ value = "{secret}", secret = true }}\n',
    )
    result = asyncio.run(execute(job, run_env={}, stop=asyncio.Event()))
    assert result.truncated
    pieces = {secret[i : i + 5] for i in range(len(secret) - 4)}
    assert [piece for piece in pieces if piece in result.stdout] == []
    assert result.stdout.startswith("0123456789012345***")  # not "...s3cr", cut mid-secret
