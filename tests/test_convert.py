"""`kron convert`: the other format, with the comments, strings and arrays as people wrote them."""

from __future__ import annotations

from pathlib import Path

from kron.config.documents import read_document

from .conftest import run_cli

LONG = 'tar -czf "/var/backups/jobs-$(date +%F).tar.gz" --exclude="*.runs.jsonl" ' + " ".join(
    f"/srv/data/folder-{n}" for n in range(12)
)


def test_toml_becomes_yaml_with_its_comments_blocks_and_one_line_arrays(jobs_dir: Path) -> None:
    source = jobs_dir / "weekly.toml"
    source.write_text(
        f"""\
#:schema ../schemas/job.schema.json
# Every Monday, a tarball.

description = \"\"\"Tarball of the week,
in two lines.\"\"\"
schedule = "0 8 * * MON"
shell = '{LONG}'  # taken literally
# fifteen minutes at most
timeout = "15m"
success_codes = [
    0,
    3,
]

[retry]
on = ["failed", "timeout"]
"""
    )
    before = read_document(source, max_size=1 << 20).data
    result = run_cli("convert", source, "--to", "yaml")
    target = jobs_dir / "weekly.yaml"
    assert (result.code, result.out, result.err) == (0, f"{source} -> {target}\n", "")
    assert not source.exists()
    assert (
        target.read_text()
        == f"""\
# yaml-language-server: $schema=../schemas/job.schema.json
# Every Monday, a tarball.

description: |-
  Tarball of the week,
  in two lines.
schedule: 0 8 * * MON
shell: {LONG}  # taken literally
# fifteen minutes at most
timeout: 15m
retry:
  on: [failed, timeout]
success_codes:
  - 0
  - 3
"""
    )
    assert read_document(target, max_size=1 << 20).data == before
    assert run_cli("validate", "-q", "--jobs-dir", jobs_dir).code == 0


def test_yaml_becomes_toml_with_single_quoted_shell_lines_and_blocks(jobs_dir: Path) -> None:
    source = jobs_dir / "check.yaml"
    source.write_text(
        f"""\
# A one-shot check.

schedule: "@at 2027-06-07T09:00"
# the check
shell: |
  echo | openssl s_client -connect example.org:443 2>/dev/null \\
    | openssl x509 -noout -enddate
env:
  LINE: {LONG}
notify:
  - on: [failure, recovery]  # both
    webhook: https://hooks.example.org/kron
"""
    )
    before = read_document(source, max_size=1 << 20).data
    result = run_cli("convert", source, "--to", "toml")
    target = jobs_dir / "check.toml"
    assert (result.code, result.err) == (0, "")
    assert (
        target.read_text()
        == f"""\
# A one-shot check.

schedule = "@at 2027-06-07T09:00"
# the check
shell = '''echo | openssl s_client -connect example.org:443 2>/dev/null \\
  | openssl x509 -noout -enddate
'''

[env]
LINE = '{LONG}'

[[notify]]
on = ["failure", "recovery"] # both
webhook = "https://hooks.example.org/kron"
"""
    )
    assert read_document(target, max_size=1 << 20).data == before


def test_a_comment_that_belongs_to_no_key_is_named_as_not_carried(jobs_dir: Path) -> None:
    source = jobs_dir / "a.toml"
    source.write_text(
        'schedule = "@daily"\ncommand = [\n    "backup",\n    # "--dry-run",\n    "--full",\n]\n'
    )
    result = run_cli("convert", source, "--to", "yaml", "--stdout")
    assert (result.code, result.out) == (
        0,
        "schedule: '@daily'\ncommand:\n  - backup\n  - --full\n",
    )
    assert result.err == "note: comments on lines 4 were not carried over\n"
    assert source.exists()


def test_a_value_toml_cannot_hold_is_an_error_and_nothing_is_written(jobs_dir: Path) -> None:
    source = jobs_dir / "a.yaml"
    source.write_text("schedule: '@daily'\nshell: 'true'\ndescription: ~\n")
    result = run_cli("convert", source, "--to", "toml")
    assert (result.code, result.out) == (1, "")
    assert (
        result.err
        == f"{source}: cannot be written as toml: description is null, which TOML cannot hold\n"
    )
    assert sorted(p.name for p in jobs_dir.iterdir()) == ["a.yaml"]


def test_convert_refuses_to_overwrite_the_other_file(jobs_dir: Path) -> None:
    (jobs_dir / "a.toml").write_text('schedule = "@daily"\nshell = "true"\n')
    (jobs_dir / "a.yaml").write_text("schedule: '@daily'\nshell: 'true'\n")
    result = run_cli("convert", jobs_dir / "a.toml", "--to", "yaml")
    assert (result.code, result.err) == (2, f"kron convert: {jobs_dir / 'a.yaml'} already exists\n")
    assert (jobs_dir / "a.toml").read_text() == 'schedule = "@daily"\nshell = "true"\n'


def test_comments_between_deliveries_make_the_round_trip_and_the_result_is_formatted(
    jobs_dir: Path,
) -> None:
    toml = """\
schedule = "@hourly"
shell = "true"

# page someone
[[notify]]
on = "failure"
webhook = "https://hooks.example.org/pager"

# and tell the channel
[[notify]]
on = "always"
slack = "https://hooks.slack.com/services/x"
"""
    source = jobs_dir / "probe.toml"
    source.write_text(toml)
    assert run_cli("convert", source, "--to", "yaml").code == 0
    assert (
        (jobs_dir / "probe.yaml").read_text()
        == """\
schedule: '@hourly'
shell: 'true'
notify:
  # page someone
  - on: failure
    webhook: https://hooks.example.org/pager
  # and tell the channel
  - on: always
    slack: https://hooks.slack.com/services/x
"""
    )
    assert run_cli("fmt", "--check", jobs_dir).out == ""
    back = run_cli("convert", jobs_dir / "probe.yaml", "--to", "toml")
    assert (back.code, back.err) == (0, "")
    assert source.read_text() == toml
