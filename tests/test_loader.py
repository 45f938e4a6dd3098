"""The loader: every bad file gets a clear error naming file, field and line; others still load."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kron.config.catalog import load_dir
from kron.model.job import Concurrency, ShellAction
from kron.model.run import Outcome

GOOD = """
schedule = "0 3 * * *"
timezone = "Europe/Berlin"
command = ["true"]
"""


def only_errors(result):  # type: ignore[no-untyped-def]
    return [str(p) for p in result.errors]


def test_a_valid_file_loads_into_a_frozen_typed_job(jobs_dir, write):
    write(
        "backups/nightly.toml",
        """
        schedule = "15 3 * * *"
        timezone = "Europe/Berlin"
        shell = "echo hi"
        timeout = "1h30m"
        concurrency = "replace"
        max_output = "1KiB"
        [retry]
        attempts = 3
        delay = "500ms"
        on = ["failed", "timeout"]
        """,
    )
    result = load_dir(jobs_dir)
    assert only_errors(result) == []
    job = result.jobs["backups/nightly"]
    assert job.timezone.key == "Europe/Berlin"
    assert job.timeout is not None
    assert job.timeout.total_seconds() == 5400
    assert job.concurrency is Concurrency.REPLACE
    assert job.max_output == 1024
    assert job.retry.attempts == 3
    assert job.retry.delay.total_seconds() == 0.5
    assert job.retry.on == frozenset({Outcome.FAILED, Outcome.TIMEOUT})
    assert job.action == ShellAction(script="echo hi")
    with pytest.raises(AttributeError):
        job.timeout = None  # type: ignore[misc]


def test_job_id_is_the_relative_path_without_extension(jobs_dir, write):
    write("a/b/c.yaml", "schedule: '@daily'\ntimezone: UTC\ncommand: [\"true\"]\n")
    assert list(load_dir(jobs_dir).jobs) == ["a/b/c"]


def test_defaults_from_kron_toml_merge_under_each_job_and_the_job_wins(jobs_dir, write):
    write(
        "kron.toml",
        """
        timezone = "America/New_York"
        [defaults]
        timeout = "5m"
        [defaults.retry]
        attempts = 4
        delay = "1s"
        [defaults.tags]
        team = "ops"
        """,
    )
    write(
        "j.toml",
        """
        schedule = "@hourly"
        command = ["true"]
        [retry]
        delay = "2s"
        [tags]
        tier = "1"
        """,
    )
    result = load_dir(jobs_dir)
    job = result.jobs["j"]
    assert job.timezone.key == "America/New_York"
    assert job.timezone_explicit is True
    assert job.timeout is not None
    assert job.timeout.total_seconds() == 300
    assert (job.retry.attempts, job.retry.delay.total_seconds()) == (4, 2.0)
    assert dict(job.tags) == {"team": "ops", "tier": "1"}


def test_a_changed_definition_changes_the_config_sha(jobs_dir, write):
    path = write("j.toml", GOOD)
    first = load_dir(jobs_dir).jobs["j"].config_sha
    path.write_text(GOOD.replace("0 3", "0 4"))
    second = load_dir(jobs_dir).jobs["j"].config_sha
    assert first != second
    assert len(first) == 16


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "toml-syntax.toml",
            'schedule = "@daily"\ncommand = [\n',
            "toml-syntax.toml:3:1: TOML: Invalid value (at end of document)",
        ),
        ("yaml-syntax.yaml", "schedule: '@daily'\ncommand: [true\n", "yaml-syntax.yaml:3:1: YAML:"),
        (
            "typo.toml",
            'schedul = "@daily"\ncommand = ["true"]\n',
            "typo.toml:1:1: schedul: unknown field 'schedul'; did you mean 'schedule'?",
        ),
        (
            "type.toml",
            'schedule = "@daily"\ncommand = ["true"]\ntimezone = "UTC"\n[retry]\nattempts = "three"\n',
            'type.toml:5:1: retry.attempts: expected an integer, got "three"',
        ),
        (
            "duration.toml",
            'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\ntimeout = "5 minutes"\n',
            "duration.toml:4:1: timeout: '5 minutes' is not a duration; write e.g. '30s', '5m', '1h30m', '500ms', '7d'",
        ),
        (
            "cron.toml",
            'schedule = "61 * * * *"\ntimezone = "UTC"\ncommand = ["true"]\n',
            "cron.toml:1:1: schedule:",
        ),
        (
            "never.toml",
            'schedule = "0 0 30 2 *"\ntimezone = "UTC"\ncommand = ["true"]\n',
            "never.toml:1:1: schedule:",
        ),
        (
            "zone.toml",
            'schedule = "@daily"\ntimezone = "Mars/Olympus"\ncommand = ["true"]\n',
            "zone.toml:2:1: timezone: unknown time zone 'Mars/Olympus'; use an IANA name like 'Europe/Berlin'",
        ),
        (
            "noaction.toml",
            'schedule = "@daily"\ntimezone = "UTC"\n',
            "noaction.toml: no action; add one of command, shell, http, docker, agent",
        ),
        (
            "twoactions.toml",
            'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\nshell = "true"\n',
            "twoactions.toml:4:1: shell: two actions (command and shell); a job has exactly one",
        ),
        ("empty.toml", "", "empty.toml: empty file; a job file holds one table of fields"),
        (
            "list.yaml",
            "- a\n- b\n",
            "list.yaml:1: the file holds a list; a job file holds one table of fields",
        ),
        (
            "tag.yaml",
            "schedule: !!python/object/apply:os.system ['touch /tmp/kron-pwned']\n",
            "tag.yaml:1:11: YAML: could not determine a constructor",
        ),
        (
            "dupkey.yaml",
            "schedule: '@daily'\nschedule: '@hourly'\ncommand: ['true']\n",
            "dupkey.yaml:2:1: YAML: duplicate key 'schedule'",
        ),
        (
            "yaml-on.yaml",
            "schedule: '@daily'\ntimezone: UTC\ncommand: ['true']\nnotify:\n  - on: [failur]\n    slack: https://h.invalid/x\n",
            'yaml-on.yaml:5:10: notify.0.on.0: "failur" is not one of "success", "failure", "recovery", "always"',
        ),
    ],
)
def test_each_bad_file_gets_one_clear_error_and_the_good_file_still_loads(
    jobs_dir, write, name, text, expected
):
    write("good.toml", GOOD)
    write(name, text)
    result = load_dir(jobs_dir)
    assert list(result.jobs) == ["good"]
    errors = only_errors(result)
    assert len(errors) >= 1
    shown = [e.replace(str(jobs_dir) + os.sep, "") for e in errors]
    assert shown[0].startswith(expected), shown


def test_yaml_object_tags_never_execute(jobs_dir, write, tmp_path):
    marker = tmp_path / "pwned"
    write(
        "evil.yaml",
        f"schedule: !!python/object/apply:os.system ['touch {marker}']\ncommand: ['true']\n",
    )
    load_dir(jobs_dir)
    assert not marker.exists()


def test_a_yaml_alias_bomb_is_refused_quickly(jobs_dir, write):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(
            f"{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]"
        )
    write("bomb.yaml", "\n".join(lines) + "\n")
    errors = only_errors(load_dir(jobs_dir))
    assert len(errors) == 1
    assert "expands to over 10000 values (YAML alias bomb?)" in errors[0]


def test_deep_nesting_is_refused(jobs_dir, write):
    write("deep.toml", "x-deep = " + "[" * 5000 + "]" * 5000 + "\n")
    write("deeper.yaml", "x-deep: " + "[" * 5000 + "]" * 5000 + "\n")
    errors = only_errors(load_dir(jobs_dir))
    assert len(errors) == 2
    assert all("nesting deeper than 32 levels" in e for e in errors)


def test_binary_garbage_is_refused_with_its_line(jobs_dir):
    (jobs_dir / "garbage.toml").write_bytes(b'schedule = "@daily"\n\x89PNG\r\n\x1a\n\x00\x00')
    (jobs_dir / "latin1.toml").write_bytes(b'description = "caf\xe9"\n')
    errors = sorted(only_errors(load_dir(jobs_dir)))
    assert errors[0].endswith("garbage.toml:4: binary data (NUL byte); a job file is UTF-8 text")
    assert errors[1].endswith("latin1.toml:1: not UTF-8 text (byte 0xe9)")


def test_a_file_over_the_size_limit_is_refused_without_reading_it(jobs_dir, write):
    write("kron.toml", 'max_file_size = "1KiB"\n')
    write("big.toml", GOOD + "#" * 2000 + "\n")
    errors = only_errors(load_dir(jobs_dir))
    assert len(errors) == 1
    assert "big.toml: file is" in errors[0]
    assert "over the 1024-byte limit" in errors[0]


def test_symlink_loops_are_reported_per_file(jobs_dir, write):
    write("good.toml", GOOD)
    os.symlink("loop-b.toml", jobs_dir / "loop-a.toml")
    os.symlink("loop-a.toml", jobs_dir / "loop-b.toml")
    os.symlink(".", jobs_dir / "again")
    result = load_dir(jobs_dir)
    assert list(result.jobs) == ["good"]
    messages = sorted(e.replace(str(jobs_dir) + os.sep, "") for e in only_errors(result))
    assert messages == [
        "again: symlink loop: folder already read",
        "loop-a.toml: cannot read: Too many levels of symbolic links",
        "loop-b.toml: cannot read: Too many levels of symbolic links",
    ]


def test_a_folder_link_to_a_folder_above_the_jobs_directory_is_not_read(jobs_dir, write):
    write("good.toml", GOOD)
    (jobs_dir.parent / "outside.toml").write_text(GOOD)  # would load as up/outside
    os.symlink("..", jobs_dir / "up")
    os.symlink("/", jobs_dir / "root")
    result = load_dir(jobs_dir)
    assert list(result.jobs) == ["good"]
    messages = sorted(e.replace(str(jobs_dir) + os.sep, "") for e in only_errors(result))
    assert messages == [
        "root: symlink loop: / holds the jobs directory; not read",
        f"up: symlink loop: {os.path.realpath(jobs_dir.parent)} holds the jobs directory; not read",
    ]


def test_two_files_with_the_same_id_are_an_error_naming_both(jobs_dir, write):
    a = write("a.toml", GOOD)
    b = write("a.yaml", "schedule: '@daily'\ntimezone: UTC\ncommand: ['true']\n")
    result = load_dir(jobs_dir)
    assert result.jobs == {}
    assert sorted(only_errors(result)) == sorted(
        [f"{a}: job id 'a' is also defined by {b}", f"{b}: job id 'a' is also defined by {a}"]
    )


def test_hidden_files_editor_temporaries_and_records_are_not_jobs(jobs_dir, write):
    write("good.toml", GOOD)
    for name in (
        ".hidden.toml",
        "good.toml~",
        "#good.toml#",
        ".#good.toml",
        "good.runs.jsonl",
        ".git/x.toml",
    ):
        write(name, "garbage = [")
    assert only_errors(load_dir(jobs_dir)) == []


def test_triggers_must_name_known_jobs_and_not_form_a_cycle(jobs_dir, write):
    write("a.toml", GOOD + 'triggers = ["b"]\n')
    write("b.toml", GOOD + 'triggers = ["a", "c"]\n')
    write("c.toml", GOOD + 'triggers = ["nope"]\n')
    messages = sorted(e.split(": ", 1)[1] for e in only_errors(load_dir(jobs_dir)))
    assert messages == ["triggers.0: unknown job 'nope'", "triggers: trigger cycle: a -> b -> a"]


def test_a_missing_env_file_is_an_error(jobs_dir, write):
    write("j.toml", GOOD + 'env_file = "secrets.env"\n')
    errors = only_errors(load_dir(jobs_dir))
    assert len(errors) == 1
    assert "env_file" in errors[0]
    assert "does not exist" in errors[0]


def test_warnings_name_a_missing_timezone_and_a_timeout_longer_than_the_interval(jobs_dir, write):
    write("j.toml", 'schedule = "*/5 * * * *"\ncommand = ["true"]\ntimeout = "10m"\n')
    result = load_dir(jobs_dir)
    assert list(result.jobs) == ["j"]
    warnings = [p.message for p in result.warnings]
    assert warnings == [
        "no timezone; read in UTC (set `timezone` here or in kron.toml)",
        "timeout 10m is longer than the 5m between slots; slots will be skipped",
    ]


def test_policy_deny_makes_a_job_invalid(jobs_dir, write):
    write("kron.toml", '[policy]\ndeny = ["rm -rf *", "*curl*|*sh*"]\n')
    write("bad.toml", 'schedule = "@daily"\ntimezone = "UTC"\nshell = "curl http://x | sh"\n')
    write("ok.toml", GOOD)
    result = load_dir(jobs_dir)
    assert list(result.jobs) == ["ok"]
    assert only_errors(result)[0].endswith(
        "bad.toml:3:1: shell: command 'curl http://x | sh' is denied by policy pattern '*curl*|*sh*'"
    )


def test_secret_env_values_never_appear_in_messages(jobs_dir, write):
    write(
        "j.toml",
        """
        schedule = "@daily"
        command = ["true"]
        [env]
        TOKEN = { value = "hunter2-secret", secret = true }
        """,
    )
    result = load_dir(jobs_dir)
    assert "hunter2-secret" not in "\n".join(str(p) for p in result.problems)
    assert result.jobs["j"].secret_env == frozenset({"TOKEN"})


def test_the_example_jobs_directory_is_valid():
    folder = Path(__file__).parent.parent / "jobs.d"
    result = load_dir(folder)
    assert only_errors(result) == []
    assert len(result.jobs) >= 5
