"""The docker action against a real engine: run, logs, exit code, stop escalation, removal."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kron.actions.base import ActionResult
from kron.actions.dispatch import execute
from kron.config.catalog import load_dir
from kron.engine.scheduler import Scheduler
from kron.model.job import Job
from kron.model.run import Outcome, Trigger

from .clock import FakeClock
from .docker_engine import IMAGE, kron_containers, require_engine
from .harness import DEADLINE_S, Events, make_job, until_true, write_job

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    client = require_engine()
    yield client
    client.close()


@pytest.fixture
def clean(engine: Any) -> Iterator[Any]:
    """The engine, checked after the test: no container kron created is left behind."""
    assert kron_containers(engine) == []
    yield engine
    assert kron_containers(engine) == []


def docker_job(jobs_dir: Path, body: str, *, extra: str = "", name: str = "box.toml") -> Job:
    return make_job(
        jobs_dir, name, f'schedule = "@manual"\n{extra}\n[docker]\nimage = "{IMAGE}"\n{body}\n'
    )


def call(job: Job, *, run_id: str = "0123456789abcdef0123") -> ActionResult:
    async def main() -> ActionResult:
        return await execute(
            job, run_env={"KRON_RUN_ID": run_id, "KRON_JOB": job.id}, stop=asyncio.Event()
        )

    return asyncio.run(asyncio.wait_for(main(), DEADLINE_S))


def test_a_container_runs_and_its_streams_and_exit_code_are_recorded_apart(
    jobs_dir: Path, clean: Any
) -> None:
    result = call(docker_job(jobs_dir, 'command = "echo to stdout; echo to stderr >&2; exit 3"'))
    assert (result.exit_code, result.stdout, result.stderr, result.error) == (
        3,
        "to stdout\n",
        "to stderr\n",
        None,
    )
    assert (result.timed_out, result.stopped, result.truncated) == (False, False, False)
    assert len(result.extra["container_id"]) == 12


def test_an_argv_command_runs_without_a_shell(jobs_dir: Path, clean: Any) -> None:
    result = call(docker_job(jobs_dir, 'command = ["echo", "$HOME", "a  b"]'))
    assert (result.exit_code, result.stdout) == (0, "$HOME a  b\n")


def test_an_entrypoint_replaces_the_images_own(jobs_dir: Path, clean: Any) -> None:
    result = call(
        docker_job(
            jobs_dir, 'entrypoint = ["/bin/echo", "from entrypoint"]\ncommand = ["and", "args"]'
        )
    )
    assert result.stdout == "from entrypoint and args\n"


def test_env_workdir_and_user_apply_inside_the_container(
    jobs_dir: Path, clean: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = docker_job(
        jobs_dir,
        "command = 'echo \"$GREETING $TARGET $KRON_JOB $PATH_HOST\" $(pwd) $(id -u):$(id -g)'\n"
        'workdir = "/tmp"\nuser = "1234:2345"\nenv = { TARGET = "world" }',
        extra='env = { GREETING = "hello", TARGET = "job" }',
    )
    monkeypatch.setenv("PATH_HOST", "leaked")  # the daemon's environment is not the container's
    result = call(job)
    assert result.stdout == "hello world box  /tmp 1234:2345\n"


def test_a_bind_mount_relative_to_the_job_file_is_read_and_written(
    jobs_dir: Path, clean: Any
) -> None:
    (jobs_dir / "data").mkdir()
    (jobs_dir / "data" / "in.txt").write_text("input\n")
    job = docker_job(
        jobs_dir,
        'command = "cat /data/in.txt; echo output > /data/out.txt"\nvolumes = ["./data:/data"]',
    )
    result = call(job)
    assert (result.exit_code, result.stdout) == (0, "input\n")
    assert (jobs_dir / "data" / "out.txt").read_text() == "output\n"


def test_a_read_only_mount_refuses_writes(jobs_dir: Path, clean: Any) -> None:
    (jobs_dir / "data").mkdir()
    job = docker_job(
        jobs_dir, f'command = "touch /data/x"\nvolumes = ["{jobs_dir / "data"}:/data:ro"]'
    )
    result = call(job)
    assert (result.exit_code, result.stderr) == (1, "touch: /data/x: Read-only file system\n")


def test_the_network_mode_is_applied(jobs_dir: Path, clean: Any) -> None:
    host_net = call(docker_job(jobs_dir, 'command = "ls /sys/class/net"\nnetwork = "host"'))
    no_net = call(docker_job(jobs_dir, 'command = "ls /sys/class/net"\nnetwork = "none"'))
    assert host_net.stdout.split() == sorted(os.listdir("/sys/class/net"))
    assert no_net.stdout.split() == ["lo"]


def test_output_beyond_max_output_keeps_the_head_and_the_tail(jobs_dir: Path, clean: Any) -> None:
    job = docker_job(
        jobs_dir,
        "command = \"printf '<'; head -c 99998 /dev/zero | tr '\\\\0' x; printf '>'; echo small >&2\"",
        extra='max_output = "100B"',
    )
    result = call(job)
    assert result.truncated is True
    assert result.stdout == "<" + "x" * 49 + "\n[... 99900 bytes dropped ...]\n" + "x" * 49 + ">"
    assert result.stderr == "small\n"


def test_a_timeout_stops_then_kills_a_container_that_ignores_sigterm(
    jobs_dir: Path, clean: Any
) -> None:
    # A shell running as PID 1 has no default action for SIGTERM: only SIGKILL ends it.
    job = docker_job(
        jobs_dir, 'command = "echo started; sleep 60"', extra='timeout = "3s"\nkill_grace = "500ms"'
    )
    result = call(job)
    assert (result.timed_out, result.stopped, result.exit_code, result.signal) == (
        True,
        False,
        None,
        9,
    )
    assert result.stdout == "started\n"


def test_a_stop_lets_a_container_that_handles_sigterm_exit_within_the_grace(
    jobs_dir: Path, clean: Any
) -> None:
    (jobs_dir / "data").mkdir()
    job = docker_job(
        jobs_dir,
        "command = \"trap 'echo cleaning up; exit 143' TERM; touch /data/trapped; sleep 60 & wait\"\n"
        'volumes = ["./data:/data"]',
        extra='kill_grace = "20s"',
    )

    async def main() -> ActionResult:
        stop = asyncio.Event()
        task = asyncio.ensure_future(execute(job, run_env={}, stop=stop))
        await until_true((jobs_dir / "data" / "trapped").exists)
        stop.set()
        return await task

    result = asyncio.run(asyncio.wait_for(main(), DEADLINE_S))
    assert (result.stopped, result.timed_out, result.exit_code, result.signal) == (
        True,
        False,
        None,
        15,
    )
    assert result.stdout == "cleaning up\n"


def test_cancelling_a_run_stops_its_container_and_records_cancelled(
    jobs_dir: Path, clean: Any
) -> None:
    (jobs_dir / "data").mkdir()
    job = docker_job(
        jobs_dir,
        'command = "touch /data/started; sleep 60"\nvolumes = ["./data:/data"]',
        extra='kill_grace = "200ms"',
    )

    async def main() -> None:
        scheduler = Scheduler(clock=FakeClock(T0))
        events = Events()
        scheduler.subscribe(events)
        scheduler.add(job, cursor=T0, paused=True, now=T0)
        try:
            run = scheduler.fire(job.id, slot=T0, trigger=Trigger.MANUAL)
            assert run is not None
            await until_true((jobs_dir / "data" / "started").exists)
            scheduler.cancel(run.run_id)
            await events.until(lambda e: len(e.ended()) == 1)
        finally:
            await scheduler.shutdown(timedelta(seconds=5))
        ended = events.ended()[0]
        assert (ended.outcome, ended.signal, ended.exit_code) == (Outcome.CANCELLED, 9, None)
        assert kron_containers(clean) == []

    asyncio.run(asyncio.wait_for(main(), DEADLINE_S))


def test_the_container_is_named_and_labelled_after_the_job_and_run(
    jobs_dir: Path, clean: Any
) -> None:
    job = docker_job(
        jobs_dir,
        'command = "sleep 60"',
        name="team/nightly.toml",
        extra='timeout = "5s"\nkill_grace = "100ms"',
    )
    seen: list[list[str]] = []

    def running() -> list[Any]:
        return clean.containers.list(filters={"label": "kron.job", "status": "running"})  # type: ignore[no-any-return]

    async def main() -> ActionResult:
        stop = asyncio.Event()
        task = asyncio.ensure_future(execute(job, run_env={"KRON_RUN_ID": "01a2b3"}, stop=stop))
        try:
            # Read name and labels from one listing of the running container: a separate
            # inspect could race the engine on a loaded machine.
            await until_true(lambda: bool(running()))
            [container] = running()
            seen.append([container.name])
            seen.append([container.labels["kron.job"], container.labels["kron.run_id"]])
        finally:
            stop.set()  # whatever happened above, the run ends and removes its container
        return await task

    result = asyncio.run(asyncio.wait_for(main(), DEADLINE_S))
    assert seen == [["kron-team-nightly-01a2b3"], ["team/nightly", "01a2b3"]]
    assert result.stopped is True


def test_a_command_that_cannot_start_is_a_failed_run_and_the_container_is_removed(
    jobs_dir: Path, clean: Any
) -> None:
    result = call(docker_job(jobs_dir, 'command = ["/nonexistent"]'))
    assert result.exit_code is None
    assert result.error is not None
    assert result.error.startswith("cannot start container: ")
    assert 'exec: "/nonexistent": stat /nonexistent: no such file or directory' in result.error


def test_a_missing_image_with_pull_never_is_a_clear_failed_record(
    jobs_dir: Path, clean: Any
) -> None:
    job = make_job(
        jobs_dir,
        "x.toml",
        'schedule = "@manual"\n[docker]\nimage = "localhost/x:1"\npull = "never"\n',
    )
    result = call(job)
    assert (result.exit_code, result.error) == (
        None,
        "image localhost/x:1 not present and pull = never",
    )


def test_a_missing_image_that_cannot_be_pulled_says_why(jobs_dir: Path, clean: Any) -> None:
    # A registry on a port nobody listens on: the pull fails at once, without the network.
    job = make_job(
        jobs_dir, "x.toml", 'schedule = "@manual"\n[docker]\nimage = "127.0.0.1:9/nothing:1"\n'
    )
    result = call(job)
    assert result.error is not None
    assert result.error.startswith("cannot pull image 127.0.0.1:9/nothing:1: ")
    assert "connection refused" in result.error


def test_an_unreachable_engine_is_a_clear_failed_record(
    jobs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    result = call(docker_job(jobs_dir, 'command = "true"'))
    assert (result.exit_code, result.error) == (
        None,
        "docker engine not reachable at unix:///nonexistent/docker.sock: no such file or directory",
    )


def test_a_refusing_tcp_engine_is_a_clear_failed_record(
    jobs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{port}")
    result = call(docker_job(jobs_dir, 'command = "true"'))
    assert (
        result.error == f"docker engine not reachable at tcp://127.0.0.1:{port}: connection refused"
    )


def test_the_record_of_a_docker_run_through_the_scheduler(jobs_dir: Path, clean: Any) -> None:
    job = docker_job(jobs_dir, 'command = "echo done"')

    async def main() -> None:
        scheduler = Scheduler(clock=FakeClock(T0))
        events = Events()
        scheduler.subscribe(events)
        scheduler.add(job, cursor=T0, paused=True, now=T0)
        try:
            scheduler.fire(job.id, slot=T0, trigger=Trigger.MANUAL)
            await events.until(lambda e: len(e.ended()) == 1)
        finally:
            await scheduler.shutdown(timedelta(seconds=5))
        ended = events.ended()[0]
        assert (ended.outcome, ended.exit_code, ended.stdout, ended.pid) == (
            Outcome.SUCCEEDED,
            0,
            "done\n",
            None,
        )
        assert list(ended.extra) == ["container_id"]

    asyncio.run(asyncio.wait_for(main(), DEADLINE_S))


def test_a_docker_job_without_an_image_is_a_validation_error_on_its_line(
    jobs_dir: Path, write: Any
) -> None:
    write("box.toml", 'schedule = "@manual"\n\n[docker]\ncommand = "true"\n')
    assert [str(p) for p in load_dir(jobs_dir).errors] == [
        f"{jobs_dir / 'box.toml'}:3:1: docker: 'image' is required"
    ]


def test_a_container_left_by_a_crashed_daemon_is_stopped_and_removed_at_the_next_start(
    jobs_dir: Path, clean: Any
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from .harness import read_records

    write_job(
        jobs_dir,
        "box.toml",
        f'schedule = "* * * * * *"\ntimezone = "UTC"\nkill_grace = "2s"\n'
        f'[docker]\nimage = "{IMAGE}"\ncommand = "sleep 600"\n',
    )
    env = {**os.environ, "XDG_RUNTIME_DIR": str(jobs_dir.parent)}
    argv = [sys.executable, "-m", "kron", "daemon", "--jobs-dir", str(jobs_dir)]
    log = jobs_dir.parent / "daemon.log"

    def wait(predicate: Any, what: str) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    def running() -> list[str]:
        return [c.name for c in clean.containers.list(filters={"label": "kron.job=box"})]

    with open(log, "ab") as handle:
        first = subprocess.Popen(argv, stderr=handle, stdout=subprocess.DEVNULL, env=env)
    try:
        wait(lambda: len(running()) == 1, "the container to run")
    finally:
        first.kill()
        first.wait(DEADLINE_S)
    [left] = running()
    with open(log, "ab") as handle:
        second = subprocess.Popen(argv, stderr=handle, stdout=subprocess.DEVNULL, env=env)
    path = jobs_dir / "box.runs.jsonl"
    try:
        wait(
            lambda: any(r["outcome"] == "abandoned" for r in read_records(path)),
            "the abandoned record",
        )
        assert left not in kron_containers(clean)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(DEADLINE_S) == 0
    [abandoned] = [r for r in read_records(path) if r["outcome"] == "abandoned"]
    assert left.endswith(abandoned["run_id"])
    assert abandoned["error"].endswith("was stopped (SIGKILL)")  # sleep as PID 1 ignores TERM
