"""Hostile job files: every bad value is a problem with its file, line and field, never a crash.

Each row of the table is a value that used to make the loader raise (a traceback from
`kron validate`, a daemon that would not start) or that passed validation and then broke the
daemon at fire time. The daemon's loader (the Catalog) and `kron validate` must say the same.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kron.config import loader
from kron.config.catalog import Catalog, load_dir
from kron.model.errors import MAX_MESSAGE_CHARS
from kron.service.daemon import Daemon

from .clock import FakeClock
from .conftest import CliResult
from .harness import Events, until_true
from .test_reload import live

HEAD = 'schedule = "@daily"\ntimezone = "UTC"\n'
YHEAD = 'schedule: "@daily"\ntimezone: UTC\n'
LOCAL = "http://127.0.0.1:9/"
NUL = "holds a NUL character (\\0), which no path, argument or name can hold"
TOO_LONG = "is longer than 3650d, the longest duration kron takes"
TOO_SHORT = "is shorter than 100ms, the least kron takes here"
BAD_IPV6 = "bad URL 'http://[::1': Invalid IPv6 URL"
TOO_MUCH_OUTPUT = "is over 1MiB, the most output kron keeps"
BAD_REGEX = "regular expression too large or too deeply nested"

# name: (file name, text, (line, field, message))
HOSTILE: dict[str, tuple[str, str, tuple[int | None, str, str]]] = {
    "a timeout that overflows a date": (
        "x.toml",
        HEAD + 'shell = "true"\ntimeout = "99999999999999d"\n',
        (4, "timeout", f"'99999999999999d' {TOO_LONG}"),
    ),
    "a timeout of 0s, which times out every run": (
        "x.toml",
        HEAD + 'shell = "true"\ntimeout = "0s"\n',
        (4, "timeout", f"'0s' {TOO_SHORT}"),
    ),
    "a kill_grace of 0s": (
        "x.toml",
        HEAD + 'shell = "true"\nkill_grace = "0s"\n',
        (4, "kill_grace", f"'0s' {TOO_SHORT}"),
    ),
    "an @every that overflows": (
        "x.toml",
        'schedule = "@every 99999999999999d"\nshell = "true"\n',
        (1, "schedule", f"@every: '99999999999999d' {TOO_LONG}"),
    ),
    "an @at in the year 1": (
        "x.toml",
        'schedule = "@at 0001-01-01T00:00"\ntimezone = "Asia/Tokyo"\nshell = "true"\n',
        (1, "schedule", "@at '0001-01-01T00:00': the year must be from 1970 to 9000"),
    ),
    "an @at in the year 9999, where a jitter cannot be added": (
        "x.toml",
        'schedule = "@at 9999-12-31T23:59"\ntimezone = "America/Los_Angeles"\nshell = "true"\n'
        'jitter = "1d"\n',
        (1, "schedule", "@at '9999-12-31T23:59': the year must be from 1970 to 9000"),
    ),
    "a jitter that overflows": (
        "x.toml",
        HEAD + 'shell = "true"\njitter = "99999999999d"\n',
        (4, "jitter", f"'99999999999d' {TOO_LONG}"),
    ),
    "a folder of the zone database as a zone": (
        "x.toml",
        'schedule = "@daily"\ntimezone = "America"\nshell = "true"\n',
        (2, "timezone", "unknown time zone 'America'; did you mean 'America/Nuuk'?"),
    ),
    "a zone name too long for a file name": (
        "x.toml",
        'schedule = "@daily"\ntimezone = "Europe/' + "x" * 300 + '"\nshell = "true"\n',
        (
            2,
            "timezone",
            "unknown time zone 'Europe/" + "x" * 48 + "...'; use an IANA name like 'Europe/Berlin'",
        ),
    ),
    "a YAML complex key": (
        "x.yaml",
        YHEAD + 'shell: "true"\n? [a, b]\n: 1\n',
        (4, "", "YAML: a key must be a string, not a list; write it in quotes"),
    ),
    "a YAML number as a variable name": (
        "x.yaml",
        YHEAD + 'shell: "true"\nenv:\n  1: x\n',
        (5, "", "YAML: a key must be a string, not the number '1'; write it in quotes"),
    ),
    "a YAML binary value": (
        "x.yaml",
        YHEAD + "shell: !!binary aGVsbG8=\n",
        (3, "", "YAML: the tag !!binary is not allowed in job files"),
    ),
    "a YAML number of 5,000 digits": (
        "x.yaml",
        YHEAD + 'shell: "true"\ncatchup_max: 1' + "0" * 5000 + "\n",
        (4, "", "YAML: a number of over 4000 digits cannot be read"),
    ),
    "a TOML number of 5,000 digits": (
        "x.toml",
        HEAD + 'shell = "true"\ncatchup_max = 1' + "0" * 5000 + "\n",
        (4, "", "TOML: a number of over 4000 digits cannot be read"),
    ),
    "a NUL byte in an argument": (
        "x.toml",
        HEAD + 'command = ["/bin/echo", "a\\u0000b"]\n',
        (3, "command.1", NUL),
    ),
    "a NUL byte in a path": (
        "x.toml",
        HEAD + 'shell = "true"\nenv_file = "secrets\\u0000.env"\n',
        (4, "env_file", NUL),
    ),
    "a NUL byte in a variable name": (
        "x.toml",
        HEAD + 'shell = "true"\n[env]\n"A\\u0000" = "b"\n',
        (4, "env.A\\x00", NUL),
    ),
    "a NUL byte in a user name": (
        "x.toml",
        HEAD + 'shell = "true"\nuser = "ro\\u0000ot"\n',
        (4, "user", NUL),
    ),
    "a user id too large for the system": (
        "x.toml",
        HEAD + 'shell = "true"\nuser = "99999999999999999999"\n',
        (4, "user", "'99999999999999999999' is not a user id; ids are 0 to 4294967294"),
    ),
    "a group id in superscript digits": (
        "x.toml",
        HEAD + 'shell = "true"\ngroup = "\u00b2"\n',
        (4, "group", "'\u00b2' is not a group id; ids are 0 to 4294967294"),
    ),
    "an = in a variable name": (
        "x.toml",
        HEAD + 'shell = "true"\n[env]\n"A=B" = "c"\n',
        (5, "env.A=B", "'A=B' is not a variable name (empty, or has =)"),
    ),
    "an unclosed IPv6 bracket in http.url": (
        "x.toml",
        HEAD + '[http]\nurl = "http://[::1"\n',
        (4, "http.url", BAD_IPV6),
    ),
    "a host name IDNA refuses": (
        "x.toml",
        HEAD + '[http]\nurl = "http://xn--a.example/"\n',
        (
            4,
            "http.url",
            "bad URL 'http://xn--a.example/': Codepoint U+0080 at position 1 of '\\x80' not allowed",
        ),
    ),
    "a header value that is not ASCII": (
        "x.toml",
        HEAD + f'[http]\nurl = "{LOCAL}"\nheaders = {{ X-Name = "caf\u00e9" }}\n',
        (5, "http.headers", "header 'X-Name' cannot be sent: HTTP header values are ASCII text"),
    ),
    "a NaN in a JSON body": (
        "x.yaml",
        YHEAD + f"http:\n  url: {LOCAL}\n  json: {{a: .nan}}\n",
        (
            5,
            "http.json",
            "cannot be sent as JSON: Out of range float values are not JSON compliant",
        ),
    ),
    "a TOML date in a JSON body": (
        "x.toml",
        HEAD + f'[http]\nurl = "{LOCAL}"\njson = {{ when = 2026-01-01T00:00:00Z }}\n',
        (
            5,
            "http.json",
            "cannot be sent as JSON: Object of type datetime is not JSON serializable",
        ),
    ),
    "a bad agent endpoint": (
        "x.toml",
        HEAD + '[agent]\nprompt = "hi"\nendpoint = "http://[::1"\nmodel = "m"\n',
        (5, "agent.endpoint", BAD_IPV6),
    ),
    "a bad healthcheck URL": (
        "x.toml",
        HEAD + 'shell = "true"\nhealthcheck = "http://[::1"\n',
        (4, "healthcheck", BAD_IPV6),
    ),
    "a bad webhook URL": (
        "x.toml",
        HEAD + 'shell = "true"\n[[notify]]\nwebhook = "http://[::1"\n',
        (5, "notify.0.webhook", BAD_IPV6),
    ),
    "a bad webhook table URL": (
        "x.toml",
        HEAD + 'shell = "true"\n[[notify]]\nwebhook = { url = "http://[::1" }\n',
        (5, "notify.0.webhook.url", BAD_IPV6),
    ),
    "a bad Slack URL": (
        "x.toml",
        HEAD + 'shell = "true"\n[[notify]]\nslack = "http://[::1"\n',
        (5, "notify.0.slack", BAD_IPV6),
    ),
    "a bad Telegram base_url": (
        "x.toml",
        HEAD + 'shell = "true"\n[[notify]]\ntelegram = { chat_id = 1, base_url = "http://[::1" }\n',
        (5, "notify.0.telegram.base_url", BAD_IPV6),
    ),
    "a bad URL in a wait condition": (
        "x.toml",
        HEAD + 'shell = "true"\n[wait]\nuntil = "http://[::1==200"\n',
        (5, "wait.until", BAD_IPV6),
    ),
    "a bad address in a wait condition": (
        "x.toml",
        HEAD + 'shell = "true"\n[wait]\nuntil = "tcp://[::1:80"\n',
        (
            5,
            "wait.until",
            "bad address 'tcp://[::1:80'; write tcp://host:port with a port from 1 to 65535",
        ),
    ),
    "a host name label over 63 characters in a wait condition": (
        "x.toml",
        HEAD + 'shell = "true"\n[wait]\nuntil = "tcp://' + "a" * 64 + '.example:80"\n',
        (5, "wait.until", "bad host name in 'tcp://" + "a" * 49 + "...'"),
    ),
    "a wait.every of 0s, a busy loop": (
        "x.toml",
        HEAD + 'shell = "true"\n[wait]\nuntil = "file:/tmp"\nevery = "0s"\n',
        (6, "wait.every", f"'0s' {TOO_SHORT}"),
    ),
    "a wait condition nested 40 deep": (
        "x.toml",
        HEAD + 'shell = "true"\n[wait]\nuntil = "' + "not(" * 40 + "file:/tmp" + ")" * 40 + '"\n',
        (5, "wait.until", "conditions nest deeper than 16 levels (column 65)"),
    ),
    "a float as a size": (
        "x.yaml",
        YHEAD + 'shell: "true"\nmax_output: 1.5\n',
        (4, "max_output", "expected a string or an integer, got 1.5"),
    ),
    "a size too large to compute": (
        "x.toml",
        HEAD + 'shell = "true"\nmax_output = "99999999999999999999GiB"\n',
        (4, "max_output", f"'99999999999999999999GiB' {TOO_MUCH_OUTPUT}"),
    ),
    "a max_output over 1MiB": (
        "x.toml",
        HEAD + 'shell = "true"\nmax_output = "2MiB"\n',
        (4, "max_output", f"'2MiB' {TOO_MUCH_OUTPUT}"),
    ),
    "a max_output of 256 MiB as bytes": (
        "x.toml",
        HEAD + 'shell = "true"\nmax_output = 268435456\n',
        (4, "max_output", f"'268435456' {TOO_MUCH_OUTPUT}"),
    ),
    "a regular expression nested 600 deep": (
        "x.toml",
        HEAD + f'[http]\nurl = "{LOCAL}"\nexpect_body = "' + "(" * 600 + ")" * 600 + '"\n',
        (5, "http.expect_body", BAD_REGEX),
    ),
    "a regular expression repeat too large": (
        "x.toml",
        HEAD + f'[http]\nurl = "{LOCAL}"\nexpect_body = "a{{99999999999}}"\n',
        (5, "http.expect_body", BAD_REGEX),
    ),
}


def validate_json(cli: Callable[..., CliResult], jobs_dir: Path) -> tuple[int, dict[str, Any]]:
    result = cli("validate", "--jobs-dir", jobs_dir, "--format", "json")
    assert "Traceback" not in result.out + result.err
    return result.code, json.loads(result.out)


def daemon_verdict(jobs_dir: Path) -> list[tuple[str, int | None, str, str]]:
    """The errors the daemon's loader reports: the Catalog it loads at start-up and reloads."""
    catalog = Catalog(jobs_dir)
    catalog.scan()
    return [(p.path, p.line, p.field, p.message) for p in catalog.problems if p.is_error]


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_value_is_one_clear_problem_with_its_line_and_field(
    case: str, jobs_dir: Path, cli: Callable[..., CliResult]
) -> None:
    name, text, (line, field, message) = HOSTILE[case]
    path = jobs_dir / name
    path.write_text(text, encoding="utf-8")
    (jobs_dir / "good.toml").write_text(HEAD + 'shell = "true"\n')
    code, report = validate_json(cli, jobs_dir)
    assert code == 1
    assert [(e["path"], e["line"], e["field"], e["message"]) for e in report["errors"]] == [
        (str(path), line, field, message)
    ]
    assert [job["id"] for job in report["jobs"]] == ["good"]  # the folder's report goes on
    assert daemon_verdict(jobs_dir) == [(str(path), line, field, message)]


