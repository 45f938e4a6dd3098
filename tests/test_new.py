"""`kron new`: a job file from flags, checked by the daemon's loader, written once and atomically."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from .conftest import run_cli

EVERY_FLAG_TOML = """\
description = "Nightly dump"
schedule = "0 3 * * *"
timezone = "Europe/Berlin"
command = [
    "pg_dump",
    "--format=c",
    "-f",
    "/tmp/db.dump",
]
timeout = "1h"

[retry]
attempts = 3

[wait]
until = "tcp://127.0.0.1:5432"

[[notify]]
on = [
    "failure",
    "recovery",
]
webhook = "https://hooks.example.org/kron"

[[notify]]
on = [
    "failure",
    "recovery",
]

[notify.telegram]
bot_token_env = "OPS_BOT_TOKEN"
chat_id = "-100123"
base_url = "https://bots.example.org"

[tags]
team = "ops"
tier = "1"
"""


def _listing(folder: Path) -> list[str]:
    """Every entry below `folder`, hidden ones included (a leftover temporary would show)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _next_new_years(zone: ZoneInfo, n: int) -> list[str]:
    """The next `n` 09:00s of 1 January in `zone`, worked out from the calendar alone."""
    now = datetime.now(zone)
    year = now.year if now < datetime(now.year, 1, 1, 9, tzinfo=zone) else now.year + 1
    return [datetime(y, 1, 1, 9, tzinfo=zone).isoformat() for y in range(year, year + n)]


def test_new_writes_every_flag_in_the_form_kron_fmt_writes(jobs_dir: Path) -> None:
    result = run_cli(
        "new", "backups/nightly", "--jobs-dir", jobs_dir,
        "--schedule", "0 3 * * *", "--timezone", "Europe/Berlin", "--timeout", "1h",
        "--retry", "3", "--wait", "tcp://127.0.0.1:5432",
        "--notify-webhook", "https://hooks.example.org/kron",
        "--notify-telegram", "-100123", "--telegram-token-env", "OPS_BOT_TOKEN",
        "--telegram-base-url", "https://bots.example.org",
        "--notify-on", "failure", "--notify-on", "recovery",
        "--tag", "team=ops", "--tag", "tier=1", "--description", "Nightly dump",
        "--command", "pg_dump", "--format=c", "-f", "/tmp/db.dump",
    )  # fmt: skip
    path = jobs_dir / "backups" / "nightly.toml"
    assert (result.code, result.err) == (0, "")
    assert result.lines[0] == f"created {path} (job backups/nightly)"
    assert result.lines[1] == "zone: Europe/Berlin"
    assert len(result.lines) == 5
    assert path.read_text() == EVERY_FLAG_TOML
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert _listing(jobs_dir) == ["backups", "backups/nightly.toml"]
    # The file round-trips: kron validate accepts it, kron fmt would not change a byte.
    checked = run_cli("validate", "--jobs-dir", jobs_dir, "--format", "json")
    body = json.loads(checked.out)
    assert (checked.code, body["errors"], body["warnings"]) == (0, [], [])
    assert [j["id"] for j in body["jobs"]] == ["backups/nightly"]
    fmt = run_cli("fmt", "--check", "--jobs-dir", jobs_dir)
    assert (fmt.code, fmt.out) == (0, "")


def test_new_prints_the_path_the_zone_and_the_next_three_fires(jobs_dir: Path) -> None:
    result = run_cli(
        "new", "greet", "--jobs-dir", jobs_dir, "--schedule", "0 9 1 1 *",
        "--timezone", "Europe/Berlin", "--shell", "echo happy new year",
    )  # fmt: skip
    zone = ZoneInfo("Europe/Berlin")
    assert result.lines == [
        f"created {jobs_dir / 'greet.toml'} (job greet)",
        "zone: Europe/Berlin",
        *(f"next: {when}" for when in _next_new_years(zone, 3)),
    ]


