"""kron validate as a new user meets it: every error at once, near misses named, paths judged
as the daemon judges them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from kron.config.validate import validate

from .conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent


def shown(result_lines: list[str], jobs_dir: Path) -> list[str]:
    return [line.replace(str(jobs_dir) + "/", "") for line in result_lines]


def test_a_misspelt_field_does_not_hide_a_bad_schedule_below_it(jobs_dir: Path, write) -> None:  # type: ignore[no-untyped-def]
    write(
        "a.toml",
        'timout = "5m"\nschedule = "0 25 * * *"\ntimezone = "UTC"\ncommand = ["true"]\n',
    )
    result = run_cli("validate", "-q", "--jobs-dir", jobs_dir)
    assert (result.code, shown(result.lines, jobs_dir)) == (
        1,
        [
            "a.toml:1:1: timout: unknown field 'timout'; did you mean 'timeout'?",
            "a.toml:2:1: schedule: hour field '25' is not valid; expected 0-23",
            "1 file: 0 valid, 1 with errors, 0 warnings",
        ],
    )


def test_a_bad_timeout_does_not_hide_a_bad_interval_a_zone_or_an_enum(
    jobs_dir: Path, write
) -> None:  # type: ignore[no-untyped-def]
    write(
        "b.toml",
        'schedule = "@every 90x"\ntimezone = "Europe/Berln"\ntimeout = "fast"\n'
        'command = ["true"]\nconcurrency = "forbidd"\n'
        '[[notify]]\non = ["falure"]\nwebhook = "http://127.0.0.1:9/x"\n',
    )
    result = run_cli("validate", "-q", "--jobs-dir", jobs_dir)
    duration = "write e.g. '30s', '5m', '1h30m', '500ms', '7d'"
    assert shown(result.lines, jobs_dir) == [
        f"b.toml:1:1: schedule: @every: '90x' is not a duration; {duration}",
        "b.toml:2:1: timezone: unknown time zone 'Europe/Berln'; did you mean 'Europe/Berlin'?",
        f"b.toml:3:1: timeout: 'fast' is not a duration; {duration}",
        'b.toml:5:1: concurrency: "forbidd" is not one of "forbid", "allow", "replace"; '
        "did you mean 'forbid'?",
        'b.toml:7:1: notify.0.on.0: "falure" is not one of "success", "failure", "recovery", '
        '"always", "stuck"; did you mean \'failure\'?',
        "1 file: 0 valid, 1 with errors, 0 warnings",
    ]


def test_a_sub_folder_is_judged_as_the_daemon_judges_it(jobs_dir: Path, write) -> None:  # type: ignore[no-untyped-def]
    write("kron.toml", 'timezone = "Europe/Berlin"\n')
    write("mine/flaky.toml", 'schedule = "0 3 * * *"\ncommand = ["true"]\n')
    write("other.toml", 'schedule = "0 25 * * *"\ncommand = ["true"]\n')
    result = run_cli("validate", "--jobs-dir", jobs_dir, jobs_dir / "mine")
    assert result.code == 0
    assert result.lines[0].startswith("ok mine/flaky: '0 3 * * *' in Europe/Berlin, next ")
    assert result.lines[1:] == ["1 file: 1 valid, 0 with errors, 0 warnings"]


def test_a_duplicate_id_across_a_sub_folder_is_reported_when_validating_the_sub_folder(
    jobs_dir: Path, write
) -> None:  # type: ignore[no-untyped-def]
    write("mine/a.toml", 'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\n')
    write("mine/a.yaml", "schedule: '@daily'\ntimezone: UTC\ncommand: ['true']\n")
    result = run_cli("validate", "-q", "--jobs-dir", jobs_dir, jobs_dir / "mine")
    assert shown(result.lines, jobs_dir) == [
        "mine/a.toml: job id 'mine/a' is also defined by mine/a.yaml",
        "mine/a.yaml: job id 'mine/a' is also defined by mine/a.toml",
        "2 files: 0 valid, 2 with errors, 0 warnings",
    ]


def test_a_warning_about_a_defaulted_value_names_its_line_in_kron_toml(
    jobs_dir: Path, write
) -> None:  # type: ignore[no-untyped-def]
    write("kron.toml", '# settings\ntimezone = "UTC"\n\n[defaults]\ntimeout = "1h"\n')
    write("probe.toml", 'schedule = "*/30 * * * * *"\ncommand = ["true"]\n')
    result = run_cli("validate", "-q", "--strict", "--jobs-dir", jobs_dir)
    assert (result.code, shown(result.lines, jobs_dir)) == (
        1,
        [
            "probe.toml: warning: timeout: timeout 1h is longer than the 30s between slots; "
            "slots will be skipped (the value comes from [defaults] in kron.toml:5)",
            "1 file: 1 valid, 0 with errors, 1 warning",
        ],
    )


def test_a_key_written_after_a_free_form_table_is_warned_about(jobs_dir: Path, write) -> None:  # type: ignore[no-untyped-def]
    write("kron.toml", '[defaults.tags]\nteam = "ops"\nmetrics = "127.0.0.1:9188"\n')
    write(
        "j.toml",
        'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\n[env]\ntimeout = "5m"\n',
    )
    result = run_cli("validate", "-q", "--jobs-dir", jobs_dir)
    table_rule = "a TOML key belongs to the last [table] header above it"
    assert (result.code, shown(result.lines, jobs_dir)) == (
        0,
        [
            "kron.toml:3:1: warning: defaults.tags.metrics: `metrics` is an entry of "
            f"[defaults.tags] here, not the kron.toml setting of that name: {table_rule}; if "
            "you meant the kron.toml setting, move the line above the first [table] header",
            "j.toml:5:1: warning: env.timeout: `timeout` is an entry of [env] here, not the job "
            f"field of that name: {table_rule}; if you meant the job field, move the line above "
            "the first [table] header",
            "1 file: 1 valid, 0 with errors, 2 warnings",
        ],
    )


def test_the_shipped_examples_pass_strict_validation() -> None:
    report = validate([], jobs_dir=ROOT / "jobs.d", now=datetime(2026, 12, 2, tzinfo=UTC))
    assert (report.errors, report.warnings, len(report.jobs)) == ([], [], 5)