def test_a_file_that_makes_the_loader_raise_is_an_internal_error_of_that_file_alone(
    jobs_dir: Path,
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real_job_of = loader.job_of

    def job_of(doc: Any, **kwargs: Any) -> Any:
        if doc.path.name == "bug.toml":
            raise RuntimeError("a bug in the loader")
        return real_job_of(doc, **kwargs)

    monkeypatch.setattr(loader, "job_of", job_of)
    (jobs_dir / "bug.toml").write_text(HEAD + 'shell = "true"\n')
    (jobs_dir / "good.toml").write_text(HEAD + 'shell = "true"\n')
    caplog.set_level(logging.DEBUG, logger="kron.loader")
    code, report = validate_json(cli, jobs_dir)
    assert code == 1
    assert [(e["path"], e["message"]) for e in report["errors"]] == [
        (
            str(jobs_dir / "bug.toml"),
            "internal error while loading this file (a bug in kron; the traceback is in the "
            "daemon's debug log: --log-level debug)",
        )
    ]
    assert [job["id"] for job in report["jobs"]] == ["good"]
    raised = [
        r for r in caplog.records if r.getMessage() == f"loading {jobs_dir / 'bug.toml'} raised"
    ]
    assert raised
    assert raised[0].exc_info is not None
    assert str(raised[0].exc_info[1]) == "a bug in the loader"


def test_settings_that_make_the_loader_raise_are_an_internal_error_of_kron_toml(
    jobs_dir: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    def load_settings(jobs_dir: Path) -> Any:
        raise RuntimeError("a bug in the settings")

    monkeypatch.setattr("kron.config.catalog.load_settings", load_settings)
    (jobs_dir / "kron.toml").write_text('timezone = "UTC"\n')
    (jobs_dir / "good.toml").write_text(HEAD + 'shell = "true"\n')
    code, report = validate_json(cli, jobs_dir)
    assert code == 1
    assert [(e["path"], e["message"][:26]) for e in report["errors"]] == [
        (str(jobs_dir / "kron.toml"), "internal error while loadi")
    ]


def test_a_file_with_hundreds_of_errors_reports_fifty_and_counts_the_rest(
    jobs_dir: Path, cli: Callable[..., CliResult]
) -> None:
    items = "".join(f"  - bad{i}\n" for i in range(150))
    path = jobs_dir / "codes.yaml"
    path.write_text(YHEAD + 'shell: "true"\nsuccess_codes:\n' + items)
    code, report = validate_json(cli, jobs_dir)
    assert code == 1
    errors = [(e["line"], e["field"], e["message"]) for e in report["errors"]]
    assert len(errors) == 51
    assert errors[0] == (5, "success_codes.0", 'expected an integer, got "bad0"')
    assert errors[49] == (54, "success_codes.49", 'expected an integer, got "bad49"')
    assert errors[50] == (55, "", "and 100 more problems, not shown")  # from line 55 on


def test_past_200_errors_the_count_is_a_lower_bound(
    jobs_dir: Path, cli: Callable[..., CliResult]
) -> None:
    keys = "".join(f"k{i:05} = 1\n" for i in range(5000))
    (jobs_dir / "keys.toml").write_text(HEAD + 'shell = "true"\n' + keys)
    code, report = validate_json(cli, jobs_dir)
    assert code == 1
    errors = [(e["line"], e["field"], e["message"]) for e in report["errors"]]
    assert errors[0][:2] == (4, "k00000")
    assert errors[0][2].startswith("unknown field 'k00000'; known fields: agent, catchup, ")
    assert errors[50] == (54, "", "and at least 150 more problems, not shown")


def test_a_file_with_a_thousand_bad_list_items_validates_in_well_under_a_second(
    jobs_dir: Path,
) -> None:
    # The 4 KB file of the report: a thousand bad items in success_codes took 16 s, each
    # problem's line found by parsing the whole file again.
    items = "".join(f"- {300 + i % 10}\n" for i in range(1000))
    path = jobs_dir / "codes.yaml"
    path.write_text(YHEAD + 'shell: "true"\nsuccess_codes:\n' + items)
    assert 4000 <= path.stat().st_size <= 8000
    load_dir(jobs_dir)  # imports and compiled schemas, paid once by any kron process
    started = time.perf_counter()
    result = load_dir(jobs_dir)
    elapsed = time.perf_counter() - started
    assert len(result.errors) == 51
    # Measured at 0.10-0.19 s on a 2-core machine under a load of 3.7 (it took 16 s); the rest
    # of the bound is for a slower or busier one.
    assert elapsed < 0.5, f"{elapsed:.2f} s"


def test_no_message_quotes_more_than_an_excerpt_of_a_huge_key_or_value(
    jobs_dir: Path, cli: Callable[..., CliResult]
) -> None:
    key = "k" * 20_000
    value = "v" * 20_000
    (jobs_dir / "x.toml").write_text(
        HEAD + f'shell = "true"\n{key} = 1\nconcurrency = "{value}"\ntimezone_ = "{value}"\n'
    )
    code, report = validate_json(cli, jobs_dir)
    assert code == 1
    assert len(report["errors"]) == 3
    for error in report["errors"]:
        assert len(error["message"]) <= MAX_MESSAGE_CHARS
        assert "k" * 100 not in error["message"] + error["field"]
        assert "v" * 100 not in error["message"]


# -- symlinks ----------------------------------------------------------------------------------


SECRET = "root:$6$saltsalt$0123456789abcdefSECRETHASH:19000:0:99999:7:::\n"


def test_a_link_to_a_file_outside_the_jobs_directory_is_refused_without_quoting_it(
    jobs_dir: Path, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    secret = tmp_path / "shadow"
    secret.write_text(SECRET + "daemon: x\nbin: y\n")
    secret.chmod(0o600)
    (jobs_dir / "x.yaml").symlink_to(secret)
    result = cli("validate", "--jobs-dir", jobs_dir)
    assert result.code == 1
    assert result.lines == [
        f"{jobs_dir / 'x.yaml'}: refused: a symlink to {secret}, outside the jobs directory "
        f"{os.path.realpath(jobs_dir)}; kron reads only job files inside it",
        "1 file: 0 valid, 1 with errors, 0 warnings",
    ]
    for word in ("SECRETHASH", "daemon", "bin"):
        assert word not in result.out + result.err


def test_a_link_to_a_job_file_inside_the_jobs_directory_loads(jobs_dir: Path) -> None:
    (jobs_dir / "real").mkdir()
    (jobs_dir / "real" / "job.toml").write_text(HEAD + 'shell = "true"\n')
    (jobs_dir / "alias.toml").symlink_to(jobs_dir / "real" / "job.toml")
    result = load_dir(jobs_dir)
    assert result.problems == []
    assert sorted(result.jobs) == ["alias", "real/job"]


def test_a_link_is_judged_by_the_folders_of_its_target(jobs_dir: Path) -> None:
    shared = jobs_dir / "shared"
    shared.mkdir()
    (shared / "job.toml").write_text(HEAD + 'shell = "true"\n')
    (jobs_dir / "alias.toml").symlink_to(shared / "job.toml")
    shared.chmod(0o775)
    try:
        messages = {(p.path, p.message) for p in load_dir(jobs_dir).errors}
    finally:
        shared.chmod(0o755)
    refusal = f"run chmod g-w {os.path.realpath(shared)}"
    assert (
        str(jobs_dir / "alias.toml"),
        f"refused: folder {os.path.realpath(shared)} is writable by group (mode 0775); {refusal}",
    ) in messages


def test_a_link_to_a_folder_outside_the_jobs_directory_is_not_read(
    jobs_dir: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "job.toml").write_text(HEAD + 'shell = "true"\n')
    (jobs_dir / "linked").symlink_to(outside)
    result = load_dir(jobs_dir)
    assert result.jobs == {}
    assert [(p.path, p.message) for p in result.errors] == [
        (
            str(jobs_dir / "linked"),
            f"refused: a symlink to {os.path.realpath(outside)}, outside the jobs directory; "
            "not read",
        )
    ]


def test_a_kron_toml_linked_from_outside_is_refused_without_quoting_it(
    jobs_dir: Path, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    secret = tmp_path / "shadow"
    secret.write_text(SECRET)
    (jobs_dir / "kron.toml").symlink_to(secret)
    result = cli("validate", "--jobs-dir", jobs_dir)
    assert result.code == 1
    assert result.lines[0] == (
        f"{jobs_dir / 'kron.toml'}: refused: a symlink to {secret}, outside the jobs directory"
    )
    assert "SECRETHASH" not in result.out + result.err


def test_a_trigger_cycle_through_1500_jobs_is_one_problem_not_a_recursion_error(
    jobs_dir: Path,
) -> None:
    count = 1500  # deeper than Python's stack: the cycle search was recursive
    for i in range(count):
        (jobs_dir / f"j{i:04}.toml").write_text(
            f'schedule = "@manual"\nshell = "true"\ntriggers = ["j{(i + 1) % count:04}"]\n'
        )
    result = load_dir(jobs_dir)
    assert len(result.jobs) == count
    assert [(p.path, p.line, p.field) for p in result.errors] == [
        (str(jobs_dir / "j0000.toml"), 3, "triggers")
    ]
    assert result.errors[0].message.startswith("trigger cycle: j0000 -> j0001 -> j0002 -> ")
    assert len(result.errors[0].message) == MAX_MESSAGE_CHARS


def test_a_reload_that_meets_a_loader_bug_still_applies_the_rest_of_its_batch(
    jobs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_job_of = loader.job_of

    def job_of(doc: Any, **kwargs: Any) -> Any:
        if doc.path.name == "bug.toml":
            raise RuntimeError("a bug in the loader")
        return real_job_of(doc, **kwargs)

    monkeypatch.setattr(loader, "job_of", job_of)

    async def body(daemon: Daemon, clock: FakeClock, events: Events) -> None:
        (jobs_dir / "bug.toml").write_text(HEAD + 'shell = "true"\n')
        (jobs_dir / "good.toml").write_text(HEAD + 'shell = "true"\n')
        await until_true(lambda: "good" in daemon.catalog.active)
        await until_true(lambda: str(jobs_dir / "bug.toml") in daemon.catalog.invalid_files)
        assert [
            p.message[:41] for p in daemon.catalog.invalid_files[str(jobs_dir / "bug.toml")]
        ] == ["internal error while loading this file (a"]
        assert "bug" not in daemon.catalog.active

    live(jobs_dir, body)
