"""`kron fmt`: keys in the schema's order, with every comment, quote and layout as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from kron.config.documents import read_document
from kron.config.fmt import check_rewrite, formatted, replace_file
from kron.model.errors import SpecError

from .conftest import run_cli

ROOT = Path(__file__).parent.parent


def _fmt(jobs_dir: Path, name: str, text: str) -> str:
    """Write a file, run `kron fmt` on it, and return what it became."""
    path = jobs_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    result = run_cli("fmt", path)
    assert (result.code, result.err) == (0, "")
    return path.read_text(encoding="utf-8")


def test_every_file_of_the_shipped_jobs_directory_is_already_in_canonical_form() -> None:
    result = run_cli("fmt", "--check", ROOT / "jobs.d")
    assert (result.code, result.out, result.err) == (0, "", "")


def test_toml_keys_move_into_schema_order_with_the_comments_above_them(jobs_dir: Path) -> None:
    text = """\
# Header: what this job is for.
# It stays on top.

# the command
shell = 'pg_dump "$DB" | gzip > /var/backups/db.gz'  # single quotes kept
timeout = "1h"
# when
schedule = "0 3 * * *"
tags = { team = "ops" }
description = "Nightly dump"
"""
    assert (
        _fmt(jobs_dir, "a.toml", text)
        == """\
# Header: what this job is for.
# It stays on top.

description = "Nightly dump"
# when
schedule = "0 3 * * *"
# the command
shell = 'pg_dump "$DB" | gzip > /var/backups/db.gz'  # single quotes kept
timeout = "1h"
tags = { team = "ops" }
"""
    )


def test_toml_tables_move_with_the_comment_right_above_their_header(jobs_dir: Path) -> None:
    text = """\
schedule = "@daily"
command = ["backup",
  "--full"]  # one line or several: as written

# labels
[tags]
kind = "backup"
# attempts = 5 would be too many

# how often to try
[retry]
delay = "5m"
attempts = 3
# end of the file
"""
    assert (
        _fmt(jobs_dir, "a.toml", text)
        == """\
schedule = "@daily"
command = ["backup",
  "--full"]  # one line or several: as written

# how often to try
[retry]
attempts = 3
delay = "5m"

# labels
[tags]
kind = "backup"
# attempts = 5 would be too many
# end of the file
"""
    )


def test_toml_arrays_of_tables_keep_their_order_and_the_comments_between_them(
    jobs_dir: Path,
) -> None:
    text = """\
schedule = "@hourly"
shell = "true"
[[notify]]
webhook = "https://hooks.example.org/a"
on = ["failure", "recovery"]
# the second delivery
[[notify]]
telegram = { chat_id = 1, bot_token_env = "T" }
on = "always"
"""
    assert (
        _fmt(jobs_dir, "a.toml", text)
        == """\
schedule = "@hourly"
shell = "true"

[[notify]]
on = ["failure", "recovery"]
webhook = "https://hooks.example.org/a"

# the second delivery
[[notify]]
on = "always"
telegram = { chat_id = 1, bot_token_env = "T" }
"""
    )


def test_toml_multiline_strings_and_x_keys_stay_as_written(jobs_dir: Path) -> None:
    text = '''\
x-owner = "ops"
schedule = "@weekly"

[agent]
command = ["llm", "{prompt}"]
prompt = """Summarise last week's changes,
in ten bullet points."""
'''
    assert (
        _fmt(jobs_dir, "a.toml", text)
        == '''\
schedule = "@weekly"
x-owner = "ops"

[agent]
prompt = """Summarise last week's changes,
in ten bullet points."""
command = ["llm", "{prompt}"]
'''
    )


def test_a_last_line_without_a_newline_can_move(jobs_dir: Path) -> None:
    assert _fmt(jobs_dir, "a.toml", 'shell = "true"\nschedule = "@daily"') == (
        'schedule = "@daily"\nshell = "true"\n'
    )


def test_a_dotted_key_is_ordered_as_its_table(jobs_dir: Path) -> None:
    text = 'retry.attempts = 2\nschedule = "@daily"\nshell = "true"\n'
    assert _fmt(jobs_dir, "a.toml", text) == (
        'schedule = "@daily"\nshell = "true"\nretry.attempts = 2\n'
    )


def test_kron_toml_follows_the_settings_schema_and_defaults_keep_their_order(
    jobs_dir: Path,
) -> None:
    text = """\
[defaults]
timeout = "1h"
catchup = "last"

