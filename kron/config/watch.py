"""Follow the jobs directory live: which changes matter, batched as the editor or git makes them.

On Linux the kernel says what changed (inotify, read on the event loop), so an idle daemon's
watcher never wakes. Where inotify is missing or out of watches, watchfiles' Rust watcher takes
over; it polls every STEP_MS, which costs about 0.1 CPU s a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import logging
import os
import struct
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from kron.config.discovery import SETTINGS_NAMES, is_job_file

if TYPE_CHECKING:
    import watchfiles

log = logging.getLogger("kron.watch")

# A batch is handed over once the directory has been quiet for QUIET_MS, and at the latest
# DEBOUNCE_MS after its first change, so a long `git checkout` is applied in consistent batches.
# An editor's save (write, rename, chmod) takes well under QUIET_MS. watchfiles' default debounce
# (1600 ms) would make every edit wait over a second and a half.
QUIET_MS = 20
DEBOUNCE_MS = 400
# The fallback: watchfiles' Rust watcher sleeps STEP_MS between checks even when nothing changes.
STEP_MS = 30
RUST_TIMEOUT_MS = 5000  # the fallback's thread checks for a stop at least this often

# From <sys/inotify.h>.
IN_ATTRIB = 0x4  # chmod and chown: whether a file is trusted
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_UNMOUNT = 0x2000
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x1000000
IN_ISDIR = 0x40000000
# Not IN_MODIFY: a file is read once its writer closes it. Run records are appended beside job
# files and close a written file each time; they are dropped by name.
WATCH_MASK = (
    IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
)
ROOT_GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT
READ_BYTES = 64 * 1024
EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then name[len]


class JobFilesFilter:
    """Keep job files, kron.toml and folders; drop hidden files, editor temporaries and records."""

    def __init__(self, jobs_dir: Path) -> None:
        self.jobs_dir = jobs_dir

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        try:
            relative = Path(path).relative_to(self.jobs_dir)
        except ValueError:
            return False
        if any(part.startswith(".") for part in relative.parts):
            return False
        name = relative.name
        if is_job_file(name) or name in SETTINGS_NAMES:
            return True
        # A folder added, removed or renamed: its files never show up one by one.
        return "." not in name and not name.endswith(("~", "#"))


async def watch(
    jobs_dir: Path,
    stop: asyncio.Event,
    on_ready: Callable[[], None] | None = None,
    *,
    watches: Watches | None = None,
) -> AsyncIterator[set[Path]]:
    """Yield the set of changed paths, batch by batch, until `stop` is set.

    A folder's path stands for everything in it: it was added, removed, renamed or chmod-ed, or
    (the jobs directory itself) events were lost and it must be read again.

    Args:
        jobs_dir: The folder to follow, with every folder below it but hidden ones.
        stop: Ends the iteration once set.
        on_ready: Called once the directory is being watched: a change made before that moment
            is not seen here, so the caller re-checks the directory then. Called again if the
            watcher has to change to polling midway (out of inotify watches).
        watches: inotify watches opened earlier (`Watches(jobs_dir)`, before a first load:
            what changed since is queued in the kernel, and on_ready is not called for them).
            They are closed at the end.
    """
    try:
        async with contextlib.aclosing(
            _watch_inotify(jobs_dir, stop, on_ready, watches)
        ) as batches:
            async for paths in batches:
                yield paths
        return
    except InotifyUnavailable as exc:
        log.warning("%s; watching %s by polling every %d ms instead", exc, jobs_dir, STEP_MS)
    async for paths in _watch_polling(jobs_dir, stop, on_ready):
        yield paths


# -- inotify -------------------------------------------------------------------------------------


class InotifyUnavailable(Exception):
    """inotify cannot watch the jobs directory here; the message says why."""


@functools.cache
def _libc() -> ctypes.CDLL:
    if sys.platform != "linux":
        raise InotifyUnavailable(f"inotify is Linux only (this is {sys.platform})")
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError) as exc:
        raise InotifyUnavailable(f"the C library has no inotify ({exc})") from None
    return libc


def _unavailable(what: str, code: int) -> InotifyUnavailable:
    reasons = {
        errno.ENOSPC: "the inotify watch limit is reached (sysctl fs.inotify.max_user_watches)",
        errno.EMFILE: "the inotify instance limit (sysctl fs.inotify.max_user_instances) "
        "or this process's open-file limit is reached",
        errno.ENFILE: "the system's open-file limit is reached",
        errno.ENOMEM: "the kernel is out of memory for inotify",
    }
    return InotifyUnavailable(f"{what}: {reasons.get(code, os.strerror(code))}")


def parse_events(buffer: bytes) -> Iterator[tuple[int, int, str]]:
    """Split what one read of an inotify fd returned into (wd, mask, name) per event.

    The name is "" for an event about the watched folder itself. The kernel never splits an
    event across reads.
    """
    offset = 0
    while offset + EVENT.size <= len(buffer):
        wd, mask, _cookie, length = EVENT.unpack_from(buffer, offset)
        offset += EVENT.size
        name = buffer[offset : offset + length].split(b"\0", 1)[0]
        offset += length
        yield wd, mask, os.fsdecode(name)


class Watches:
    """One inotify instance, with a watch on every folder below the jobs directory but hidden ones.

    Folders are followed through symlinks, once each, as `discovery.discover` reads them.
    """

    def __init__(self, jobs_dir: Path) -> None:
        self.jobs_dir = jobs_dir
        self.folders: dict[int, Path] = {}  # watch descriptor → folder
        self.wds: dict[Path, int] = {}
        self.root_gone = False
        libc = _libc()
        self.fd: int = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise _unavailable("cannot start inotify", ctypes.get_errno())
        try:
            self._add(jobs_dir)  # the jobs directory must be there: unlike a folder below it
            self.add_tree(jobs_dir)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the fd, which drops every watch with it."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.folders.clear()
        self.wds.clear()

    def _add(self, folder: Path) -> int:
        wd: int = _libc().inotify_add_watch(self.fd, os.fsencode(folder), WATCH_MASK)
        if wd >= 0:
            return wd
        code = ctypes.get_errno()
        if code in (errno.ENOSPC, errno.ENOMEM):
            raise _unavailable(f"cannot watch {folder}", code)
        raise OSError(code, os.strerror(code), str(folder))

    def add_tree(self, top: Path) -> None:
        """Watch `top` and the folders below it; one that vanishes or is unreadable is skipped."""
        seen: set[int] = set()
        stack = [top]
        while stack:
            folder = stack.pop()
            try:
                wd = self._add(folder)
            except OSError:
                continue  # removed meanwhile, not a folder, or unreadable: discover says so
            if wd in seen or self.folders.get(wd, folder) != folder:
                continue  # reached a second time through a symlink: discover reads it once
            seen.add(wd)
            self.folders[wd] = folder
            self.wds[folder] = wd
            try:
                with os.scandir(folder) as entries:
                    stack.extend(
                        Path(entry.path)
                        for entry in entries
                        if not entry.name.startswith(".") and _is_dir(entry)
                    )
            except OSError:
                continue

    def remove_tree(self, top: Path) -> None:
        """Stop watching `top` and the folders below it (it was removed or moved away)."""
        for folder in [f for f in self.wds if f == top or top in f.parents]:
            wd = self.wds.pop(folder)
            self.folders.pop(wd, None)
            _libc().inotify_rm_watch(self.fd, wd)  # EINVAL if the kernel dropped it already

    def rewatch(self) -> None:
        """Start over after lost events: a folder may have come or gone unseen."""
        self.remove_tree(self.jobs_dir)
        self.add_tree(self.jobs_dir)
        self.root_gone = self.jobs_dir not in self.wds

    def read_into(self, changed: set[Path]) -> None:
        """Read every pending event, keep the watches in step, and add what changed to `changed`.

        `changed` holds what was found so far if this raises.
        """
        while True:
            try:
                data = os.read(self.fd, READ_BYTES)
            except BlockingIOError:
                return
            self.handle(parse_events(data), changed)

    def handle(self, events: Iterable[tuple[int, int, str]], changed: set[Path]) -> None:
        """Keep the watches in step with `events`; add what changed to `changed`."""
        for wd, mask, name in events:
            self._handle(wd, mask, name, changed)

    def _handle(self, wd: int, mask: int, name: str, changed: set[Path]) -> None:
        if mask & IN_Q_OVERFLOW:
            # The kernel's queue overflowed: read everything again, kron.toml too.
            changed.add(self.jobs_dir)
            changed.update(self.jobs_dir / settings for settings in SETTINGS_NAMES)
            self.rewatch()
            return
        folder = self.folders.get(wd)
        if folder is None:
            return  # queued before its watch was dropped
        if mask & IN_IGNORED:
            del self.folders[wd]
            if self.wds.get(folder) == wd:
                del self.wds[folder]
            return
        if not name:  # the watched folder itself; its parent reports it by name
            if folder == self.jobs_dir and mask & ROOT_GONE:
                self.root_gone = True
                changed.add(folder)
            elif folder == self.jobs_dir and mask & IN_ATTRIB:
                changed.add(folder)
            return
        if name.startswith("."):
            return
        path = folder / name
        # A folder that went or came, or a symlink to one (which has no IN_ISDIR of its own).
        gone = mask & (IN_DELETE | IN_MOVED_FROM) and path in self.wds
        came = mask & (IN_CREATE | IN_MOVED_TO) and (mask & IN_ISDIR or os.path.isdir(path))
        # Unlike watchfiles, inotify says which paths are folders: no guessing from the name.
        if mask & IN_ISDIR or gone or came or is_job_file(name) or name in SETTINGS_NAMES:
            changed.add(path)  # first: if watching a new folder fails, it is still read
        if gone:
            self.remove_tree(path)
        if came:
            # The folder is read after its watch is in place, so nothing made inside is missed.
            self.add_tree(path)


def early_watches(jobs_dir: Path) -> Watches | None:
    """Watches opened before a first load (see `watch`); None where inotify cannot watch the
    directory now: the watcher tries again, or polls, when it starts."""
    try:
        return Watches(jobs_dir)
    except (InotifyUnavailable, OSError):
        return None


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


class Batches:
    """Changes collected on the loop, handed over after a quiet spell or a deadline."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: set[Path] = set()
        self._ready: set[Path] = set()
        self._quiet: asyncio.TimerHandle | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self.wake = asyncio.Event()

    def add(self, paths: set[Path]) -> None:
        self._pending |= paths
        if self._deadline is None:
            self._deadline = self._loop.call_later(DEBOUNCE_MS / 1000, self.flush)
        if self._quiet is not None:
            self._quiet.cancel()
        self._quiet = self._loop.call_later(QUIET_MS / 1000, self.flush)

    def flush(self) -> None:
        self.cancel()
        self._ready |= self._pending
        self._pending = set()
        self.wake.set()

    def cancel(self) -> None:
        for timer in (self._quiet, self._deadline):
            if timer is not None:
                timer.cancel()
        self._quiet = self._deadline = None

    def take(self) -> set[Path]:
        batch, self._ready = self._ready, set()
        self.wake.clear()
        return batch


