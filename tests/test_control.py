"""The control socket against a real daemon process: every command, and what they leave behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kron.service.control import default_socket_path

from .conftest import CliResult, run_cli
from .harness import DEADLINE_S, read_records, write_job


def _wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Daemon:
    """A real `kron daemon` process on a jobs directory, with its control socket in a short path."""

    def __init__(self, jobs_dir: Path, runtime: Path) -> None:
        self.jobs_dir = jobs_dir
        self.runtime = runtime
        self.socket = runtime / default_socket_path(jobs_dir, jobs_dir).name
        self.log = jobs_dir.parent / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as handle:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kron", "daemon", "--jobs-dir", str(self.jobs_dir)],
                stdout=subprocess.DEVNULL,
                stderr=handle,
                env={**os.environ, "XDG_RUNTIME_DIR": str(self.runtime)},
            )
        _wait_for(lambda: self.answers() or self.proc.poll() is not None, "the control socket")  # type: ignore[union-attr]
        assert self.proc.poll() is None, self.log.read_text()

    def answers(self) -> bool:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(self.socket))
            except OSError:
                return False
            return True

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(DEADLINE_S)

    def cli(self, *argv: str) -> CliResult:
        return run_cli(*argv, "--jobs-dir", str(self.jobs_dir))


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes: pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="kron-") as folder:
        monkeypatch.setenv("XDG_RUNTIME_DIR", folder)
        yield Path(folder)


@pytest.fixture
def daemon(jobs_dir: Path, runtime: Path) -> Iterator[Daemon]:
    write_job(
        jobs_dir, "quick.toml", 'schedule = "@manual"\nshell = "echo hello"\n[tags]\nteam = "ops"\n'
    )
    write_job(
        jobs_dir,
        "hourly.toml",
        'schedule = "0 * * * *"\ntimezone = "UTC"\ncommand = ["true"]\n[tags]\nteam = "ops"\n',
    )
    write_job(
        jobs_dir,
        "web.toml",
        'schedule = "0 * * * *"\ntimezone = "UTC"\ncommand = ["true"]\n[tags]\nteam = "web"\n',
    )
    d = Daemon(jobs_dir, runtime)
    d.start()
    yield d
    if d.proc and d.proc.poll() is None:
        assert d.stop() == 0


def test_status_reports_the_daemon_its_jobs_and_invalid_files(daemon: Daemon) -> None:
    (daemon.jobs_dir / "broken.toml").write_text('schedule = "nope"\ncommand = ["true"]\n')
    _wait_for(
        lambda: json.loads(daemon.cli("status", "--json").out)["invalid_files"] != [], "the reload"
    )
    body = json.loads(daemon.cli("status", "--json").out)
    assert body["jobs_loaded"] == 3
    assert body["jobs_dir"] == str(daemon.jobs_dir.resolve())
    assert [f["path"] for f in body["invalid_files"]] == [str(daemon.jobs_dir / "broken.toml")]
    text = daemon.cli("status")
    assert text.code == 0
    assert "jobs:    3 loaded from" in text.out
    assert "invalid files: 1" in text.out
    since = body["started_at"].partition(".")[0].removesuffix("Z")
    assert f"up since {since}Z\n" in text.out  # whole seconds for people, exact in --json


def test_list_shows_every_job_and_filters_by_tag(daemon: Daemon) -> None:
    every = json.loads(daemon.cli("list", "--json").out)
    assert [j["id"] for j in every] == ["hourly", "quick", "web"]
    ops = daemon.cli("list", "--tag", "team=ops")
    assert ops.code == 0
    assert [line.split()[0] for line in ops.lines] == ["JOB", "hourly", "quick"]


def test_run_fires_through_the_daemon_and_prints_the_record(daemon: Daemon) -> None:
    result = daemon.cli("run", "quick", "--wait", "--json")
    assert result.code == 0, result.err
    record = json.loads(result.out)
    assert (record["job"], record["trigger"], record["outcome"], record["stdout"]) == (
        "quick",
        "manual",
        "succeeded",
        "hello\n",
    )
    assert record["pid"] is not None
    lines = read_records(daemon.jobs_dir / "quick.runs.jsonl")
    assert [r["outcome"] for r in lines] == ["started", "succeeded"]
    assert json.loads(daemon.cli("list", "--json").out)[1]["last_outcome"] == "succeeded"


def test_run_of_an_unknown_job_names_a_close_one(daemon: Daemon) -> None:
    result = daemon.cli("run", "quik", "--wait")
    assert result.code == 2  # an unknown job id is a usage error, as for every command
    assert result.err == "kron run: no job 'quik'; did you mean 'quick'?\n"


def test_pause_survives_a_restart_and_resume_undoes_it(daemon: Daemon) -> None:
    committed = (daemon.jobs_dir / "hourly.toml").read_bytes()
    assert daemon.cli("pause", "hourly").out == "hourly: paused\n"
    assert daemon.stop() == 0
    daemon.start()
    jobs = {j["id"]: j for j in json.loads(daemon.cli("list", "--json").out)}
    assert (jobs["hourly"]["paused"], jobs["hourly"]["next_fire"]) == (True, None)
    assert json.loads(daemon.cli("status", "--json").out)["paused"] == ["hourly"]
    assert daemon.cli("resume", "hourly").code == 0
    jobs = {j["id"]: j for j in json.loads(daemon.cli("list", "--json").out)}
    assert jobs["hourly"]["paused"] is False
    assert jobs["hourly"]["next_fire"] is not None
    assert (daemon.jobs_dir / "hourly.toml").read_bytes() == committed  # the file is never edited


def test_pause_by_tag_pauses_every_matching_job(daemon: Daemon) -> None:
    result = daemon.cli("pause", "--tag", "team=ops")
    assert result.out == "paused 2 jobs: hourly, quick\n"
    paused = {j["id"] for j in json.loads(daemon.cli("list", "--json").out) if j["paused"]}
    assert paused == {"hourly", "quick"}


def test_cancel_stops_a_running_tree_and_records_cancelled(daemon: Daemon, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    write_job(
        daemon.jobs_dir,
        "long.toml",
        f'schedule = "@manual"\nshell = "echo $$ > {pid_file}; sleep 60 & sleep 60; wait"\nkill_grace = "2s"\n',
    )
    _wait_for(
        lambda: any(j["id"] == "long" for j in json.loads(daemon.cli("list", "--json").out)),
        "the new job",
    )
    started = daemon.cli("run", "long", "--json")
    assert started.code == 0, started.err
    run_id = json.loads(started.out)["run_id"]
    _wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "", "the job to start")
    pgid = int(pid_file.read_text())
    assert daemon.cli("cancel", run_id).code == 0
    _wait_for(
        lambda: read_records(daemon.jobs_dir / "long.runs.jsonl")[-1]["outcome"] == "cancelled",
        "the record",
    )
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
    assert daemon.cli("cancel", run_id).err == f"kron: no running run {run_id!r}\n"


def test_the_control_socket_is_only_for_its_owner(daemon: Daemon) -> None:
    mode = stat.S_IMODE(daemon.socket.stat().st_mode)
    assert mode == 0o600
    assert stat.S_ISSOCK(daemon.socket.stat().st_mode)


def test_commands_that_need_the_daemon_exit_3_when_none_runs(jobs_dir: Path, runtime: Path) -> None:
    write_job(jobs_dir, "quick.toml", 'schedule = "@manual"\nshell = "echo hello"\n')
    for argv in (["status"], ["list"], ["pause", "quick"], ["resume", "quick"], ["cancel", "x"]):
        result = run_cli(*argv, "--jobs-dir", str(jobs_dir))
        assert result.code == 3, argv
        socket_path = runtime / default_socket_path(jobs_dir, jobs_dir).name
        assert result.err.startswith(f"kron: no kron daemon answers on {socket_path}")
        assert "Traceback" not in result.err


def test_run_without_a_daemon_runs_in_process_with_a_note(jobs_dir: Path, runtime: Path) -> None:
    write_job(jobs_dir, "quick.toml", 'schedule = "@manual"\nshell = "echo hello"\n')
    result = run_cli("run", "quick", "--jobs-dir", str(jobs_dir), "--json")
    assert result.code == 0
    assert json.loads(result.out)["stdout"] == "hello\n"
    assert "running in this process instead" in result.err


def test_a_daemon_for_another_directory_is_not_used(
    jobs_dir: Path, runtime: Path, daemon: Daemon, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    # Pointed at the first daemon's socket on purpose: by default each directory has its own.
    write_job(other, "kron.toml", f'control_socket = "{daemon.socket}"\n')
    result = run_cli("status", "--jobs-dir", str(other))
    assert result.code == 3
    assert f"serves {daemon.jobs_dir.resolve()}, not {other.resolve()}" in result.err


def test_two_daemons_on_two_directories_run_side_by_side(
    daemon: Daemon, runtime: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other" / "jobs.d"
    other.mkdir(parents=True)
    write_job(other, "solo.toml", 'schedule = "@manual"\nshell = "echo solo"\n')
    second = Daemon(other, runtime)
    second.start()
    try:
        assert second.socket != daemon.socket
        mine = json.loads(daemon.cli("list", "--json").out)
        theirs = json.loads(second.cli("list", "--json").out)
        assert ([j["id"] for j in mine], [j["id"] for j in theirs]) == (
            ["hourly", "quick", "web"],
            ["solo"],
        )
    finally:
        assert second.stop() == 0


def test_a_stale_socket_from_a_crash_is_replaced(daemon: Daemon) -> None:
    assert daemon.proc is not None
    daemon.proc.kill()
    daemon.proc.wait(DEADLINE_S)
    assert daemon.socket.exists()
    daemon.start()
    assert daemon.cli("status").code == 0


def test_the_last_outcome_survives_a_restart(daemon: Daemon) -> None:
    assert daemon.cli("run", "quick", "--wait").code == 0
    assert daemon.stop() == 0
    daemon.start()
    quick = {j["id"]: j for j in json.loads(daemon.cli("list", "--json").out)}["quick"]
    assert quick["last_outcome"] == "succeeded"
    assert quick["last_success_at"] == quick["last_ended_at"]


def test_a_head_request_gets_headers_and_no_body(daemon: Daemon) -> None:
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(DEADLINE_S)
        conn.connect(str(daemon.socket))
        conn.sendall(b"HEAD /v1/status HTTP/1.1\r\nhost: kron\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert body == b""
    assert b"Traceback" not in daemon.log.read_bytes()


def test_status_says_whether_an_invalid_file_still_runs_its_last_good_version(
    daemon: Daemon,
) -> None:
    (daemon.jobs_dir / "web.toml").write_text('schedule = "nope"\ncommand = ["true"]\n')
    (daemon.jobs_dir / "new.toml").write_text('schedule = "nope"\ncommand = ["true"]\n')
    _wait_for(
        lambda: len(json.loads(daemon.cli("status", "--json").out)["invalid_files"]) == 2,
        "the reload",
    )
    body = json.loads(daemon.cli("status", "--json").out)
    assert [(Path(f["path"]).name, f["kept"]) for f in body["invalid_files"]] == [
        ("new.toml", False),
        ("web.toml", True),
    ]
    text = daemon.cli("status").out
    assert "    (never loaded)\n" in text
    assert "    (its last good version still runs)\n" in text


def test_list_says_a_manual_job_is_fired_by_hand_not_scheduled(daemon: Daemon) -> None:
    jobs = {j["id"]: j for j in json.loads(daemon.cli("list", "--json").out)}
    assert (jobs["quick"]["firing"], jobs["hourly"]["firing"]) == ("manual", "scheduled")
    rows = {line.split()[0]: line.split()[-1] for line in daemon.cli("list").lines[1:]}
    assert rows["quick"] == "manual"


def _as_nobody(argv: list[str]) -> tuple[int, str, str]:
    """Run the CLI in a child that has dropped to `nobody`, as an unprivileged user would."""
    import io
    import pwd

    import kron.cli.ops
    import kron.cli.records
    import kron.service.inprocess

    nobody = pwd.getpwnam("nobody")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            out, err = io.StringIO(), io.StringIO()
            code = kron.cli.main.main(argv, out=out, err=err)
            os.write(write_fd, json.dumps([code, out.getvalue(), err.getvalue()]).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as source:
        data = source.read()
    os.waitpid(pid, 0)
    code, out, err = json.loads(data)
    return code, out, err


@pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")
def test_run_as_a_user_who_may_not_use_the_socket_is_refused_not_run_in_process(
    runtime: Path,
) -> None:
    shared = Path(tempfile.mkdtemp(prefix="kron-perm-"))  # readable by others, unlike tmp_path
    try:
        shared.chmod(0o755)
        jobs_dir = shared / "jobs.d"
        jobs_dir.mkdir()
        write_job(jobs_dir, "quick.toml", 'schedule = "@manual"\nshell = "echo hello"\n')
        runtime.chmod(0o755)
        daemon = Daemon(jobs_dir, runtime)
        daemon.start()
        try:
            code, out, err = _as_nobody(["run", "quick", "--jobs-dir", str(jobs_dir)])
            assert (code, out) == (3, "")
            assert err.startswith(f"kron: not allowed to use the control socket {daemon.socket}")
            assert not (jobs_dir / "quick.runs.jsonl").exists()  # nothing ran beside the daemon
            assert daemon.cli("run", "quick", "--wait").code == 0  # records only root may read
            code, out, err = _as_nobody(["history", "--jobs-dir", str(jobs_dir)])
            records_file = jobs_dir / "quick.runs.jsonl"
            assert (code, out, err) == (
                1,
                "",
                f"kron: cannot read or write {records_file}: Permission denied\n",
            )
        finally:
            assert daemon.stop() == 0
    finally:
        import shutil

        shutil.rmtree(shared)
