"""What the commands print: outcomes in colour on a terminal only, and every field of a record."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import run_cli
from .harness import DEADLINE_S
from .httpd import serving

KRON = [sys.executable, "-m", "kron"]
GREEN, RED, RESET = "\x1b[32m", "\x1b[31m", "\x1b[0m"


@pytest.fixture
def two_runs(jobs_dir: Path) -> dict[str, str]:
    """A job that failed and one that succeeded, run in this process; their run ids."""
    (jobs_dir / "bad.toml").write_text('schedule = "@manual"\nshell = "exit 3"\n')
    (jobs_dir / "good.toml").write_text('schedule = "@manual"\nshell = "echo fine"\n')
    ids = {}
    for job in ("bad", "good"):
        ran = run_cli("run", job, "--jobs-dir", jobs_dir, "--json")
        ids[job] = json.loads(ran.out)["run_id"]
    return ids


def _in_terminal(argv: list[str], *, cwd: Path, env: dict[str, str]) -> str:
    """Run a command with a pseudo-terminal as its stdout; what it wrote there."""
    leader, follower = pty.openpty()
    chunks = []
    deadline = time.monotonic() + DEADLINE_S
    with subprocess.Popen(argv, stdout=follower, stderr=subprocess.PIPE, cwd=cwd, env=env) as child:
        os.close(follower)
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([leader], [], [], deadline - time.monotonic())
                if not ready:
                    break
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(leader)
        _, errors = child.communicate(timeout=DEADLINE_S)
    assert child.returncode == 0, errors
    return b"".join(chunks).decode().replace("\r\n", "\n")


def _kron(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """`kron ...` in a child process whose stdout is a pipe."""
    return subprocess.run(
        [*KRON, *argv], capture_output=True, text=True, env=_env(**env), timeout=DEADLINE_S,
        check=True,
    )  # fmt: skip


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TERM")}
    return env | {"TERM": "xterm"} | extra


def test_history_colours_outcomes_when_asked_and_keeps_the_columns_aligned(
    jobs_dir: Path, two_runs: dict[str, str]
) -> None:
    plain = run_cli("history", "--jobs-dir", jobs_dir).lines
    coloured = run_cli("history", "--jobs-dir", jobs_dir, "--color", "always").lines
    assert plain[1].split()[4] == "succeeded"
    assert coloured[1] == plain[1].replace("succeeded", f"{GREEN}succeeded{RESET}")
    assert coloured[2] == plain[2].replace("failed   ", f"{RED}failed{RESET}   ")
    assert RED not in "".join(plain) + "".join(run_cli("history", "--jobs-dir", jobs_dir).lines)


def test_a_terminal_gets_colour_unless_no_color_is_set(
    jobs_dir: Path, two_runs: dict[str, str]
) -> None:
    show = [*KRON, "show", two_runs["bad"], "--jobs-dir", str(jobs_dir)]
    on_terminal = _in_terminal(show, cwd=jobs_dir, env=_env())
    assert f"outcome:     {RED}failed{RESET}\n" in on_terminal
    without = _in_terminal(show, cwd=jobs_dir, env=_env(NO_COLOR="1"))
    assert "outcome:     failed\n" in without
    assert "\x1b[" not in without
    history = _in_terminal(
        [*KRON, "history", "--jobs-dir", str(jobs_dir)], cwd=jobs_dir, env=_env()
    )
    assert f"{GREEN}succeeded" in history
    assert "\x1b[" in history


def test_a_pipe_gets_colour_only_with_force_color(jobs_dir: Path, two_runs: dict[str, str]) -> None:
    show = ["show", two_runs["good"], "--jobs-dir", str(jobs_dir)]
    assert "outcome:     succeeded\n" in _kron(show).stdout
    forced = _kron(show, FORCE_COLOR="1").stdout
    assert f"outcome:     {GREEN}succeeded{RESET}\n" in forced
    assert "\x1b[" not in _kron([*show, "--color", "never"], FORCE_COLOR="1").stdout


def test_show_prints_every_field_the_record_has_and_each_delivery(
    jobs_dir: Path, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    ready.write_text("")
    with serving() as server:
        (jobs_dir / "ping.toml").write_text(
            f"""\
schedule = "@manual"

[http]
url = "{server.url("/ping")}"

[wait]
until = "file:{ready}"

[[notify]]
on = "always"
webhook = "{server.url("/hook")}"
"""
        )
        ran = run_cli("run", "ping", "--jobs-dir", jobs_dir, "--json")
        assert ran.code == 0
    record = json.loads(ran.out)
    shown = run_cli("show", record["run_id"], "--jobs-dir", jobs_dir)
    assert shown.code == 0
    fields = dict(line.split(": ", 1) for line in shown.lines if ": " in line)
    fields = {name.rstrip(": ").strip(): value.strip() for name, value in fields.items()}
    expected = {key: value for key, value in record.items() if key not in ("v", "stdout", "stderr")}
    flat = {}
    for key, value in expected.items():
        if isinstance(value, dict):
            flat |= {f"{key}.{name}": inner for name, inner in value.items()}
        else:
            flat[key] = value
    shown_values = {
        name: str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in flat.items()
        if value not in (None, "", False)
    }
    assert {name: fields[name] for name in shown_values} == shown_values
    assert {"http_status", "latency_ms", "wait.satisfied", "wait.waited_s"} <= set(fields)
    assert fields["http_status"] == "200"
    assert fields["delivery"] == "webhook ok (first attempt)"
    assert shown.out.endswith("--- stdout ---\npong\n")