async def _watch_inotify(
    jobs_dir: Path,
    stop: asyncio.Event,
    on_ready: Callable[[], None] | None,
    early: Watches | None = None,
) -> AsyncGenerator[set[Path], None]:
    loop = asyncio.get_running_loop()
    watches = early or Watches(jobs_dir)
    if early is not None:
        on_ready = None  # watching since before the caller read the directory: nothing missed
    batches = Batches(loop)
    failures: list[Exception] = []

    def readable() -> None:
        changed: set[Path] = set()
        try:
            watches.read_into(changed)
        except Exception as exc:  # raised from the generator below, never inside the loop
            failures.append(exc)
        if watches.root_gone and not failures:
            failures.append(OSError(f"{jobs_dir} was moved or removed"))
        if changed:
            batches.add(changed)
        if failures:
            loop.remove_reader(watches.fd)
            batches.flush()

    async def relay_stop() -> None:
        await stop.wait()
        batches.wake.set()

    stopping = asyncio.ensure_future(relay_stop())
    loop.add_reader(watches.fd, readable)
    try:
        if on_ready is not None:
            on_ready()
        while not stop.is_set():
            await batches.wake.wait()
            paths = batches.take()
            if paths and not stop.is_set():
                log.debug("changes: %s", sorted(map(str, paths)))
                yield paths
            if failures:
                raise failures[0]
    finally:
        loop.remove_reader(watches.fd)
        batches.cancel()
        stopping.cancel()
        watches.close()


# -- the fallback: watchfiles ------------------------------------------------------------------


async def _watch_polling(
    jobs_dir: Path, stop: asyncio.Event, on_ready: Callable[[], None] | None
) -> AsyncIterator[set[Path]]:
    # Lazy (memory, start-up): only the fallback loads watchfiles and its Rust extension.
    import watchfiles
    from watchfiles._rust_notify import RustNotify

    keep = JobFilesFilter(jobs_dir)
    with RustNotify([str(jobs_dir)], False, False, 300, True, True) as notify:
        if on_ready is not None:
            on_ready()
        while not stop.is_set():
            raw = await asyncio.to_thread(notify.watch, DEBOUNCE_MS, STEP_MS, RUST_TIMEOUT_MS, stop)
            if raw == "stop":
                return
            if isinstance(raw, str):  # "timeout" or "signal"
                continue
            paths = {Path(path) for change, path in raw if keep(watchfiles.Change(change), path)}
            if paths:
                log.debug("changes: %s", sorted(map(str, paths)))
                yield paths
