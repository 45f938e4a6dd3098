"""The command line: validate, next, schema, fmt, convert, history and show, called as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import run_cli

GOOD = 'schedule = "0 3 * * *"\ntimezone = "Europe/Berlin"\ncommand = ["true"]\n'


def test_validate_lists_each_job_with_its_zone_and_next_fire(jobs_dir: Path, write) -> None:  # type: ignore[no-untyped-def]
    write("a.toml", GOOD)
    result = run_cli("validate", "--jobs-dir", jobs_dir)
    assert result.code == 0
    assert result.lines[0].startswith("ok a: '0 3 * * *' in Europe/Berlin, next ")
    assert result.lines[-1] == "1 file: 1 valid, 0 with errors, 0 warnings"


def test_validate_exit_codes_follow_the_spec(jobs_dir: Path, write) -> None:  # type: ignore[no-untyped-def]
    write("a.toml", GOOD)
    assert run_cli("validate", "--jobs-dir", jobs_dir).code == 0
    write("warn.toml", 'schedule = "@daily"\ncommand = ["true"]\n')
    assert run_cli("validate", "--jobs-dir", jobs_dir).code == 0
    assert run_cli("validate", "--strict", "--jobs-dir", jobs_dir).code == 1
    write("bad.toml", 'schedule = "@daily"\n')
    assert run_cli("validate", "--jobs-dir", jobs_dir).code == 1
    assert run_cli("validate", "--format", "yaml", "--jobs-dir", jobs_dir).code == 2
    missing = run_cli("validate", jobs_dir / "nope.toml")
    assert (missing.code, missing.err) == (
        2,
        f"kron validate: no such file or folder: {jobs_dir / 'nope.toml'}\n",
    )


def test_validate_reports_every_error_of_every_file_without_a_traceback(
    jobs_dir: Path, write
) -> None:  # type: ignore[no-untyped-def]
    write(
        "one.toml",
        'schedule = "0 3 * * *"\ntimezone = "Mars/Base"\nshell = "true"\ntimeout = "soon"\n',
    )
    write("two.yaml", "schedule: '* * *'\ncommand: [true]\n")
    result = run_cli("validate", "-q", "--jobs-dir", jobs_dir)
    assert result.code == 1
    assert "Traceback" not in result.out + result.err
    lines = [line.replace(str(jobs_dir) + "/", "") for line in result.lines]
    assert lines == [
        "one.toml:2:1: timezone: unknown time zone 'Mars/Base'; use an IANA name like 'Europe/Berlin'",
        "one.toml:4:1: timeout: 'soon' is not a duration; write e.g. '30s', '5m', '1h30m', '500ms', '7d'",
        "two.yaml:1:1: schedule: cron expressions have 5 fields (or 6 with leading seconds); got 3",
        "two.yaml:2:11: command.0: expected a string, got true",
        "2 files: 0 valid, 2 with errors, 0 warnings",
    ]


def test_validate_json_is_machine_readable(jobs_dir: Path, write) -> None:  # type: ignore[no-untyped-def]
    write("a.toml", GOOD)
    write("b.toml", 'schedule = "61 * * * *"\ntimezone = "UTC"\ncommand = ["true"]\n')
    body = json.loads(run_cli("validate", "--format", "json", "--jobs-dir", jobs_dir).out)
    assert (body["files"], body["valid"]) == (2, 1)
    [error] = body["errors"]
    assert (error["path"], error["line"], error["column"], error["field"]) == (
        str(jobs_dir / "b.toml"),
        1,
        1,
        "schedule",
    )
    assert body["jobs"][0]["timezone"] == "Europe/Berlin"


def test_validate_github_format_prints_workflow_annotations(jobs_dir: Path, write) -> None:  # type: ignore[no-untyped-def]
    write("b.toml", 'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\ntimeout = "x"\n')
    result = run_cli("validate", "--format", "github", "--jobs-dir", jobs_dir)
    assert result.lines[0] == (
        f"::error file={jobs_dir / 'b.toml'},line=4,col=1,title=kron validate::"
        "timeout: 'x' is not a duration; write e.g. '30s', '5m', '1h30m', '500ms', '7d'"
    )


def test_validate_a_single_file_checks_it_in_its_jobs_directory(jobs_dir: Path, write) -> None:  # type: ignore[no-untyped-def]
    write("a.toml", GOOD + 'triggers = ["b"]\n')
    write("b.toml", GOOD)
    write("broken.toml", "x = [")
    result = run_cli("validate", jobs_dir / "a.toml", "--jobs-dir", jobs_dir)
    assert result.code == 0, result.out
    assert result.lines[-1] == "1 file: 1 valid, 0 with errors, 0 warnings"


def test_next_prints_upcoming_times_across_a_dst_change() -> None:
    # Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST.
    result = run_cli(
        "next",
        "--expr",
        "30 2 * * *",
        "--tz",
        "Europe/Berlin",
        "--from",
        "2026-03-27T12:00",
        "-n",
        "3",
        "--json",
    )
    assert json.loads(result.out) == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]


def test_next_for_a_job_uses_its_zone(jobs_dir: Path, write) -> None:  # type: ignore[no-untyped-def]
    write("a.toml", GOOD)
    result = run_cli(
        "next", "a", "--from", "2026-01-01T00:00:00Z", "-n", "1", "--jobs-dir", jobs_dir
    )
    assert result.out == "2026-01-01T03:00:00+01:00  CET  (2026-01-01T02:00:00+00:00)\n"


def test_next_with_a_bad_expression_is_a_usage_error() -> None:
    result = run_cli("next", "--expr", "61 * * * *")
    assert result.code == 2
    assert result.err.startswith("kron next: minute field '61' is not valid")


def test_schema_prints_the_json_schema() -> None:
    schema = json.loads(run_cli("schema").out)
    assert schema["title"] == "kron job"
    assert "schedule" in schema["properties"]
    assert json.loads(run_cli("schema", "--settings").out)["title"] == "kron runner settings"


def test_fmt_rewrites_in_schema_order_and_check_reports(jobs_dir: Path, write) -> None:  # type: ignore[no-untyped-def]
    path = write(
        "a.toml", '# header comment\n\ncommand = ["true"]\ntimezone = "UTC"\nschedule = "@daily"\n'
    )
    check = run_cli("fmt", "--check", "--jobs-dir", jobs_dir)
    assert (check.code, check.out) == (1, f"{path}: not in canonical form\n")
    assert run_cli("fmt", "--jobs-dir", jobs_dir).code == 0
    assert (
        path.read_text()
        == '# header comment\n\nschedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\n'
    )
    assert run_cli("fmt", "--check", "--jobs-dir", jobs_dir).code == 0


def test_fmt_moves_an_end_of_line_comment_with_its_key(jobs_dir: Path, write) -> None:  # type: ignore[no-untyped-def]
    path = write("a.toml", 'command = ["true"]  # keep me\nschedule = "@daily"\n')
    result = run_cli("fmt", "--jobs-dir", jobs_dir)
    assert (result.code, result.out, result.err) == (0, f"{path}: formatted\n", "")
    assert path.read_text() == 'schedule = "@daily"\ncommand = ["true"]  # keep me\n'


def test_convert_turns_toml_into_yaml_and_keeps_the_job_id(jobs_dir: Path, write) -> None:  # type: ignore[no-untyped-def]
    path = write(
        "a.toml",
        GOOD
        + '[retry]\nattempts = 2\n[[notify]]\non = ["failure"]\nslack = "https://hooks.invalid/x"\n',
    )
    result = run_cli("convert", path, "--to", "yaml")
    assert result.code == 0
    assert not path.exists()
    converted = jobs_dir / "a.yaml"
    assert run_cli("validate", "-q", "--jobs-dir", jobs_dir).code == 0
    assert "on:" in converted.read_text() or "'on':" in converted.read_text()
    back = run_cli("convert", converted, "--to", "toml")
    assert back.code == 0
    assert (jobs_dir / "a.toml").read_text().startswith('schedule = "0 3 * * *"\n')


def test_history_and_show_read_the_records(jobs_dir: Path, write) -> None:  # type: ignore[no-untyped-def]
    write("a.toml", 'schedule = "@manual"\nshell = "echo out; echo err >&2; exit 3"\n')
    ran = run_cli("run", "a", "--jobs-dir", jobs_dir, "--json")
    assert ran.code == 1
    run_id = json.loads(ran.out)["run_id"]
    history = run_cli("history", "--jobs-dir", jobs_dir, "--json")
    assert [(r["run_id"], r["outcome"], r["exit_code"]) for r in json.loads(history.out)] == [
        (run_id, "failed", 3)
    ]
    shown = run_cli("show", run_id[:14], "--jobs-dir", jobs_dir)
    assert shown.code == 0
    assert "outcome:     failed" in shown.out
    assert shown.out.endswith("--- stdout ---\nout\n--- stderr ---\nerr\n")
    assert (
        run_cli("history", "--outcome", "succeeded", "--jobs-dir", jobs_dir, "--json").out == "[]\n"
    )
    assert run_cli("show", "ffff", "--jobs-dir", jobs_dir).code == 1


def test_no_command_prints_help_and_exits_2() -> None:
    result = run_cli()
    assert result.code == 2
    assert "validate" in result.out


def test_history_reads_a_records_dir_given_on_the_command_line(
    jobs_dir: Path, write, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from kron.engine import records

    elsewhere = tmp_path / "records"
    records.append(
        elsewhere / "a.runs.jsonl",
        {
            "v": 1,
            "run_id": "r1",
            "job": "a",
            "slot": "2026-01-01T00:00:00Z",
            "trigger": "schedule",
            "attempt": 1,
            "outcome": "succeeded",
            "started_at": "2026-01-01T00:00:00Z",
            "ended_at": "2026-01-01T00:00:01Z",
        },
    )
    write("a.toml", GOOD)
    assert run_cli("history", "--jobs-dir", jobs_dir, "--json").out == "[]\n"
    found = json.loads(
        run_cli("history", "--jobs-dir", jobs_dir, "--records-dir", elsewhere, "--json").out
    )
    assert [r["run_id"] for r in found] == ["r1"]
    assert run_cli("show", "r1", "--jobs-dir", jobs_dir, "--records-dir", elsewhere).code == 0


def _mixed_jobs_dir(write) -> None:  # type: ignore[no-untyped-def]
    """Every kind of finding, spread over folders so that each worker gets some of each."""
    for i in range(12):
        write(
            f"team-{i % 3}/ok-{i:02}.toml",
            f'schedule = "0 {i} 1 1 *"\ntimezone = "UTC"\ncommand = ["true"]\n',
        )
    write("a/same.toml", GOOD)
    write("a/same.yaml", "schedule: '@yearly'\ntimezone: UTC\ncommand: ['true']\n")
    write("bad.toml", 'schedule = "61 * * * *"\ntimezone = "UTC"\ncommand = ["true"]\n')
    write("broken.toml", 'schedule = ["x"\n')
    write("no-zone.toml", 'schedule = "@yearly"\ncommand = ["true"]\n')
    write("first.toml", GOOD + 'triggers = ["second", "nobody"]\n')
    write("second.toml", GOOD + 'triggers = ["first"]\n')
    write(
        "secret.toml",
        GOOD + 'timeout = "hunter2"\n[env]\nTOKEN = { value = "hunter2", secret = true }\n',
    )


def test_validate_on_several_processes_reports_exactly_what_one_process_reports(
    jobs_dir: Path, write, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from kron.config import catalog

    _mixed_jobs_dir(write)
    for argv in (["-q"], ["--format", "json"], ["--format", "github"], []):
        monkeypatch.setattr(catalog, "worker_count", lambda files: 1)
        alone = run_cli("validate", *argv, "--jobs-dir", jobs_dir)
        monkeypatch.setattr(catalog, "worker_count", lambda files: 3)
        assert run_cli("validate", *argv, "--jobs-dir", jobs_dir) == alone
        assert alone.code == 1
    lines = [line.replace(str(jobs_dir) + "/", "") for line in alone.lines]
    assert [line for line in lines if not line.startswith("ok ")] == [
        "a/same.toml: job id 'a/same' is also defined by a/same.yaml",
        "a/same.yaml: job id 'a/same' is also defined by a/same.toml",
        "bad.toml:1:1: schedule: minute field '61' is not valid; expected 0-59",
        "broken.toml:2:1: TOML: Unclosed array (at end of document)",
        "first.toml:4:1: triggers.1: unknown job 'nobody'",
        "first.toml:4:1: triggers: trigger cycle: first -> second -> first",
        "no-zone.toml:1:1: warning: schedule: no timezone; read in UTC "
        "(set `timezone` here or in kron.toml)",
        "secret.toml:4:1: timeout: '***' is not a duration; "
        "write e.g. '30s', '5m', '1h30m', '500ms', '7d'",
        "20 files: 15 valid, 6 with errors, 1 warning",
    ]
    valid = [line.split(":")[0] for line in lines if line.startswith("ok ")]
    assert valid == ["ok first", "ok no-zone", "ok second"] + [
        f"ok team-{i % 3}/ok-{i:02}" for i in sorted(range(12), key=lambda i: (i % 3, i))
    ]


def test_validate_twice_in_one_process_sees_every_change_in_between(jobs_dir: Path, write) -> None:  # type: ignore[no-untyped-def]
    write("a.toml", GOOD)
    assert run_cli("validate", "-q", "--jobs-dir", jobs_dir).lines == [
        "1 file: 1 valid, 0 with errors, 0 warnings"
    ]
    path = write("a.toml", GOOD.replace("0 3 * * *", "0 0 31 2 *"))
    assert run_cli("validate", "-q", "--jobs-dir", jobs_dir).lines == [
        f"{path}:1:1: schedule: never fires: no date matches '0 0 31 2 *'",
        "1 file: 0 valid, 1 with errors, 0 warnings",
    ]
    write("a.toml", GOOD)
    jobs_dir.chmod(0o775)
    assert run_cli("validate", "-q", "--jobs-dir", jobs_dir).lines == [
        f"{path}: refused: folder {jobs_dir} is writable by group (mode 0775); "
        f"run chmod g-w {jobs_dir}",
        "1 file: 0 valid, 1 with errors, 0 warnings",
    ]


def test_validate_of_toml_files_imports_neither_yaml_nor_what_other_commands_need(
    jobs_dir: Path, write
) -> None:  # type: ignore[no-untyped-def]
    # Start-up is most of a small validate: it loads only what reading TOML job files needs.
    write("a.toml", GOOD)
    probe = (
        "import sys\n"
        "from kron.cli.main import main\n"
        f"main(['validate', '-q', '--jobs-dir', {str(jobs_dir)!r}])\n"
        "heavy = ('yaml', 'jsonschema', 'multiprocessing', 'kron.model.conditions', 'kron.service.daemon')\n"
        "print(*[name for name in heavy if name in sys.modules])\n"
    )
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert ran.stdout.splitlines() == ["1 file: 1 valid, 0 with errors, 0 warnings", ""]
    write("b.yaml", "schedule: '@yearly'\ntimezone: UTC\ncommand: ['true']\n")
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert ran.stdout.splitlines() == ["2 files: 2 valid, 0 with errors, 0 warnings", "yaml"]


def test_usage_errors_exit_2_with_the_command_and_a_near_job_id(jobs_dir: Path, write) -> None:  # type: ignore[no-untyped-def]
    write("backups/nightly.toml", GOOD)
    cases = {
        ("next", "nightly"): "kron next: no job 'nightly' in {d}; did you mean 'backups/nightly'?",
        ("tree", "nightli"): "kron tree: no job 'nightli' in {d} (give a job id or a file)",
        ("history", "backups/nightli"): (
            "kron history: no job 'backups/nightli' in {d}; did you mean 'backups/nightly'?"
        ),
        ("history", "--outcome", "falure"): (
            "kron history: --outcome: no outcome 'falure'; did you mean 'failed'?"
        ),
        ("list", "--tag", "kindprobe"): "kron list: --tag wants KEY=VALUE, got 'kindprobe'",
        ("pause", "--tag", "team"): "kron pause: --tag wants KEY=VALUE, got 'team'",
    }
    for argv, message in cases.items():
        result = run_cli(*argv, "--jobs-dir", jobs_dir)
        assert (result.code, result.out, result.err) == (2, "", message.format(d=jobs_dir) + "\n")


def test_history_of_a_removed_job_still_reads_its_records(jobs_dir: Path, write) -> None:  # type: ignore[no-untyped-def]
    from kron.engine import records

    records.append(
        jobs_dir / "gone.runs.jsonl",
        {
            "v": 1,
            "run_id": "r1",
            "job": "gone",
            "slot": "2026-01-01T00:00:00Z",
            "trigger": "schedule",
            "attempt": 1,
            "outcome": "succeeded",
            "started_at": "2026-01-01T00:00:00Z",
            "ended_at": "2026-01-01T00:00:01Z",
        },
    )
    found = json.loads(run_cli("history", "gone", "--jobs-dir", jobs_dir, "--json").out)
    assert [r["run_id"] for r in found] == ["r1"]


def test_next_lines_up_its_columns_across_a_dst_change() -> None:
    # Europe/Berlin 2026-10-25 03:00 CEST -> 02:00 CET.
    result = run_cli(
        "next", "--expr", "0 3 * * SUN", "--tz", "Europe/Berlin", "--from", "2026-10-18", "-n", "2"
    )
    assert result.lines == [
        "2026-10-18T03:00:00+02:00  CEST  (2026-10-18T01:00:00+00:00)",
        "2026-10-25T03:00:00+01:00  CET   (2026-10-25T02:00:00+00:00)",
    ]