def test_new_writes_yaml_with_the_agent_and_http_actions(jobs_dir: Path) -> None:
    agent = run_cli(
        "new", "weekly/audit", "--jobs-dir", jobs_dir, "--format", "yaml",
        "--schedule", "0 8 * * MON", "--timezone", "UTC",
        "--agent-prompt", "Audit the TLS certificates", "--agent-endpoint",
        "http://127.0.0.1:8080/v1/chat/completions", "--agent-model", "small",
        "--agent-key-env", "LLM_KEY", "--notify-webhook", "https://hooks.example.org/a",
        "--notify-on", "always",
    )  # fmt: skip
    assert agent.code == 0, agent.err
    assert (jobs_dir / "weekly" / "audit.yaml").read_text() == (
        "schedule: 0 8 * * MON\n"
        "timezone: UTC\n"
        "agent:\n"
        "  prompt: Audit the TLS certificates\n"
        "  endpoint: http://127.0.0.1:8080/v1/chat/completions\n"
        "  model: small\n"
        "  api_key_env: LLM_KEY\n"
        "notify:\n"
        "- 'on': always\n"
        "  webhook: https://hooks.example.org/a\n"
    )
    cli_agent = run_cli(
        "new", "weekly/ask", "--jobs-dir", jobs_dir, "--schedule", "@weekly",
        "--timezone", "UTC", "--agent-prompt", "What changed?",
        "--agent-command", "llm", "-m", "small", "{prompt}",
    )  # fmt: skip
    assert cli_agent.code == 0, cli_agent.err
    assert (jobs_dir / "weekly" / "ask.toml").read_text() == (
        'schedule = "@weekly"\ntimezone = "UTC"\n\n[agent]\nprompt = "What changed?"\n'
        'command = [\n    "llm",\n    "-m",\n    "small",\n    "{prompt}",\n]\n'
    )
    http = run_cli(
        "new", "probe", "--jobs-dir", jobs_dir, "--schedule", "*/30 * * * * *",
        "--timezone", "UTC", "--http-url", "http://127.0.0.1:9/health", "--method", "head",
    )  # fmt: skip
    assert http.code == 0, http.err
    assert (jobs_dir / "probe.toml").read_text() == (
        'schedule = "*/30 * * * * *"\ntimezone = "UTC"\n\n[http]\nmethod = "HEAD"\nurl = "http://127.0.0.1:9/health"\n'
    )
    checked = run_cli("validate", "-q", "--jobs-dir", jobs_dir)
    assert checked.lines == ["3 files: 3 valid, 0 with errors, 0 warnings"]


def test_new_with_stdout_prints_the_file_and_writes_nothing(jobs_dir: Path) -> None:
    result = run_cli(
        "new", "hello", "--jobs-dir", jobs_dir, "--schedule", "@daily", "--shell", "echo hi",
        "--stdout",
    )  # fmt: skip
    assert result.code == 0
    assert result.out == 'schedule = "@daily"\nshell = "echo hi"\n'
    assert result.err.splitlines()[:2] == [
        f"{jobs_dir / 'hello.toml'}:1:1: warning: schedule: no timezone; read in UTC "
        "(set `timezone` here or in kron.toml)",
        "zone: UTC (default)",
    ]
    assert _listing(jobs_dir) == []


@pytest.mark.parametrize(
    ("job_id", "message"),
    [
        ("../escape", "job id '../escape': `..` would leave the jobs directory"),
        ("a/../../escape", "job id 'a/../../escape': `..` would leave the jobs directory"),
        ("/etc/cron", "job id '/etc/cron': an id is a path relative to the jobs directory"),
        (
            "team/.hidden",
            "job id 'team/.hidden': '.hidden' is not a file name kron reads; use letters, "
            "digits and `_ . @ + -`, not starting with `.` or `-`, parts separated by `/`",
        ),
        ("kron", "job id 'kron': kron.toml is kron's settings file"),
        ("nightly.yaml", "job id 'nightly.yaml': give the id without its extension"),
        ("", "the job id is empty"),
    ],
)
def test_new_refuses_an_id_that_is_not_a_job_file_in_the_jobs_directory(
    jobs_dir: Path, job_id: str, message: str
) -> None:
    result = run_cli(
        "new", job_id, "--jobs-dir", jobs_dir, "--schedule", "@daily", "--shell", "true"
    )  # fmt: skip
    assert (result.code, result.err) == (2, f"kron new: {message}\n")
    assert _listing(jobs_dir.parent / "jobs.d") == []
    assert not (jobs_dir.parent / "escape.toml").exists()


