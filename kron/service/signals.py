"""What reaches the daemon's event loop from outside: signals, however busy the loop is, and
the exits of its children (`use_pidfd_child_watcher`).

asyncio's `loop.add_signal_handler` learns of a signal from one byte that the C-level handler
writes into the loop's self-pipe, the socket through which every child's exit is announced as
well (`call_soon_threadsafe`). During a burst, hundreds of jobs end while the loop is busy
starting the next ones; their bytes fill the socket (each one-byte write takes about a
kilobyte of its buffer), the signal's byte is dropped, and the SIGTERM with it: the daemon
goes on running, and CPython prints "Exception ignored when trying to write to the signal
wakeup fd".

Here a signal is handled by a Python-level handler, which the interpreter runs whenever the
signal arrived, whatever became of any byte: it queues the callback with
`call_soon_threadsafe`, which puts it on the loop's ready queue before it writes its own
wake-up byte. A pipe of our own is the wakeup fd, so that a signal delivered to another
thread still wakes the loop's thread; when it is full, the loop is awake already.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["Signals", "use_pidfd_child_watcher"]

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class Signals:
    """Signal handlers of one event loop, run on it; `close` puts back what was there."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._previous: dict[int, _Handler] = {}
        loop.add_reader(self._read_fd, self._drain)
        self._previous_wakeup = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)

    def on(self, signum: int, callback: Callable[[], object]) -> None:
        """Call `callback` on the loop each time `signum` arrives (replacing an earlier one)."""

        def handler(_signum: int, _frame: FrameType | None) -> None:
            self._loop.call_soon_threadsafe(callback)

        previous = signal.signal(signum, handler)
        self._previous.setdefault(signum, previous)

    def close(self) -> None:
        """Restore the handlers and the wakeup fd found at the start."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
        if self._read_fd < 0:
            return
        signal.set_wakeup_fd(self._previous_wakeup)
        self._loop.remove_reader(self._read_fd)
        os.close(self._read_fd)
        os.close(self._write_fd)
        self._read_fd = self._write_fd = -1

    def _drain(self) -> None:
        try:
            while os.read(self._read_fd, 4096):
                pass
        except BlockingIOError:
            pass


def use_pidfd_child_watcher() -> None:
    """Python 3.11 waits for each child in a thread of its own; a pidfd costs no thread.

    Call from inside the running loop. Python 3.12 made the pidfd watcher the default.
    """
    if sys.version_info >= (3, 12) or not hasattr(asyncio, "PidfdChildWatcher"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)
