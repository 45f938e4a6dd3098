"""File trust, as cron's: files others can change, or owned by untrusted users, are refused."""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kron.model import trust
from kron.model.errors import KronError
from kron.model.trust import Trust, refusals
from kron.service.daemon import Daemon

from .clock import FakeClock
from .conftest import CliResult
from .harness import DEADLINE_S, write_job

JOB = 'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\n'
NOBODY = 65534
STRANGER = 4242  # a uid with no name in this machine's passwd (checked below)
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")


@pytest.fixture(autouse=True)
def _trust_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KRON_TRUST", raising=False)


def test_the_stranger_uid_has_no_name() -> None:
    with pytest.raises(KeyError):
        pwd.getpwuid(STRANGER)


def validate(cli: Callable[..., CliResult], jobs_dir: Path) -> tuple[int, list[str]]:
    result = cli("validate", "-q", "--jobs-dir", jobs_dir)
    return result.code, result.lines


# -- modes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "reason", "fix"),
    [
        (0o664, "writable by group (mode 0664)", "chmod g-w"),
        (0o646, "writable by others (mode 0646)", "chmod o-w"),
        (0o666, "writable by group and others (mode 0666)", "chmod go-w"),
    ],
)
def test_a_job_file_others_can_write_is_refused_with_the_command_that_fixes_it(
    jobs_dir: Path, cli: Callable[..., CliResult], mode: int, reason: str, fix: str
) -> None:
    path = write_job(jobs_dir, "x.toml", JOB)
    write_job(jobs_dir, "ok.toml", JOB)
    path.chmod(mode)
    code, lines = validate(cli, jobs_dir)
    assert code == 1
    assert lines == [
        f"{path}: refused: {reason}; run {fix} {path}",
        "2 files: 1 valid, 1 with errors, 0 warnings",
    ]
    path.chmod(0o644)
    assert validate(cli, jobs_dir)[0] == 0


def test_a_read_only_or_private_job_file_is_accepted(
    jobs_dir: Path, cli: Callable[..., CliResult]
) -> None:
    for name, mode in (("a.toml", 0o600), ("b.toml", 0o400), ("c.toml", 0o755), ("d.toml", 0o444)):
        write_job(jobs_dir, name, JOB).chmod(mode)
    assert validate(cli, jobs_dir) == (0, ["4 files: 4 valid, 0 with errors, 0 warnings"])


def test_a_kron_toml_others_can_write_is_refused_and_the_daemon_does_not_start(
    jobs_dir: Path, cli: Callable[..., CliResult]
) -> None:
    settings = write_job(jobs_dir, "kron.toml", 'timezone = "UTC"\n')
    write_job(jobs_dir, "ok.toml", JOB)
    settings.chmod(0o666)
    code, lines = validate(cli, jobs_dir)
    assert code == 1
    assert lines[0] == (
        f"{settings}: refused: writable by group and others (mode 0666); run chmod go-w {settings}"
    )
    daemon = Daemon(jobs_dir, clock=FakeClock(datetime(2026, 3, 2, tzinfo=UTC)), boot_id="b")
    with pytest.raises(KronError) as raised:
        asyncio.run(daemon.start())
    assert str(raised.value) == f"invalid kron.toml:\n{lines[0]}"


def test_an_env_file_others_can_write_makes_its_job_invalid(
    jobs_dir: Path, cli: Callable[..., CliResult]
) -> None:
    env_file = write_job(jobs_dir, "secrets.env", "TOKEN=abc\n")
    path = write_job(jobs_dir, "j.toml", JOB + 'env_file = "secrets.env"\n')
    env_file.chmod(0o664)
    code, lines = validate(cli, jobs_dir)
    assert code == 1
    assert lines[0] == (
        f"{path}:4:1: env_file: refused: writable by group (mode 0664); run chmod g-w {env_file}"
    )


# -- folders ----------------------------------------------------------------------------------


def test_a_folder_others_can_write_refuses_the_files_below_it(
    jobs_dir: Path, cli: Callable[..., CliResult]
) -> None:
    inner = write_job(jobs_dir, "team/deep/x.toml", JOB)
    write_job(jobs_dir, "ok.toml", JOB)
    team = jobs_dir / "team"
    team.chmod(0o777)
    code, lines = validate(cli, jobs_dir)
    assert code == 1
    assert lines == [
        f"{inner}: refused: folder {team} is writable by group and others (mode 0777); "
        f"run chmod go-w {team}",
        "2 files: 1 valid, 1 with errors, 0 warnings",
    ]


def test_a_jobs_directory_others_can_write_refuses_every_file(
    jobs_dir: Path, cli: Callable[..., CliResult]
) -> None:
    a = write_job(jobs_dir, "a.toml", JOB)
    b = write_job(jobs_dir, "sub/b.toml", JOB)
    jobs_dir.chmod(0o775)
    why = f"refused: folder {jobs_dir} is writable by group (mode 0775); run chmod g-w {jobs_dir}"
    code, lines = validate(cli, jobs_dir)
    assert code == 1
    assert lines == [f"{a}: {why}", f"{b}: {why}", "2 files: 0 valid, 2 with errors, 0 warnings"]