@pytest.mark.parametrize("existing", ["report.toml", "report.yaml", "report.yml"])
def test_new_never_writes_over_a_job_file_of_either_format(jobs_dir: Path, existing: str) -> None:
    (jobs_dir / existing).write_text("keep me\n")
    result = run_cli(
        "new", "report", "--jobs-dir", jobs_dir, "--schedule", "@daily", "--shell", "true"
    )  # fmt: skip
    assert result.code == 1
    assert result.err == (
        f"kron: {jobs_dir / existing} already exists (job 'report'); nothing written\n"
    )
    assert (jobs_dir / existing).read_text() == "keep me\n"
    assert _listing(jobs_dir) == [existing]


def test_new_refuses_a_command_the_policy_denies_and_leaves_no_folder_behind(
    jobs_dir: Path,
) -> None:
    (jobs_dir / "kron.toml").write_text('[policy]\ndeny = ["rm *"]\n')
    result = run_cli(
        "new", "cleanup/tmp", "--jobs-dir", jobs_dir, "--schedule", "@daily",
        "--timezone", "UTC", "--command", "rm", "-rf", "/tmp/x",
    )  # fmt: skip
    assert result.code == 1
    assert result.err == (
        f"{jobs_dir / 'cleanup' / 'tmp.toml'}:3:1: command: command 'rm -rf /tmp/x' is denied "
        "by policy pattern 'rm *'\n"
    )
    assert _listing(jobs_dir) == ["kron.toml"]


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("0 0 30 2 *", ":1:1: schedule: never fires: no date matches '0 0 30 2 *'"),
        (
            "@at 2001-01-01T00:00",
            ":1:1: schedule: '@at 2001-01-01T00:00' never fires after now; nothing written",
        ),
    ],
)
def test_new_refuses_a_schedule_that_never_fires(
    jobs_dir: Path, schedule: str, message: str
) -> None:
    result = run_cli(
        "new", "never", "--jobs-dir", jobs_dir, "--schedule", schedule,
        "--timezone", "UTC", "--shell", "true",
    )  # fmt: skip
    assert result.code == 1
    assert result.err.splitlines()[-1] == f"{jobs_dir / 'never.toml'}{message}"
    assert _listing(jobs_dir) == []


def test_new_refuses_a_file_over_the_size_limit_without_keeping_it(jobs_dir: Path) -> None:
    huge = "echo " + "x" * (10 * 1024 * 1024)
    result = run_cli(
        "new", "big/one", "--jobs-dir", jobs_dir, "--schedule", "@daily", "--shell", huge
    )  # fmt: skip
    assert result.code == 1
    assert result.err == (
        f"{jobs_dir / 'big' / 'one.toml'}: file is {len(huge) + 31} bytes, over the "
        "1048576-byte limit\n"
    )
    assert _listing(jobs_dir) == []


def test_new_refuses_a_jobs_directory_the_daemon_would_not_trust(jobs_dir: Path) -> None:
    jobs_dir.chmod(0o775)
    result = run_cli(
        "new", "x", "--jobs-dir", jobs_dir, "--schedule", "@daily", "--shell", "true"
    )  # fmt: skip
    assert result.code == 1
    assert result.err == (
        f"{jobs_dir / 'x.toml'}: refused: folder {jobs_dir} is writable by group (mode 0775); "
        f"run chmod g-w {jobs_dir}\n"
    )
    assert _listing(jobs_dir) == []


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], "give exactly one action: --shell, --command, --http-url, --agent-prompt"),
        (
            ["--shell", "true", "--http-url", "http://127.0.0.1/"],
            "give exactly one action: --shell, --command, --http-url, --agent-prompt "
            "(got --shell and --http-url)",
        ),
        (["--shell", "true", "--method", "POST"], "--method goes with --http-url"),
        (["--shell", "true", "--agent-model", "m"], "--agent-model goes with --agent-prompt"),
        (
            ["--shell", "true", "--notify-on", "always"],
            "--notify-on goes with --notify-webhook or --notify-telegram",
        ),
        (["--shell", "true", "--tag", "team"], "--tag wants KEY=VALUE, got 'team'"),
        (["--command"], "--command needs the program and its arguments after it"),
    ],
)
def test_new_with_flags_that_do_not_make_one_job_is_a_usage_error(
    jobs_dir: Path, flags: list[str], message: str
) -> None:
    result = run_cli("new", "x", "--jobs-dir", jobs_dir, "--schedule", "@daily", *flags)
    assert (result.code, result.err) == (2, f"kron new: {message}\n")
    assert _listing(jobs_dir) == []