[defaults.tags]
team = "ops"

shutdown_grace = "30s"
"""
    # shutdown_grace above is a key of [defaults.tags] in TOML: nothing to reorder there.
    assert _fmt(jobs_dir, "kron.toml", text) == text
    moved = 'shutdown_grace = "30s"\ntimezone = "UTC"\n\n[defaults]\ntimeout = "1h"\n'
    assert _fmt(jobs_dir, "kron.toml", moved) == (
        'timezone = "UTC"\nshutdown_grace = "30s"\n\n[defaults]\ntimeout = "1h"\n'
    )


def test_a_table_named_only_through_its_subtables_gets_no_header_of_its_own(
    jobs_dir: Path,
) -> None:
    text = """\
shutdown_grace = "30s"
timezone = "UTC"

[defaults.tags]
team = "ops"
# a month of runs
[defaults.records]
max_age = "30d"
"""
    assert (
        _fmt(jobs_dir, "kron.toml", text)
        == """\
timezone = "UTC"
shutdown_grace = "30s"

[defaults.tags]
team = "ops"

# a month of runs
[defaults.records]
max_age = "30d"
"""
    )


def test_yaml_keys_move_with_their_comments_and_keep_quotes_blocks_and_flow(
    jobs_dir: Path,
) -> None:
    text = """\
# yaml-language-server: $schema=../schemas/job.schema.json
# A one-shot check.

# the check itself
shell: |
  echo | openssl s_client -connect example.org:443 2>/dev/null \\
    | openssl x509 -noout -enddate
timeout: 1m   # generous
schedule: '@at 2027-06-07T09:00'
description: "Check the renewed certificate"
success_codes: [0, 3]
tags:
  team: ops
  kind: follow-up
"""
    assert (
        _fmt(jobs_dir, "a.yaml", text)
        == """\
# yaml-language-server: $schema=../schemas/job.schema.json
# A one-shot check.

description: "Check the renewed certificate"
schedule: '@at 2027-06-07T09:00'
# the check itself
shell: |
  echo | openssl s_client -connect example.org:443 2>/dev/null \\
    | openssl x509 -noout -enddate
timeout: 1m   # generous
success_codes: [0, 3]
tags:
  team: ops
  kind: follow-up
"""
    )


def test_yaml_sequences_keep_their_indentation_and_the_comments_between_items(
    jobs_dir: Path,
) -> None:
    text = """\
schedule: "@hourly"
command:
    - /usr/local/bin/probe
    - --quiet
notify:
    # page the on-call person
    - webhook: https://hooks.example.org/a  # the pager
      on: failure
    # and tell the channel
    - slack: https://hooks.slack.com/services/x
      on: [failure, recovery]
timeout: 30s
"""
    assert (
        _fmt(jobs_dir, "a.yaml", text)
        == """\
schedule: "@hourly"
command:
    - /usr/local/bin/probe
    - --quiet
timeout: 30s
notify:
    # page the on-call person
    - on: failure
      webhook: https://hooks.example.org/a  # the pager
    # and tell the channel
    - on: [failure, recovery]
      slack: https://hooks.slack.com/services/x
"""
    )


def test_yaml_mappings_and_sequences_keep_their_own_indentation(jobs_dir: Path) -> None:
    text = """\
schedule: "@hourly"
shell: "true"
retry:
    delay: 5m
    attempts: 3
notify:
  - webhook: https://hooks.example.org/a
    on: failure
"""
    assert (
        _fmt(jobs_dir, "a.yaml", text)
        == """\
schedule: "@hourly"
shell: "true"
retry:
    attempts: 3
    delay: 5m
notify:
  - on: failure
    webhook: https://hooks.example.org/a