def test_folders_above_the_jobs_directory_are_not_checked(tmp_path: Path) -> None:
    # /tmp is world-writable (with the sticky bit); cron does not judge the path to its spool.
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    jobs_dir = shared / "jobs.d"
    path = write_job(jobs_dir, "x.toml", JOB)
    assert refusals(path, root=jobs_dir) == []


def test_a_symlinked_job_file_is_judged_by_its_target(jobs_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.toml"
    target.write_text(JOB)
    link = jobs_dir / "linked.toml"
    link.symlink_to(target)
    assert refusals(link, root=jobs_dir) == []
    target.chmod(0o666)
    assert refusals(link, root=jobs_dir) == [
        f"refused: writable by group and others (mode 0666); run chmod go-w {link}"
    ]


# -- owners -----------------------------------------------------------------------------------


@as_root
def test_a_root_daemon_refuses_a_file_owned_by_another_user(
    jobs_dir: Path, cli: Callable[..., CliResult]
) -> None:
    path = write_job(jobs_dir, "x.toml", JOB)
    os.chown(path, STRANGER, STRANGER)
    code, lines = validate(cli, jobs_dir)
    assert code == 1
    assert lines[0] == (
        f"{path}: refused: owned by uid {STRANGER}; kron runs as root and reads only root's "
        f"files; run chown root {path}"
    )


@as_root
def test_a_root_daemon_refuses_a_file_owned_by_nobody_even_when_read_only(
    jobs_dir: Path,
) -> None:
    path = write_job(jobs_dir, "x.toml", JOB)
    os.chown(path, NOBODY, NOBODY)
    path.chmod(0o444)
    assert refusals(path, root=jobs_dir) == [
        f"refused: owned by nobody (uid {NOBODY}); kron runs as root and reads only root's "
        f"files; run chown root {path}"
    ]


@as_root
def test_a_wrong_owner_and_a_loose_mode_are_both_reported(jobs_dir: Path) -> None:
    path = write_job(jobs_dir, "x.toml", JOB)
    os.chown(path, STRANGER, STRANGER)
    path.chmod(0o664)
    assert refusals(path, root=jobs_dir) == [
        f"refused: owned by uid {STRANGER}; kron runs as root and reads only root's files; "
        f"run chown root {path}",
        f"refused: writable by group (mode 0664); run chmod g-w {path}",
    ]


@as_root
def test_a_non_root_daemon_trusts_its_own_files_and_roots(jobs_dir: Path) -> None:
    as_nobody = Trust(uid=NOBODY)
    own = write_job(jobs_dir, "own.toml", JOB)
    os.chown(own, NOBODY, NOBODY)
    roots = write_job(jobs_dir, "roots.toml", JOB)
    strangers = write_job(jobs_dir, "strangers.toml", JOB)
    os.chown(strangers, STRANGER, STRANGER)
    assert refusals(own, root=jobs_dir, trust=as_nobody) == []
    assert refusals(roots, root=jobs_dir, trust=as_nobody) == []
    assert refusals(strangers, root=jobs_dir, trust=as_nobody) == [
        f"refused: owned by uid {STRANGER}; kron runs as nobody (uid {NOBODY}) and reads only "
        f"its own files and root's; run chown nobody {strangers}"
    ]


# The interpreter lives under /root here, which another user cannot read: start as root, load
# everything `kron validate` needs, then drop to nobody, as systemd's User= does before exec.
AS_NOBODY = f"""
import os, sys
import kron.config.catalog, kron.cli.main, kron.config.validate
from kron.config.schema import _fast_validator
_fast_validator("job")
os.setgroups([])
os.setgid({NOBODY})
os.setuid({NOBODY})
sys.exit(kron.cli.main.main(sys.argv[1:]))
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder another user can reach (pytest's tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="kron-trust-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


@as_root
def test_kron_validate_run_by_another_user_applies_that_users_trust(shared_dir: Path) -> None:
    jobs_dir = shared_dir / "jobs.d"
    own = write_job(jobs_dir, "own.toml", JOB)
    os.chown(own, NOBODY, NOBODY)
    write_job(jobs_dir, "roots.toml", JOB)
    strangers = write_job(jobs_dir, "strangers.toml", JOB)
    os.chown(strangers, STRANGER, STRANGER)
    result = subprocess.run(
        [sys.executable, "-c", AS_NOBODY, "validate", "-q", "--jobs-dir", str(jobs_dir)],
        capture_output=True,
        text=True,
        cwd=shared_dir,
        timeout=DEADLINE_S,
        check=False,
    )
    assert (result.returncode, result.stdout.splitlines(), result.stderr) == (
        1,
        [
            f"{strangers}: refused: owned by uid {STRANGER}; kron runs as nobody (uid {NOBODY}) "
            f"and reads only its own files and root's; run chown nobody {strangers}",
            "3 files: 2 valid, 1 with errors, 0 warnings",
        ],
        "",
    )


# -- the daemon -------------------------------------------------------------------------------


def run_daemon(jobs_dir: Path, body: Callable[[Daemon], None]) -> None:
    async def main() -> None:
        daemon = Daemon(jobs_dir, clock=FakeClock(datetime(2026, 3, 2, tzinfo=UTC)), boot_id="b")
        await daemon.start()
        serving = asyncio.ensure_future(daemon.serve(watch=False))
        try:
            body(daemon)
        finally:
            daemon.request_stop()
            await asyncio.wait_for(serving, DEADLINE_S)

    asyncio.run(asyncio.wait_for(main(), 60))


def test_the_daemon_skips_a_refused_file_and_loads_the_others(jobs_dir: Path) -> None:
    bad = write_job(jobs_dir, "bad.toml", JOB)
    write_job(jobs_dir, "good.toml", JOB)
    bad.chmod(0o666)

    def body(daemon: Daemon) -> None:
        assert list(daemon.catalog.active) == ["good"]
        assert [str(p) for p in daemon.catalog.invalid_files[str(bad)]] == [
            f"{bad}: refused: writable by group and others (mode 0666); run chmod go-w {bad}"
        ]

    run_daemon(jobs_dir, body)


def test_a_file_that_turns_writable_keeps_its_last_good_version_until_fixed(
    jobs_dir: Path,
) -> None:
    path = write_job(jobs_dir, "j.toml", JOB)

    def body(daemon: Daemon) -> None:
        loaded = daemon.catalog.active["j"]
        path.write_text(JOB.replace("@daily", "@hourly"))
        path.chmod(0o664)
        daemon.reload(None)  # as on SIGHUP
        assert daemon.catalog.active["j"] is loaded
        assert list(daemon.catalog.invalid_files) == [str(path)]
        path.chmod(0o644)
        daemon.reload(None)
        assert daemon.catalog.active["j"].schedule.expr == "@hourly"
        assert daemon.catalog.invalid_files == {}

    run_daemon(jobs_dir, body)


# -- the escape hatch -------------------------------------------------------------------------


def test_kron_trust_off_loads_such_files_and_warns_once(
    jobs_dir: Path,
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(trust, "_warned_off", False)
    monkeypatch.setenv("KRON_TRUST", "off")
    write_job(jobs_dir, "a.toml", JOB).chmod(0o666)
    write_job(jobs_dir, "b.toml", JOB).chmod(0o666)
    with caplog.at_level(logging.WARNING, logger="kron.trust"):
        assert validate(cli, jobs_dir) == (0, ["2 files: 2 valid, 0 with errors, 0 warnings"])
        assert validate(cli, jobs_dir)[0] == 0
    assert [r.getMessage() for r in caplog.records] == [
        "KRON_TRUST=off: file owner and mode checks are disabled; "
        "anyone who can write a job file can run commands as this user"
    ]


@pytest.mark.parametrize("value", ["on", "", "yes", "offf"])
def test_any_other_kron_trust_value_keeps_the_checks_on(
    jobs_dir: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("KRON_TRUST", value)
    path = write_job(jobs_dir, "a.toml", JOB)
    path.chmod(0o666)
    assert len(refusals(path, root=jobs_dir)) == 1


# -- not a file -------------------------------------------------------------------------------


def test_a_fifo_named_like_a_job_file_is_refused_without_hanging(
    jobs_dir: Path, cli: Callable[..., CliResult]
) -> None:
    fifo = jobs_dir / "pipe.toml"
    os.mkfifo(fifo, 0o644)
    code, lines = validate(cli, jobs_dir)
    assert (code, lines[0]) == (1, f"{fifo}: not a regular file; a job file is a plain text file")


@as_root
def test_a_job_file_that_cannot_be_opened_is_still_refused_by_its_owner(
    jobs_dir: Path, cli: Callable[..., CliResult]
) -> None:
    # A socket named like a job file: stat works, open fails (ENXIO).
    import socket

    path = jobs_dir / "x.toml"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        os.chown(path, STRANGER, STRANGER)
        code, lines = validate(cli, jobs_dir)
    assert (code, lines[0]) == (
        1,
        f"{path}: refused: owned by uid {STRANGER}; kron runs as root and reads only root's "
        f"files; run chown root {path}",
    )


def test_a_job_file_is_judged_by_the_stat_of_the_open_file(jobs_dir: Path) -> None:
    path = write_job(jobs_dir, "x.toml", JOB)
    path.chmod(0o664)
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    me = Trust.current()
    assert trust.stat_refusals(st, path, trust=me) == [
        f"refused: writable by group (mode 0664); run chmod g-w {path}"
    ]
    assert trust.stat_refusals(st, path, trust=Trust(uid=me.uid, enabled=False)) == []


def test_the_jobs_directory_is_checked_when_given_as_a_relative_path(
    jobs_dir: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_job(jobs_dir, "x.toml", JOB)
    jobs_dir.chmod(0o775)
    monkeypatch.chdir(jobs_dir)
    result = cli("validate", "-q", "--jobs-dir", ".")
    assert (result.code, result.lines) == (
        1,
        [
            "x.toml: refused: folder . is writable by group (mode 0775); run chmod g-w .",
            "1 file: 0 valid, 1 with errors, 0 warnings",
        ],
    )
