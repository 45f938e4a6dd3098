"""Work a long list on every core: forked workers that inherit their share and send back a result.

A first load of 10,000 job files, or `kron validate` on them, spends its time parsing; a fork per
core divides it. Nothing is pickled on the way in (a child inherits its chunk); only the result
comes back, through a pipe.
"""

from __future__ import annotations

import io
import os
import pickle
import signal
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import IO, Any, TypeVar

__all__ = ["MAX_WORKERS", "PARALLEL_MIN", "in_parallel", "quiet_worker", "worker_count"]

S = TypeVar("S", bound=Sequence[Any])  # a chunk: a list of work items
R = TypeVar("R")
PARALLEL_MIN = 2000  # below this, starting workers costs more than it saves
MAX_WORKERS = 4


def worker_count(files: int) -> int:
    """How many processes should load `files` files: 1 below PARALLEL_MIN, else one per core."""
    if files < PARALLEL_MIN:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may run on
    except AttributeError:  # pragma: no cover - macOS
        cores = os.cpu_count() or 1
    return min(cores, MAX_WORKERS)


def in_parallel(work: Callable[[S], R], chunks: Sequence[S], *, here: bool = True) -> list[R]:
    """Return `[work(c) for c in chunks]`, the first chunk here and each other in a fork.

    A forked child inherits its chunk, so nothing is pickled on the way in; only `work`'s
    result comes back, through a pipe. This process works on its own chunk meanwhile, unless
    `here` is False: then every chunk goes to a fork, and only results come back here.
    """
    if threading.active_count() > 1:
        # A fork copies only the calling thread, and a lock another one held stays locked in
        # the child. The daemon's first load and `kron validate` have one thread; otherwise
        # the chunks are worked through here, in turn.
        return [work(chunk) for chunk in chunks]
    children: list[tuple[int, int]] = []
    forked = chunks if not here else chunks[1:]
    try:
        for chunk in forked:
            read_fd, write_fd = os.pipe()
            try:
                pid = os.fork()
            except OSError:
                os.close(read_fd)
                os.close(write_fd)
                raise
            if pid == 0:  # pragma: no cover - runs in the child, which never returns
                os.close(read_fd)
                _work_in_child(work, chunk, write_fd)
            os.close(write_fd)
            children.append((pid, read_fd))
        results = [work(chunks[0])] if here else []
        for (pid, read_fd), chunk in zip(children, forked, strict=True):
            results.append(_result_of(pid, read_fd, chunk))
    finally:
        for pid, read_fd in children:
            _reap(pid, read_fd)
    return results


class _Sender(pickle.Pickler):
    """Pickles a child's result; an item of its chunk goes as its index, not as itself.

    The parent has the chunk already: a job's path comes back as the parent's own Path object,
    neither pickled nor parsed again (10,000 paths cost 0.3 s to rebuild) nor held twice.
    """

    def __init__(self, file: IO[bytes], chunk: Sequence[Any]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._chunk = chunk
        self._index = {id(item): index for index, item in enumerate(chunk)}

    def persistent_id(self, obj: Any) -> int | None:
        index = self._index.get(id(obj))
        return index if index is not None and self._chunk[index] is obj else None


class _Receiver(pickle.Unpickler):
    def __init__(self, file: IO[bytes], chunk: Sequence[Any]) -> None:
        super().__init__(file)
        self._chunk = chunk

    def persistent_load(self, pid: Any) -> Any:
        return self._chunk[pid]


def _work_in_child(work: Callable[[S], R], chunk: S, write_fd: int) -> None:  # pragma: no cover
    """Run `work` in a forked child, send back (ok, result or traceback), and exit."""
    code = 1
    try:
        quiet_worker()
        try:
            payload: tuple[bool, object] = (True, work(chunk))
        except BaseException:  # anything goes back to the parent, as text
            payload = (False, traceback.format_exc())
        with open(write_fd, "wb") as out:
            _Sender(out, chunk).dump(payload)
        code = 0
    finally:
        os._exit(code)  # never return into the parent's stack, flush its buffers or run atexit


def _result_of(pid: int, read_fd: int, chunk: Sequence[Any]) -> Any:
    with open(read_fd, "rb", closefd=False) as source:
        data = source.read()
    try:
        ok, value = _Receiver(io.BytesIO(data), chunk).load()
    except Exception:  # a child that died mid-way leaves a truncated pickle
        raise RuntimeError(f"load worker {pid} ended without a result") from None
    if not ok:
        raise RuntimeError(f"load worker {pid} failed:\n{value}")
    return value


def _reap(pid: int, read_fd: int) -> None:
    """Close the pipe (a child still writing then fails and exits) and wait for the child."""
    os.close(read_fd)
    os.waitpid(pid, 0)


def quiet_worker() -> None:
    """Make a forked worker deaf to the parent's signal handling.

    A fork inherits asyncio's signal wakeup fd: a SIGTERM or SIGINT that reaches a worker (a
    Ctrl-C reaches the whole process group) would be written into the daemon's own loop and
    stop the daemon. Workers take default handlers.
    """
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