"""
    )


def test_a_yaml_file_in_order_is_left_byte_for_byte(jobs_dir: Path) -> None:
    text = "schedule:    '@daily'   \nshell:   >-\n   folded\n   text\ntags: { a: b }\n"
    assert _fmt(jobs_dir, "a.yaml", text) == text


def test_a_long_yaml_shell_line_is_never_folded(jobs_dir: Path) -> None:
    line = "echo " + " ".join(f"word{n}" for n in range(60))
    text = f"shell: {line}\nschedule: '@daily'\n"
    assert _fmt(jobs_dir, "a.yaml", text) == f"schedule: '@daily'\nshell: {line}\n"


def test_fmt_is_idempotent_on_what_it_writes(jobs_dir: Path) -> None:
    (jobs_dir / "a.toml").write_text(
        '# h\n\ncommand = ["x"]\n[tags]\na = "b"\n# c\n[retry]\nattempts = 2\nschedule = "@daily"\n'
    )
    (jobs_dir / "b.yaml").write_text("command: [x]  # c\n# s\nschedule: '@daily'\n")
    assert run_cli("fmt", jobs_dir).code == 0
    again = run_cli("fmt", "--check", jobs_dir)
    assert (again.code, again.out) == (0, "")


def test_check_lists_the_files_that_would_change_and_changes_none(jobs_dir: Path) -> None:
    moved = jobs_dir / "moved.toml"
    moved.write_text('shell = "true"\nschedule = "@daily"\n')
    (jobs_dir / "fine.toml").write_text('schedule = "@daily"\nshell = "true"\n')
    result = run_cli("fmt", "--check", jobs_dir)
    assert (result.code, result.out, result.err) == (1, f"{moved}: not in canonical form\n", "")
    assert moved.read_text() == 'shell = "true"\nschedule = "@daily"\n'


def test_files_that_do_not_parse_are_named_with_their_line_and_left_alone(
    jobs_dir: Path,
) -> None:
    files = {
        "broken.toml": 'schedule = "@daily\nshell = "true"\n',
        "twice.toml": 'schedule = "@daily"\nshell = "a"\nshell = "b"\n',
        "twice.yaml": "schedule: '@daily'\nshell: a\nshell: b\n",
        "tabs.yaml": "schedule: '@daily'\n\tshell: a\n",
        "binary.toml": "\x00\x01",
    }
    for name, text in files.items():
        (jobs_dir / name).write_text(text)
    moved = jobs_dir / "moved.toml"
    moved.write_text('shell = "true"\nschedule = "@daily"\n')
    result = run_cli("fmt", jobs_dir)
    assert result.code == 1
    assert result.out == f"{moved}: formatted\n"
    assert result.err.splitlines() == [
        f"{jobs_dir}/binary.toml:1: binary data (NUL byte); a job file is UTF-8 text",
        f"{jobs_dir}/broken.toml:1:19: TOML: Illegal character '\\n'",
        f"{jobs_dir}/tabs.yaml:2:1: YAML: found character that cannot start any token",
        f"{jobs_dir}/twice.toml:3:12: TOML: Cannot overwrite a value",
        f"{jobs_dir}/twice.yaml:3:1: YAML: duplicate key 'shell'",
    ]
    for name, text in files.items():
        assert (jobs_dir / name).read_text() == text
    assert sorted(p.name for p in jobs_dir.iterdir()) == sorted([*files, "moved.toml"])


def test_a_rewrite_keeps_the_file_mode_and_leaves_no_temporary_file(jobs_dir: Path) -> None:
    path = jobs_dir / "a.toml"
    path.write_text('shell = "true"\nschedule = "@daily"\n')
    path.chmod(0o640)
    assert run_cli("fmt", jobs_dir).code == 0
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    assert sorted(p.name for p in jobs_dir.iterdir()) == ["a.toml"]


def test_a_symlinked_job_file_stays_a_symlink_and_its_target_is_rewritten(
    jobs_dir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "shared.toml"
    target.write_text('shell = "true"\nschedule = "@daily"\n')
    link = jobs_dir / "a.toml"
    link.symlink_to(target)
    assert run_cli("fmt", link).code == 0
    assert link.is_symlink()
    assert target.read_text() == 'schedule = "@daily"\nshell = "true"\n'


def test_a_file_changed_since_it_was_read_is_not_overwritten(jobs_dir: Path) -> None:
    path = jobs_dir / "a.toml"
    path.write_text('shell = "true"\nschedule = "@daily"\n')
    result = formatted(path)
    path.write_text('shell = "false"\nschedule = "@hourly"\n')
    with pytest.raises(SpecError) as caught:
        replace_file(path, result.text, expected=result.doc.fingerprint)
    assert str(caught.value.problems[0]) == (
        f"{path}: kron fmt: left alone: the file changed while it was being formatted"
    )
    assert path.read_text() == 'shell = "false"\nschedule = "@hourly"\n'


def test_a_rewrite_that_would_change_a_value_or_lose_a_comment_is_refused(
    jobs_dir: Path,
) -> None:
    path = jobs_dir / "a.yaml"
    path.write_text("schedule: '@daily'  # every day\nretry: {attempts: 2}\n")
    doc = read_document(path, max_size=1 << 20)
    with pytest.raises(SpecError) as changed:
        check_rewrite(doc, "schedule: '@daily'  # every day\nretry: {attempts: 2.0}\n")
    assert changed.value.problems[0].message == (
        "kron fmt: left alone: the rewritten text would hold other values"
    )
    with pytest.raises(SpecError) as lost:
        check_rewrite(doc, "schedule: '@daily'\nretry: {attempts: 2}\n")
    assert lost.value.problems[0].message == (
        "kron fmt: left alone: a comment would move out of reach or be lost"
    )
    check_rewrite(doc, "retry: {attempts: 2}\nschedule: '@daily'  # every day\n")


def test_schema_directive_is_written_relative_to_each_file_and_replaced_in_place(
    jobs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    nested = jobs_dir / "backups" / "nightly.toml"
    nested.parent.mkdir()
    nested.write_text('# Nightly.\n\nschedule = "@daily"\nshell = "true"\n')
    (jobs_dir / "kron.toml").write_text('timezone = "UTC"\n')
    (jobs_dir / "probe.yaml").write_text("schedule: '@hourly'\nshell: 'true'\n")
    result = run_cli("fmt", "--schema-directive", "schemas", "jobs.d")
    assert (result.code, result.err) == (0, "")
    assert nested.read_text() == (
        '#:schema ../../schemas/job.schema.json\n# Nightly.\n\nschedule = "@daily"\nshell = "true"\n'
    )
    assert (jobs_dir / "kron.toml").read_text() == (
        '#:schema ../schemas/kron.schema.json\ntimezone = "UTC"\n'
    )
    assert (jobs_dir / "probe.yaml").read_text() == (
        "# yaml-language-server: $schema=../schemas/job.schema.json\n"
        "schedule: '@hourly'\nshell: 'true'\n"
    )
    again = run_cli("fmt", "--check", "--schema-directive", "schemas", "jobs.d")
    assert (again.code, again.out) == (0, "")
    url = run_cli("fmt", "--schema-directive", "https://schemas.example.org/kron/", "jobs.d")
    assert url.code == 0
    assert nested.read_text().splitlines()[:2] == [
        "#:schema https://schemas.example.org/kron/job.schema.json",
        "# Nightly.",
    ]
    # Without the flag the line is kept as it is.
    assert run_cli("fmt", "--check", "jobs.d").code == 0


def test_new_writes_the_schema_directive_first_when_asked(
    jobs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KRON_JOBS_DIR", raising=False)
    result = run_cli(
        "new", "reports/weekly", "--schedule", "@weekly", "--shell", "make report",
        "--schema-directive", "schemas", "--format", "yaml",
    )  # fmt: skip
    assert result.code == 0
    assert (jobs_dir / "reports" / "weekly.yaml").read_text() == (
        "# yaml-language-server: $schema=../../schemas/job.schema.json\n"
        "schedule: '@weekly'\nshell: make report\n"
    )
    printed = run_cli(
        "new", "x", "--schedule", "@daily", "--shell", "true", "--stdout",
        "--schema-directive", "https://schemas.example.org/kron",
    )  # fmt: skip
    assert printed.out == (
        '#:schema https://schemas.example.org/kron/job.schema.json\nschedule = "@daily"\n'
        'shell = "true"\n'
    )


def test_the_style_keeping_libraries_are_loaded_by_fmt_alone(jobs_dir: Path) -> None:
    import subprocess
    import sys

    (jobs_dir / "a.toml").write_text('schedule = "@daily"\nshell = "true"\n')
    (jobs_dir / "b.yaml").write_text("schedule: '@daily'\nshell: 'true'\n")
    probe = (
        "import io, sys\n"
        "import kron.service.daemon\n"
        "from kron.cli.main import main\n"
        f"jobs = {str(jobs_dir)!r}\n"
        "for argv in (['validate'], ['history'], ['new', 'c', '--schedule', '@daily', '--shell', 'true']):\n"
        "    main([*argv, '--jobs-dir', jobs], out=io.StringIO(), err=io.StringIO())\n"
        "libraries = ('tomlkit', 'ruamel.yaml', 'shtab')\n"
        "print(*[name for name in libraries if name in sys.modules])\n"
        "main(['fmt', '--jobs-dir', jobs])\n"
        "print(*[name for name in libraries if name in sys.modules])\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    # b.yaml is in order: it is not even parsed for its style.
    assert ran.stdout.splitlines() == ["", "tomlkit"]
