"""kron.process against real child processes: capture, identity, timeouts, stops and drains."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import pwd
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from kron.actions.base import ActionResult
from kron.actions.process import OutputBuffer, run_process, stop_group

T = TypeVar("T")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")


@pytest.fixture(autouse=True, scope="module")
def _orphans_come_back_to_us() -> Iterator[None]:
    """Make this process a child subreaper while these tests run.

    Orphaned grandchildren are reparented to init, and some inits (this sandbox's, a container
    without tini) never reap them: their zombies would keep the process group alive for
    `os.killpg(pgid, 0)`. As a subreaper we receive them and run_process reaps them, which is
    how a daemon running as PID 1 has to be deployed anyway.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
    pr_set_child_subreaper = 36
    if prctl is not None:
        prctl(pr_set_child_subreaper, 1, 0, 0, 0)
    yield
    if prctl is not None:
        prctl(pr_set_child_subreaper, 0, 0, 0, 0)


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
    """Run a coroutine on a fresh event loop, with a deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait until `condition()` holds, checking every 10 ms, failing after `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


def kron_logs(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "kron.process"]


def completed(pid: int | None, **fields: Any) -> ActionResult:
    """The result of a run that exited 0 with no output, overridden by `fields`."""
    base: dict[str, Any] = {
        "exit_code": 0,
        "signal": None,
        "stdout": "",
        "stderr": "",
        "truncated": False,
        "error": None,
        "timed_out": False,
        "stopped": False,
        "pid": pid,
    }
    return ActionResult(**(base | fields))


def not_started(error: str, *, stopped: bool = False) -> ActionResult:
    return completed(None, exit_code=None, error=error, stopped=stopped)


# OutputBuffer


def test_output_buffer_keeps_a_stream_that_fits_whole() -> None:
    buffer = OutputBuffer(8)
    buffer.feed(b"abc")
    buffer.feed(b"defgh")
    assert (buffer.text(), buffer.truncated, buffer.dropped) == ("abcdefgh", False, 0)


@pytest.mark.parametrize("chunk_size", [1, 3, 4, 5, 64])
def test_output_buffer_keeps_head_and_tail_whatever_the_chunking(chunk_size: int) -> None:
    data = b"0123456789abcdefghij"
    buffer = OutputBuffer(8)
    for start in range(0, len(data), chunk_size):
        buffer.feed(data[start : start + chunk_size])
    assert (buffer.text(), buffer.truncated, buffer.dropped) == (
        "0123\n[... 12 bytes dropped ...]\nghij",
        True,
        12,
    )


def test_output_buffer_decodes_a_character_split_between_head_and_tail() -> None:
    buffer = OutputBuffer(7)
    buffer.feed("h€llo".encode())
    assert buffer.text() == "h€llo"


def test_output_buffer_escapes_invalid_utf8_instead_of_raising() -> None:
    buffer = OutputBuffer(64)
    buffer.feed(b"ok \xff\xfe")
    assert buffer.text() == "ok \\xff\\xfe"


def test_output_buffer_escapes_characters_cut_by_the_dropped_middle() -> None:
    buffer = OutputBuffer(4)
    buffer.feed("€€€".encode())
    assert buffer.text() == "\\xe2\\x82\n[... 5 bytes dropped ...]\n\\x82\\xac"


def test_output_buffer_of_zero_bytes_drops_everything() -> None:
    buffer = OutputBuffer(0)
    buffer.feed(b"abc")
    assert (buffer.text(), buffer.truncated, buffer.dropped) == (
        "\n[... 3 bytes dropped ...]\n",
        True,
        3,
    )


def test_output_buffer_refuses_a_negative_size() -> None:
    with pytest.raises(ValueError, match="max_bytes must be >= 0, not -1"):
        OutputBuffer(-1)


# Running, capturing and the child's environment


def test_exit_code_and_both_streams_are_captured() -> None:
    result = run(run_process(["sh", "-c", "echo out; echo err >&2; exit 3"]))
    assert result == completed(result.pid, exit_code=3, stdout="out\n", stderr="err\n")


def test_on_spawn_receives_the_pid_of_the_child() -> None:
    pids: list[int] = []
    result = run(run_process(["true"], on_spawn=pids.append))
    assert pids == [result.pid]


def test_both_streams_are_read_concurrently_and_bounded_per_stream() -> None:
    # 1 MiB to stderr before anything to stdout: reading stdout first would deadlock once the
    # stderr pipe (64 KiB) is full.
    script = "yes e | head -c 1048576 >&2; yes o | head -c 1048576"
    result = run(run_process(["sh", "-c", script], max_output=8))
    marker = "\n[... 1048568 bytes dropped ...]\n"
    assert result == completed(
        result.pid,
        stdout="o\no\n" + marker + "o\no\n",
        stderr="e\ne\n" + marker + "e\ne\n",
        truncated=True,
    )


def test_child_leads_its_own_session_and_process_group() -> None:
    code = "import os; print(os.getpid(), os.getpgid(0), os.getsid(0))"
    result = run(run_process([sys.executable, "-c", code]))
    assert result.stdout == f"{result.pid} {result.pid} {result.pid}\n"


def test_stdin_is_dev_null() -> None:
    result = run(run_process(["readlink", "/proc/self/fd/0"]))
    assert result.stdout == "/dev/null\n"


def test_env_is_the_whole_environment_of_the_child() -> None:
    result = run(run_process(["/usr/bin/env"], env={"ONLY": "this"}))
    assert result.stdout == "ONLY=this\n"


def test_cwd_and_umask_apply_to_the_child(tmp_path: Path) -> None:
    result = run(run_process(["sh", "-c", "pwd; umask"], cwd=str(tmp_path), umask=0o027))
    assert result.stdout == f"{tmp_path.resolve()}\n0027\n"


@needs_root
@pytest.mark.parametrize(
    ("user", "group", "expected"),
    [
        # The user's own groups replace root's, as cron's initgroups does.
        ("nobody", None, "{nobody.pw_uid}\n{nobody.pw_gid}\n{nobody.pw_gid}\n"),
        (None, "nogroup", "0\n{nobody.pw_gid}\n"),
    ],
)
def test_user_and_group_switch_the_identity_of_the_child(
    user: str | None, group: str | None, expected: str
) -> None:
    nobody = pwd.getpwnam("nobody")
    script = "id -u; id -g" + ("; id -G" if user else "")
    # Give kron a supplementary group of its own, which the job must not inherit.
    groups = os.getgroups()
    os.setgroups([*groups, 4242])
    try:
        result = run(run_process(["sh", "-c", script], cwd="/", user=user, group=group))
    finally:
        os.setgroups(groups)
    assert result == completed(result.pid, stdout=expected.format(nobody=nobody))


def test_user_without_root_is_an_error_result(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = run(run_process(["true"], user="nobody"))
    assert result == not_started("user and group need kron to run as root; it runs as uid 1000")


@needs_root
@pytest.mark.parametrize(
    ("user", "group", "error"),
    [
        ("no-such-user-kron", None, "unknown user: no-such-user-kron"),
        ("nobody", "no-such-group-kron", "unknown group: no-such-group-kron"),
    ],
)
def test_unknown_user_or_group_is_an_error_result(user: str, group: str | None, error: str) -> None:
    assert run(run_process(["true"], user=user, group=group)) == not_started(error)


@pytest.mark.parametrize(
    ("argv", "cwd", "error"),
    [
        (["/no/such"], None, "executable not found: /no/such"),
        (["no-such-command-kron"], None, "executable not found: no-such-command-kron"),
        (["{file}"], None, "permission denied: {file}"),
        (["true"], "/no/such/dir", "working directory not found: /no/such/dir"),
        (["true"], "{file}", "cannot enter working directory {file}: Not a directory"),
        (["/bin/echo", "a\0b"], None, "cannot start /bin/echo: embedded null byte"),
        ([], None, "empty command"),
    ],
)
def test_spawn_failures_are_results_not_exceptions(
    tmp_path: Path, argv: list[str], cwd: str | None, error: str
) -> None:
    not_executable = tmp_path / "script.sh"
    not_executable.write_text("#!/bin/sh\necho hi\n")
    not_executable.chmod(0o644)

    def fill(text: str) -> str:
        return text.replace("{file}", str(not_executable))

    result = run(run_process([fill(arg) for arg in argv], cwd=cwd and fill(cwd)))
    assert result == not_started(fill(error))


def test_death_by_signal_is_reported_as_the_signal() -> None:
    result = run(run_process(["sh", "-c", "kill -KILL $$"]))
    assert result == completed(result.pid, exit_code=None, signal=signal.SIGKILL)


def test_a_gibibyte_of_output_keeps_memory_bounded() -> None:
    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run(run_process(["head", "-c", "1073741824", "/dev/zero"]), timeout_s=120)
    growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kib
    half = "\0" * 32768
    assert result == completed(
        result.pid,
        stdout=half + "\n[... 1073676288 bytes dropped ...]\n" + half,
        truncated=True,
    )
    assert growth_kib < 64 * 1024


# Timeouts, stops and leftovers


def test_timeout_stops_the_whole_process_group(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kron.process")
    result = run(
        run_process(
            ["sh", "-c", "sleep 1000 & sleep 1000; wait"],
            timeout=timedelta(seconds=1),
            kill_grace=timedelta(seconds=1),
        )
    )
    assert result.pid is not None
    assert not group_alive(result.pid)  # nothing of the tree outlives run_process
    assert result == completed(result.pid, exit_code=None, signal=signal.SIGTERM, timed_out=True)
    assert kron_logs(caplog) == [
        (
            "INFO",
            f"stopping process group {result.pid} (timeout 1s reached): "
            "sent SIGTERM, SIGKILL in 1s",
        ),
        ("INFO", f"process group {result.pid} exited after SIGTERM"),
    ]


@contextlib.contextmanager
def sigterm_ignored_by_children() -> Iterator[None]:
    """Spawn children that ignore SIGTERM from their first instruction.

    An ignored signal stays ignored across fork and exec, so a `trap "" TERM` is in place before
    any timeout can fire, however slowly a loaded machine starts the shell.
    """
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_timeout_sends_sigkill_after_kill_grace_when_sigterm_is_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kron.process")
    started = time.monotonic()
    with sigterm_ignored_by_children():
        result = run(
            run_process(
                ["sh", "-c", 'trap "" TERM; sleep 1000'],
                timeout=timedelta(seconds=0.5),
                kill_grace=timedelta(seconds=0.5),
            )
        )
    assert time.monotonic() - started >= 1.0
    assert result.pid is not None
    assert not group_alive(result.pid)
    assert result == completed(result.pid, exit_code=None, signal=signal.SIGKILL, timed_out=True)
    assert kron_logs(caplog) == [
        (
            "INFO",
            f"stopping process group {result.pid} (timeout 500ms reached): "
            "sent SIGTERM, SIGKILL in 500ms",
        ),
        ("WARNING", f"process group {result.pid} still running 500ms after SIGTERM: sent SIGKILL"),
        ("INFO", f"process group {result.pid} exited after SIGKILL"),
    ]


def test_stop_event_escalates_like_a_timeout_and_marks_the_run_stopped(tmp_path: Path) -> None:
    ready = tmp_path / "ready"

    async def scenario() -> ActionResult:
        stop = asyncio.Event()
        run_task = asyncio.create_task(
            run_process(
                ["sh", "-c", f'trap "" TERM; : > {ready}; sleep 1000'],
                stop=stop,
                kill_grace=timedelta(seconds=0.2),
            )
        )
        await until(ready.exists)
        stop.set()
        return await run_task

    result = run(scenario())
    assert result.pid is not None
    assert not group_alive(result.pid)
    assert result == completed(result.pid, exit_code=None, signal=signal.SIGKILL, stopped=True)


def test_stop_set_before_the_start_runs_nothing() -> None:
    async def scenario() -> ActionResult:
        stop = asyncio.Event()
        stop.set()
        return await run_process(["true"], stop=stop)

    assert run(scenario()) == not_started("stopped before it started", stopped=True)


def test_a_grandchild_holding_the_output_open_does_not_hang_the_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kron.process")
    result = run(
        run_process(
            ["sh", "-c", "echo started; sleep 1000 &"],
            drain_timeout=timedelta(seconds=0.5),
            kill_grace=timedelta(seconds=5),
        )
    )
    assert result.pid is not None
    assert not group_alive(result.pid)
    error = "output still open after exit; stopped reading after 500ms"
    assert result == completed(result.pid, stdout="started\n", error=error)
    assert kron_logs(caplog) == [
        ("WARNING", f"pid {result.pid} exited but its output is still open: {error}"),
        (
            "INFO",
            f"stopping process group {result.pid} (left running after the main process exited): "
            "sent SIGTERM, SIGKILL in 5s",
        ),
        ("INFO", f"process group {result.pid} exited after SIGTERM"),
    ]


def test_processes_left_in_the_group_are_stopped_when_the_main_process_exits() -> None:
    result = run(
        run_process(
            ["sh", "-c", "sleep 1000 >/dev/null 2>&1 &"],
            drain_timeout=timedelta(seconds=10),
            kill_grace=timedelta(seconds=5),
        )
    )
    assert result.pid is not None
    assert not group_alive(result.pid)
    assert result == completed(result.pid)


def test_cancelling_the_run_kills_the_group_at_once() -> None:
    async def scenario() -> int:
        pids: list[int] = []
        run_task = asyncio.create_task(
            run_process(["sh", "-c", "sleep 1000 & sleep 1000; wait"], on_spawn=pids.append)
        )
        await until(lambda: bool(pids))
        run_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run_task
        pgid = pids[0]
        # asyncio reaps the main process; its orphans come to this subreaper, so reap them too.
        await until(lambda: not pid_alive(pgid))
        await until(lambda: _reaped(pgid) and not group_alive(pgid))
        return pgid

    run(scenario())


def _reaped(pgid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        while os.waitid(os.P_PGID, pgid, os.WEXITED | os.WNOHANG) is not None:
            pass
    return True


def test_stop_group_returns_the_signal_that_ended_the_group() -> None:
    child = subprocess.Popen(["sleep", "1000"], start_new_session=True)

    def exited() -> Awaitable[None]:
        async def wait() -> None:
            await until(lambda: child.poll() is not None)

        return wait()

    grace = timedelta(seconds=5)
    first = run(stop_group(child.pid, grace, wait_exit=exited, reason="test"))
    again = run(stop_group(child.pid, grace, wait_exit=exited, reason="test again"))
    assert (first, again, child.returncode) == (signal.SIGTERM, None, -signal.SIGTERM)


# stdin


def test_stdin_data_reaches_the_child_whole_even_past_the_pipe_buffer() -> None:
    data = os.urandom(1024 * 1024)  # 16 pipe buffers: written as the child reads
    result = run(run_process(["wc", "-c"], stdin_data=data))
    assert (result.exit_code, result.stdout.strip()) == (0, str(len(data)))


def test_a_child_that_never_reads_its_stdin_ends_the_run_normally() -> None:
    result = run(run_process(["sh", "-c", "exit 3"], stdin_data=b"x" * (1024 * 1024)))
    assert (result.exit_code, result.error) == (3, None)