def test_new_reports_a_bad_value_with_its_field_and_line(jobs_dir: Path) -> None:
    zone = run_cli(
        "new", "x", "--jobs-dir", jobs_dir, "--schedule", "@daily", "--timezone", "Mars/Base",
        "--shell", "true",
    )  # fmt: skip
    path = jobs_dir / "x.toml"
    assert (zone.code, zone.err) == (
        1,
        f"{path}:2:1: timezone: unknown time zone 'Mars/Base'; use an IANA name like "
        "'Europe/Berlin'\n",
    )
    # As kron validate: every finding at once, in the order of the file.
    shapes = run_cli(
        "new", "x", "--jobs-dir", jobs_dir, "--schedule", "@daily", "--timezone", "UTC",
        "--timeout", "soon", "--retry", "0", "--shell", "true",
    )  # fmt: skip
    assert shapes.code == 1
    assert shapes.err.splitlines() == [
        f"{path}:4:1: timeout: 'soon' is not a duration; write e.g. '30s', '5m', '1h30m', "
        "'500ms', '7d'",
        f"{path}:7:1: retry.attempts: 0 is less than the minimum of 1",
    ]
    condition = run_cli(
        "new", "x", "--jobs-dir", jobs_dir, "--schedule", "@daily", "--timezone", "UTC",
        "--wait", "gopher://x", "--shell", "true",
    )  # fmt: skip
    assert (condition.code, condition.err) == (
        1,
        f"{path}:6:1: wait.until: unknown scheme 'gopher' in 'gopher://x'; use http://, "
        "https://, tcp://, file:, docker:, k8s:, cmd:, and(...), or(...), not(...)\n",
    )
    assert _listing(jobs_dir) == []


def test_new_takes_the_zone_of_kron_toml_and_the_catalog_loads_the_file(
    jobs_dir: Path,
) -> None:
    (jobs_dir / "kron.toml").write_text('timezone = "Europe/Berlin"\n')
    result = run_cli(
        "new", "ops/ping", "--jobs-dir", jobs_dir, "--schedule", "@every 90s", "--shell", "true"
    )  # fmt: skip
    assert result.code == 0, result.err
    assert result.lines[1] == "zone: Europe/Berlin"
    from kron.config.catalog import load_dir

    loaded = load_dir(jobs_dir)
    assert sorted(loaded.jobs) == ["ops/ping"]
    assert loaded.problems == []
    assert loaded.jobs["ops/ping"].path == jobs_dir / "ops" / "ping.toml"
    assert os.listdir(jobs_dir / "ops") == ["ping.toml"]


@pytest.mark.parametrize(
    ("folder", "message"),
    [
        (
            "../up",
            "'../up' is not a folder inside the jobs directory; write a relative path such as 'agents'",
        ),
        (
            "/srv/jobs",
            "'/srv/jobs' is not a folder inside the jobs directory; write a relative path such as 'agents'",
        ),
        ("agents/.private", "'agents/.private': kron never reads hidden folders"),
    ],
)
def test_an_agents_folder_outside_what_kron_reads_is_an_error_of_kron_toml(
    jobs_dir: Path, folder: str, message: str
) -> None:
    (jobs_dir / "kron.toml").write_text(f'[agents]\nfolder = "{folder}"\n')
    result = run_cli("validate", "-q", "--jobs-dir", jobs_dir)
    assert result.code == 1
    assert result.lines == [
        f"{jobs_dir / 'kron.toml'}:2:1: agents.folder: {message}",
        "0 files: 0 valid, 1 with errors, 0 warnings",
    ]


def test_agents_settings_default_to_nothing_allowed_and_read_as_written(jobs_dir: Path) -> None:
    from kron.config.settings import load_settings
    from kron.model.settings import AgentSettings

    assert load_settings(jobs_dir)[0].agents == AgentSettings(
        folder=None, max_files_per_day=10, allow_run=False, allow_pause=False
    )
    (jobs_dir / "kron.toml").write_text(
        '[agents]\nfolder = "./agents/"\nmax_files_per_day = 3\nallow_run = true\nallow_pause = true\n'
    )
    settings, problems = load_settings(jobs_dir)
    assert (problems, settings.agents) == (
        [],
        AgentSettings(folder="agents", max_files_per_day=3, allow_run=True, allow_pause=True),
    )
