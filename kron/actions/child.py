"""A child process watched by the event loop directly: its exit through a pidfd, its output
through two readers.

asyncio's subprocess transport does the same work in more steps: a pipe transport and a
coroutine per stream, a task to connect them, and each exit announced through the loop's
self-pipe by the child watcher. For a burst of 500 runs on one slot those steps were a
quarter of the daemon's time; here a start is `subprocess.Popen` (vfork and exec, as before)
and three `add_reader` calls.

Measured and dropped: starting children from threads (the GIL, taken back after each vfork
from a busy loop, made a burst slower), and starting a few per pass of the loop so that ends
are read in between (it kept fewer pipes open during the burst, but put the ends' work ahead
of the last starts).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

__all__ = ["Child", "spawn"]

_READ_CHUNK = 256 * 1024  # as asyncio's pipe transports read


class Child:
    """A started child: `exited` resolves once it was reaped (`returncode` set), and
    `pipes_closed` once its stdout and stderr both reached their end (or were closed here)."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        loop: asyncio.AbstractEventLoop,
        on_output: Callable[[int, bytes], None],
    ) -> None:
        self.pid = proc.pid
        self.returncode: int | None = None
        self.exited: asyncio.Future[None] = loop.create_future()
        self.pipes_closed: asyncio.Future[None] = loop.create_future()
        self._proc = proc
        self._loop = loop
        self._on_output = on_output
        self._reading: dict[int, tuple[int, IO[bytes]]] = {}  # our fd -> (1 or 2, its file)
        for number, stream in ((1, proc.stdout), (2, proc.stderr)):
            if stream is not None:
                fd = stream.fileno()
                os.set_blocking(fd, False)
                self._reading[fd] = (number, stream)
                loop.add_reader(fd, self._read, fd)
        if not self._reading:
            self.pipes_closed.set_result(None)
        self._watch_exit()

    # -- output -----------------------------------------------------------------------------

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # a broken pipe ends the stream as an end of file does
        if data:
            self._on_output(self._reading[fd][0], data)
            return
        self._stop_reading(fd)

    def _stop_reading(self, fd: int) -> None:
        reading = self._reading.pop(fd, None)
        if reading is None:
            return
        self._loop.remove_reader(fd)
        reading[1].close()
        if not self._reading and not self.pipes_closed.done():
            self.pipes_closed.set_result(None)

    def close(self) -> None:
        """Stop reading its output: our ends of the pipes are closed."""
        for fd in list(self._reading):
            self._stop_reading(fd)

    def write_stdin(self, data: bytes) -> None:
        """Write `data` to the child's stdin as it reads, then close it; a child that exits
        without reading only makes the write end early (EPIPE), never an error."""
        stdin = self._proc.stdin
        if stdin is None:
            return
        fd = stdin.fileno()
        os.set_blocking(fd, False)
        left = memoryview(data)

        def write() -> None:
            nonlocal left
            try:
                while left:
                    left = left[os.write(fd, left) :]
            except BlockingIOError:
                return  # the pipe is full: the loop calls again once the child has read
            except OSError:
                pass  # the child closed its end or exited
            self._loop.remove_writer(fd)
            stdin.close()

        self._loop.add_writer(fd, write)

    # -- exit -------------------------------------------------------------------------------

    def _watch_exit(self) -> None:
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # a kernel before 5.3: a thread waits instead
            waiting = self._loop.run_in_executor(None, os.waitpid, self.pid, 0)
            waiting.add_done_callback(
                lambda done: self._reaped(None if done.exception() else done.result()[1])
            )
            return

        def ready() -> None:
            self._loop.remove_reader(pidfd)
            os.close(pidfd)
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else: its status is lost
                self._reaped(None)
                return
            if pid:
                self._reaped(status)

        self._loop.add_reader(pidfd, ready)

    def _reaped(self, status: int | None) -> None:
        self.returncode = None if status is None else os.waitstatus_to_exitcode(status)
        # Popen's own bookkeeping: reaped (its __del__ would count a None as a leak).
        self._proc.returncode = self.returncode if self.returncode is not None else -1
        if not self.exited.done():
            self.exited.set_result(None)


def spawn(
    argv: Sequence[str],
    *,
    cwd: str | None,
    env: Mapping[str, str] | None,
    umask: int | None,
    identity: Mapping[str, Any],
    stdin_data: bytes | None,
    on_output: Callable[[int, bytes], None],
) -> Child:
    """Start `argv` in its own session and process group, watched by the running loop.

    Args:
        identity: Popen's `user`, `group` and `extra_groups`, when it switches to them.
        stdin_data: written to its stdin, which is then closed; None gives it /dev/null.
        on_output: called with 1 or 2 (stdout, stderr) and each chunk as it is read.

    Raises:
        OSError, ValueError, subprocess.SubprocessError: it did not start.
    """
    loop = asyncio.get_running_loop()
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL if stdin_data is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,
        umask=-1 if umask is None else umask,
        **identity,
    )
    child = Child(proc, loop, on_output)
    if stdin_data is not None:
        child.write_stdin(stdin_data)
    return child
