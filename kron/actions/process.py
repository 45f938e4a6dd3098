"""Run one child process the way a system daemon should: own group, bounded output, sure stop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import logging
import os
import pwd
import signal
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from kron.actions.base import ActionResult, working_dir
from kron.model.job import Job
from kron.model.secrets import NO_SECRETS, Secrets
from kron.model.units import format_duration

__all__ = ["OutputBuffer", "run_job_process", "run_process", "stop_group"]

log = logging.getLogger("kron.process")

# SIGKILL cannot be caught; only a process stuck in uninterruptible I/O, or a zombie its parent
# never reaps, outlives it for long. Past this bound we log and return rather than hang the run.
_AFTER_KILL_WAIT = timedelta(seconds=5)
_STDOUT, _STDERR = 1, 2


class OutputBuffer:
    """Keep the first and the last `max_bytes / 2` of a stream and count what falls between."""

    __slots__ = ("_dropped", "_head", "_head_max", "_masking", "_tail", "_tail_max")

    def __init__(self, max_bytes: int, secrets: Secrets = NO_SECRETS) -> None:
        """Args:
        max_bytes: bytes kept in all, half from the start and half from the end.
        secrets: masked in the stream as it comes, so that no cut leaves half of one.
        """
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, not {max_bytes}")
        self._head_max = max_bytes // 2
        self._tail_max = max_bytes - self._head_max
        self._head = bytearray()
        self._tail = bytearray()
        self._dropped = 0
        self._masking = secrets.stream() if secrets else None

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the stream; memory stays within `max_bytes`."""
        if self._masking is not None:
            chunk = self._masking.feed(chunk)
        self._keep(chunk)

    def _keep(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        room = self._head_max - len(self._head)
        if room > 0:
            self._head += view[:room]
            view = view[room:]
        if not view:
            return
        if len(view) >= self._tail_max:
            self._dropped += len(self._tail) + len(view) - self._tail_max
            self._tail = bytearray(view[len(view) - self._tail_max :])
            return
        self._tail += view
        excess = len(self._tail) - self._tail_max
        if excess > 0:
            del self._tail[:excess]
            self._dropped += excess

    @property
    def truncated(self) -> bool:
        """Whether any byte was dropped."""
        return self._dropped > 0

    @property
    def dropped(self) -> int:
        """How many bytes from the middle of the stream were dropped."""
        return self._dropped

    def text(self) -> str:
        """Decode what was kept; invalid UTF-8 is escaped (`\\xff`), never an error."""
        if self._masking is not None:
            self._keep(self._masking.flush())  # the end of the stream: nothing more comes
        if not self._dropped:
            return (self._head + self._tail).decode("utf-8", "backslashreplace")
        head = self._head.decode("utf-8", "backslashreplace")
        tail = self._tail.decode("utf-8", "backslashreplace")
        return f"{head}\n[... {self._dropped} bytes dropped ...]\n{tail}"


class _Capture(asyncio.SubprocessProtocol):
    """Feed both pipes into buffers as data arrives and note when the main process exits.

    A protocol rather than `asyncio.create_subprocess_exec`: on Python 3.11 `Process.wait()`
    resolves only once the pipes are closed too, so a grandchild holding stdout would hide the
    main process's exit. `process_exited` here fires as soon as the child is reaped.
    """

    def __init__(self, max_output: int, loop: asyncio.AbstractEventLoop, secrets: Secrets) -> None:
        self.buffers = {
            _STDOUT: OutputBuffer(max_output, secrets),
            _STDERR: OutputBuffer(max_output, secrets),
        }
        self.exited: asyncio.Future[None] = loop.create_future()
        self.pipes_closed: asyncio.Future[None] = loop.create_future()
        self._open_fds = {_STDOUT, _STDERR}

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        """Buffer a chunk of stdout or stderr."""
        if isinstance(data, bytes):
            self.buffers[fd].feed(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        """Note a closed pipe; both closed means the output is complete."""
        self._open_fds.discard(fd)
        if not self._open_fds and not self.pipes_closed.done():
            self.pipes_closed.set_result(None)

    def process_exited(self) -> None:
        """Note that the main process has exited and been reaped."""
        if not self.exited.done():
            self.exited.set_result(None)


async def run_process(
    argv: Sequence[str],
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    umask: int | None = None,
    user: str | None = None,
    group: str | None = None,
    # Not a cancel scope (ASYNC109): reaching it starts the SIGTERM/SIGKILL escalation, which
    # an outer asyncio.timeout could not do; cancellation means SIGKILL at once.
    timeout: timedelta | None = None,  # noqa: ASYNC109
    kill_grace: timedelta = timedelta(seconds=10),
    max_output: int = 65536,
    stop: asyncio.Event | None = None,
    drain_timeout: timedelta = timedelta(seconds=2),
    on_spawn: Callable[[int], None] | None = None,
    stdin_data: bytes | None = None,
    secrets: Secrets = NO_SECRETS,
) -> ActionResult:
    """Run `argv` in its own session and process group and return how it ended.

    Failures to start are reported in the result, never raised. Setting `stop` (or reaching
    `timeout`) sends SIGTERM to the whole group, then SIGKILL after `kill_grace`. Cancelling
    the task instead sends SIGKILL to the group at once.

    Args:
        argv: the executable and its arguments; no shell is involved.
        cwd: working directory of the child.
        env: the child's whole environment; None inherits kron's.
        umask: file mode creation mask set in the child.
        user: user name (or uid) to run as, with that user's groups; needs root.
        group: group name (or gid) to run as; needs root.
        timeout: wall-clock limit from start to the main process's exit.
        kill_grace: time between SIGTERM and SIGKILL.
        max_output: bytes kept of stdout and, separately, of stderr (head and tail).
        stop: set by the caller to stop the run (cancel, replace, shutdown).
        drain_timeout: how long to keep reading after the main process exits.
        on_spawn: called with the pid as soon as the process has started.
        stdin_data: bytes written to the child's stdin, which is then closed; None gives it
            /dev/null.
        secrets: masked in stdout and stderr as they are read, before `max_output` cuts.

    Returns:
        The exit status, the captured output and how the run ended.
    """
    if stop is not None and stop.is_set():
        return _not_started("stopped before it started", stopped=True)
    if not argv:
        return _not_started("empty command")
    identity = _identity(user, group)
    if isinstance(identity, str):
        return _not_started(identity)
    loop = asyncio.get_running_loop()
    capture = _Capture(max_output, loop, secrets)
    try:
        transport, _ = await loop.subprocess_exec(
            lambda: capture,
            *argv,
            stdin=subprocess.DEVNULL if stdin_data is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
            umask=-1 if umask is None else umask,
            **identity,
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return _not_started(_spawn_error(exc, argv[0], cwd))
    pid = transport.get_pid()
    log.debug("started %s as pid %d", argv[0], pid)
    if stdin_data is not None:
        # Buffered by the transport and closed once written; a child that exits without
        # reading only makes the write fail quietly (EPIPE).
        stdin = transport.get_pipe_transport(0)
        assert isinstance(stdin, asyncio.WriteTransport)
        stdin.write(stdin_data)
        stdin.close()
    try:
        if on_spawn is not None:
            on_spawn(pid)
        return await _supervise(
            transport, capture, limit=timeout, stop=stop, kill_grace=kill_grace, drain=drain_timeout
        )
    except BaseException:
        if _signal_group(pid, signal.SIGKILL):
            log.warning("run of pid %d interrupted: sent SIGKILL to its process group", pid)
        raise
    finally:
        transport.close()


async def run_job_process(
    job: Job,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    stop: asyncio.Event,
    on_spawn: Callable[[int], None] | None = None,
    stdin_data: bytes | None = None,
    secrets: Secrets = NO_SECRETS,
) -> ActionResult:
    """Run argv as the job's process: its folder, umask, user, timeout, grace and output bound,
    with `secrets` masked in its output as it is read."""
    return await run_process(
        argv,
        cwd=str(working_dir(job)),
        env=env,
        umask=job.umask,
        user=job.user,
        group=job.group,
        timeout=job.timeout,
        kill_grace=job.kill_grace,
        max_output=job.max_output,
        stop=stop,
        on_spawn=on_spawn,
        stdin_data=stdin_data,
        secrets=secrets,
    )


async def _supervise(
    transport: asyncio.SubprocessTransport,
    capture: _Capture,
    *,
    limit: timedelta | None,
    stop: asyncio.Event | None,
    kill_grace: timedelta,
    drain: timedelta,
) -> ActionResult:
    """Wait for the exit, a timeout or a stop; then drain the output and clear the group."""
    pgid = transport.get_pid()  # start_new_session: the child leads its own process group
    timed_out = stopped = False
    error = None
    awaited: set[asyncio.Future[Any]] = {capture.exited}
    if stop is not None:
        awaited.add(asyncio.ensure_future(stop.wait()))
    try:
        await asyncio.wait(
            awaited,
            timeout=None if limit is None else limit.total_seconds(),
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        for waiter in awaited - {capture.exited}:
            waiter.cancel()
    if not capture.exited.done():
        stopped = stop is not None and stop.is_set()
        timed_out = not stopped
        after = "" if limit is None else f" {format_duration(limit)}"
        await stop_group(
            pgid,
            kill_grace,
            wait_exit=lambda: _until_gone(capture, pgid),
            reason="stop requested" if stopped else f"timeout{after} reached",
        )
    done, _ = await asyncio.wait({capture.pipes_closed}, timeout=drain.total_seconds())
    if not done:
        error = f"output still open after exit; stopped reading after {format_duration(drain)}"
        log.warning("pid %d exited but its output is still open: %s", pgid, error)
        transport.close()  # stop reading: close our ends of the pipes
    # Whatever is left in the group once the main process has gone is stopped too, as systemd
    # does for a finished service and Kubernetes for a finished pod: the run is not over while
    # its processes live, so `concurrency = forbid` means what it says. This is awaited here,
    # not left to a background task, so that nothing of the job outlives run_process. A child
    # meant to outlive its job must leave the group itself (setsid).
    if capture.exited.done() and _group_exists(pgid):
        await stop_group(
            pgid,
            kill_grace,
            wait_exit=lambda: _until_gone(capture, pgid),
            reason="left running after the main process exited",
        )
    returncode = transport.get_returncode()
    out, err = capture.buffers[_STDOUT], capture.buffers[_STDERR]
    return ActionResult(
        exit_code=returncode if returncode is not None and returncode >= 0 else None,
        signal=-returncode if returncode is not None and returncode < 0 else None,
        stdout=out.text(),
        stderr=err.text(),
        truncated=out.truncated or err.truncated,
        error=error,
        timed_out=timed_out,
        stopped=stopped,
        pid=pgid,
    )


async def stop_group(
    pgid: int,
    kill_grace: timedelta,
    *,
    wait_exit: Callable[[], Awaitable[None]],
    reason: str,
) -> int | None:
    """Stop a process group: SIGTERM, wait up to `kill_grace`, then SIGKILL, and reap.

    Args:
        pgid: the process group to signal.
        kill_grace: how long the group has to exit after SIGTERM.
        wait_exit: returns a fresh awaitable that completes once the group has exited and been
            reaped; it may be cancelled when the grace runs out.
        reason: why, for the log.

    Returns:
        The signal the group ended after (SIGTERM or SIGKILL), or None if it was already gone.
    """
    if not _signal_group(pgid, signal.SIGTERM):
        await wait_exit()
        return None
    grace = format_duration(kill_grace)
    log.info("stopping process group %d (%s): sent SIGTERM, SIGKILL in %s", pgid, reason, grace)
    try:
        await asyncio.wait_for(wait_exit(), kill_grace.total_seconds())
    except TimeoutError:
        pass
    else:
        log.info("process group %d exited after SIGTERM", pgid)
        return signal.SIGTERM
    log.warning("process group %d still running %s after SIGTERM: sent SIGKILL", pgid, grace)
    _signal_group(pgid, signal.SIGKILL)
    try:
        await asyncio.wait_for(wait_exit(), _AFTER_KILL_WAIT.total_seconds())
    except TimeoutError:
        log.error(
            "process group %d still present %s after SIGKILL; giving up",
            pgid,
            format_duration(_AFTER_KILL_WAIT),
        )
    else:
        log.info("process group %d exited after SIGKILL", pgid)
    return signal.SIGKILL


async def _until_gone(capture: _Capture, pgid: int) -> None:
    """Wait for the main process to exit and then for its whole group to be gone."""
    await asyncio.shield(capture.exited)
    # The kernel has no event for "process group empty", so poll, backing off to 100 ms.
    delay_s = 0.005
    while _group_exists(pgid):
        await asyncio.sleep(delay_s)
        delay_s = min(delay_s * 2, 0.1)


def _group_exists(pgid: int) -> bool:
    """Whether any process is left in the group, after reaping our own exited children in it.

    Orphans are reparented to init, or to kron when it is a child subreaper (as PID 1 in a
    container must be); zombies still count as members until reaped. Only called once the main
    process has been reaped, so this cannot take its status from asyncio's child watcher.
    """
    with contextlib.suppress(ChildProcessError):
        while os.waitid(os.P_PGID, pgid, os.WEXITED | os.WNOHANG) is not None:
            pass
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a member changed its uid (setuid program); it still exists
    return True


def _signal_group(pgid: int, signum: int) -> bool:
    """Send `signum` to the group; False if the group no longer exists."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("not allowed to signal process group %d", pgid)
    return True


def _identity(user: str | None, group: str | None) -> dict[str, Any] | str:
    """Popen arguments that switch to `user`/`group`, or an error message."""
    if user is None and group is None:
        return {}
    if os.geteuid() != 0:
        if _already(user, os.geteuid(), pwd.getpwnam, "pw_uid") and _already(
            group, os.getegid(), grp.getgrnam, "gr_gid"
        ):
            return {}  # kron runs as them already (a pod's runAsUser): nothing to switch
        return f"user and group need kron to run as root; it runs as uid {os.geteuid()}"
    identity: dict[str, Any] = {}
    gid = None
    if user is not None:
        try:
            entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        except KeyError:
            return f"unknown user: {user}"
        gid = entry.pw_gid
        # As cron and systemd's User= do (initgroups): the user's own groups, never root's.
        identity["user"] = entry.pw_uid
        identity["extra_groups"] = os.getgrouplist(entry.pw_name, entry.pw_gid)
    if group is not None:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            return f"unknown group: {group}"
    identity["group"] = gid
    return identity


def _already(name: str | None, current: int, lookup: Callable[[str], Any], field: str) -> bool:
    """Whether a user or group (a name or a number) is the current one, or not given."""
    if name is None or name == str(current):
        return True
    try:
        return bool(getattr(lookup(name), field) == current)
    except KeyError:
        return False


def _spawn_error(exc: BaseException, executable: str, cwd: str | None) -> str:
    """Say in a few words why the process did not start."""
    if not isinstance(exc, OSError):
        return f"cannot start {executable}: {exc}"
    # Python reports a failed chdir in the child with the working directory as the filename.
    if cwd is not None and exc.filename == cwd:
        if exc.errno == errno.ENOENT:
            return f"working directory not found: {cwd}"
        if exc.errno == errno.EACCES:
            return f"permission denied: working directory {cwd}"
        return f"cannot enter working directory {cwd}: {exc.strerror}"
    if exc.errno == errno.ENOENT:
        return f"executable not found: {executable}"
    if exc.errno == errno.EACCES:
        return f"permission denied: {executable}"
    return f"cannot start {executable}: {exc.strerror or exc}"


def _not_started(error: str, *, stopped: bool = False) -> ActionResult:
    return ActionResult(error=error, stopped=stopped)
