"""The jobs directory watcher against real files and the real kernel: what it reports, and when."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import selectors
import shutil
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kron.config import watch as watch_module
from kron.config.watch import (
    EVENT,
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_ISDIR,
    IN_Q_OVERFLOW,
    InotifyUnavailable,
    Watches,
    parse_events,
    watch,
)
from kron.engine import records

from .harness import DEADLINE_S, until_true

JOB = 'schedule = "0 * * * *"\ntimezone = "UTC"\ncommand = ["true"]\n'


class Follower:
    """`watch` running on the loop: every batch it yields, and a way to await them."""

    def __init__(self, jobs_dir: Path) -> None:
        self.jobs_dir = jobs_dir
        self.stop = asyncio.Event()
        self.ready = asyncio.Event()
        self.readies = 0
        self.batches: list[set[Path]] = []
        self._changed = asyncio.Event()
        self.task: asyncio.Future[None] | None = None

    def _on_ready(self) -> None:
        self.readies += 1
        self.ready.set()

    async def _run(self) -> None:
        async for paths in watch(self.jobs_dir, self.stop, on_ready=self._on_ready):
            self.batches.append(paths)
            self._changed.set()

    async def start(self) -> None:
        self.task = asyncio.ensure_future(self._run())
        await asyncio.wait_for(self.ready.wait(), DEADLINE_S)

    async def close(self) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, DEADLINE_S)

    @property
    def seen(self) -> set[Path]:
        return set().union(*self.batches)

    async def until_seen(self, *paths: Path) -> None:
        async def wait() -> None:
            while not set(paths) <= self.seen:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), DEADLINE_S)

    def forget(self) -> None:
        self.batches.clear()


def follow(jobs_dir: Path, body: Callable[[Follower], Awaitable[None]]) -> None:
    """Run `body` while `watch` follows `jobs_dir`; every watch is gone once it stopped."""

    async def main() -> None:
        follower = Follower(jobs_dir)
        await follower.start()
        try:
            await body(follower)
        finally:
            await follower.close()
        # watchfiles' own inotify instance (the fallback) closes from a thread of its own.
        await until_true(lambda: inotify_fds() == set())

    asyncio.run(asyncio.wait_for(main(), 2 * DEADLINE_S))


def inotify_fds() -> set[int]:
    """This process's open inotify instances, as the kernel lists them."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:inotify":
                found.add(int(name))
        except OSError:
            continue  # the fd listdir itself used, closed since
    return found


def kernel_watches() -> int:
    """How many watches this process's inotify instances hold, as the kernel counts them."""
    count = 0
    for fd in inotify_fds():
        info = Path(f"/proc/self/fdinfo/{fd}").read_text()
        count += sum(line.startswith("inotify wd:") for line in info.splitlines())
    return count


# -- what is reported ---------------------------------------------------------------------------


def test_a_new_file_is_reported(jobs_dir: Path) -> None:
    async def body(f: Follower) -> None:
        (jobs_dir / "a.toml").write_text(JOB)
        await f.until_seen(jobs_dir / "a.toml")
        assert f.seen == {jobs_dir / "a.toml"}

    follow(jobs_dir, body)


def test_an_edit_in_place_is_reported(jobs_dir: Path) -> None:
    path = jobs_dir / "a.yaml"
    path.write_text("schedule: '@daily'\n")

    async def body(f: Follower) -> None:
        with path.open("a") as file:
            file.write("timezone: UTC\n")
        await f.until_seen(path)
        assert f.seen == {path}

    follow(jobs_dir, body)


def test_an_atomic_rename_over_a_job_file_reports_the_job_file_only(jobs_dir: Path) -> None:
    path = jobs_dir / "a.toml"
    path.write_text(JOB)

    async def body(f: Follower) -> None:
        # As vim (`backupcopy=no`) and git write a file: a temporary, then a rename over it.
        temporary = jobs_dir / ".a.toml.tmp"
        temporary.write_text(JOB.replace("0 *", "5 *"))
        os.replace(temporary, path)
        await f.until_seen(path)
        assert f.seen == {path}

    follow(jobs_dir, body)


def test_sed_in_place_reports_the_job_file_not_its_temporary(jobs_dir: Path) -> None:
    path = jobs_dir / "a.toml"
    path.write_text(JOB)

    async def body(f: Follower) -> None:
        # `sed -i` writes a temporary with no suffix (sedXXXXXX), then renames it over the file.
        temporary = jobs_dir / "sedAb12Cd"
        temporary.write_text(JOB.replace("0 *", "5 *"))
        os.replace(temporary, path)
        await f.until_seen(path)
        assert f.seen == {path}

    follow(jobs_dir, body)


def test_a_deleted_file_is_reported(jobs_dir: Path) -> None:
    path = jobs_dir / "a.yml"
    path.write_text("schedule: '@daily'\n")

    async def body(f: Follower) -> None:
        path.unlink()
        await f.until_seen(path)
        assert f.seen == {path}

    follow(jobs_dir, body)


def test_a_chmod_is_reported_because_it_decides_trust(jobs_dir: Path) -> None:
    path = jobs_dir / "a.toml"
    path.write_text(JOB)
    path.chmod(0o644)

    async def body(f: Follower) -> None:
        path.chmod(0o666)
        await f.until_seen(path)
        assert f.seen == {path}

    follow(jobs_dir, body)


def test_kron_toml_is_reported(jobs_dir: Path) -> None:
    async def body(f: Follower) -> None:
        (jobs_dir / "kron.toml").write_text("[defaults]\n")
        await f.until_seen(jobs_dir / "kron.toml")
        assert f.seen == {jobs_dir / "kron.toml"}

    follow(jobs_dir, body)


def test_a_new_sub_folder_is_reported_then_watched(jobs_dir: Path) -> None:
    async def body(f: Follower) -> None:
        folder = jobs_dir / "team"
        folder.mkdir()
        await f.until_seen(folder)
        assert f.seen == {folder}
        f.forget()
        (folder / "x.toml").write_text(JOB)
        await f.until_seen(folder / "x.toml")
        assert f.seen == {folder / "x.toml"}
        assert kernel_watches() == 2

    follow(jobs_dir, body)


def test_a_folder_made_with_its_files_at_once_is_reported_as_the_folder(jobs_dir: Path) -> None:
    async def body(f: Follower) -> None:
        # The files may be made before the new folder's watch is in place: reading the
        # folder, which is reported, finds them.
        (jobs_dir / "a" / "b").mkdir(parents=True)
        (jobs_dir / "a" / "b" / "x.toml").write_text(JOB)
        await f.until_seen(jobs_dir / "a")
        await until_true(lambda: kernel_watches() == 3)
        f.forget()
        (jobs_dir / "a" / "b" / "y.toml").write_text(JOB)
        await f.until_seen(jobs_dir / "a" / "b" / "y.toml")

    follow(jobs_dir, body)


def test_a_removed_folder_is_reported_and_its_watches_dropped(jobs_dir: Path) -> None:
    (jobs_dir / "team" / "deep").mkdir(parents=True)
    (jobs_dir / "team" / "deep" / "x.toml").write_text(JOB)

    async def body(f: Follower) -> None:
        assert kernel_watches() == 3
        shutil.rmtree(jobs_dir / "team")
        await f.until_seen(jobs_dir / "team")
        assert kernel_watches() == 1

    follow(jobs_dir, body)


def test_a_renamed_folder_is_reported_under_both_names_and_followed_under_the_new_one(
    jobs_dir: Path,
) -> None:
    (jobs_dir / "old" / "deep").mkdir(parents=True)

    async def body(f: Follower) -> None:
        (jobs_dir / "old").rename(jobs_dir / "new")
        await f.until_seen(jobs_dir / "old", jobs_dir / "new")
        f.forget()
        (jobs_dir / "new" / "deep" / "x.toml").write_text(JOB)
        await f.until_seen(jobs_dir / "new" / "deep" / "x.toml")
        assert f.seen == {jobs_dir / "new" / "deep" / "x.toml"}
        assert kernel_watches() == 3

    follow(jobs_dir, body)


def test_a_folder_moved_out_is_no_longer_followed(jobs_dir: Path, tmp_path: Path) -> None:
    (jobs_dir / "team").mkdir()

    async def body(f: Follower) -> None:
        (jobs_dir / "team").rename(tmp_path / "elsewhere")
        await f.until_seen(jobs_dir / "team")
        assert kernel_watches() == 1
        f.forget()
        (tmp_path / "elsewhere" / "x.toml").write_text(JOB)
        (jobs_dir / "a.toml").write_text(JOB)  # a change here, to know the watcher caught up
        await f.until_seen(jobs_dir / "a.toml")
        assert f.seen == {jobs_dir / "a.toml"}

    follow(jobs_dir, body)


def test_a_chmod_of_a_folder_is_reported_as_the_folder(jobs_dir: Path) -> None:
    (jobs_dir / "team").mkdir(mode=0o755)

    async def body(f: Follower) -> None:
        (jobs_dir / "team").chmod(0o777)
        await f.until_seen(jobs_dir / "team")
        assert f.seen == {jobs_dir / "team"}

    follow(jobs_dir, body)


def test_a_chmod_of_the_jobs_directory_reports_the_jobs_directory(jobs_dir: Path) -> None:
    jobs_dir.chmod(0o755)

    async def body(f: Follower) -> None:
        os.chmod(jobs_dir, 0o700)
        await f.until_seen(jobs_dir)
        assert f.seen == {jobs_dir}

    follow(jobs_dir, body)


def test_a_symlinked_folder_is_followed_as_discover_reads_it(
    jobs_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "shared").mkdir()

    async def body(f: Follower) -> None:
        (jobs_dir / "shared").symlink_to(tmp_path / "shared")
        await f.until_seen(jobs_dir / "shared")
        f.forget()
        (tmp_path / "shared" / "x.toml").write_text(JOB)
        await f.until_seen(jobs_dir / "shared" / "x.toml")
        (jobs_dir / "shared").unlink()
        await until_true(lambda: kernel_watches() == 1)

    follow(jobs_dir, body)


def test_records_hidden_files_and_editor_temporaries_are_not_reported(jobs_dir: Path) -> None:
    (jobs_dir / "team").mkdir()

    async def body(f: Follower) -> None:
        for i in range(20):
            records.append(jobs_dir / "a.runs.jsonl", {"run_id": str(i)})
            records.append(jobs_dir / "team" / "x.runs.jsonl", {"run_id": str(i)})
        records.append(jobs_dir / ".kron" / "audit.jsonl", {"event": "x"})
        (jobs_dir / "a.toml~").write_text("editor backup")
        (jobs_dir / ".a.toml.swp").write_text("vim swap")
        (jobs_dir / "#a.toml#").write_text("emacs autosave")
        (jobs_dir / ".hidden").mkdir()
        (jobs_dir / ".hidden" / "x.toml").write_text(JOB)
        (jobs_dir / "b.toml").write_text(JOB)  # a real change, to know the watcher caught up
        await f.until_seen(jobs_dir / "b.toml")
        assert f.seen == {jobs_dir / "b.toml"}
        assert kernel_watches() == 2  # the jobs directory and team, not .kron or .hidden

    follow(jobs_dir, body)


# -- batches ------------------------------------------------------------------------------------


def test_a_burst_of_writes_is_one_batch(jobs_dir: Path) -> None:
    async def body(f: Follower) -> None:
        # Written without yielding to the loop: every event is queued before the first read.
        paths = {jobs_dir / f"burst-{i:03}.toml" for i in range(500)}
        for path in paths:
            path.write_text(JOB)
        await f.until_seen(*paths)
        assert f.batches == [paths]

    follow(jobs_dir, body)


def test_a_steady_stream_of_changes_is_cut_into_batches(jobs_dir: Path) -> None:
    async def body(f: Follower) -> None:
        # A change every 5 ms for a second never leaves the directory quiet: the deadline
        # after the first change hands over what came so far.
        paths = []
        for i in range(200):
            paths.append(jobs_dir / f"stream-{i:03}.toml")
            paths[-1].write_text(JOB)
            await asyncio.sleep(0.005)
        await f.until_seen(*paths)
        assert len(f.batches) >= 2
        assert f.seen == set(paths)

    follow(jobs_dir, body)


# -- the kernel's event buffer ------------------------------------------------------------------


def event(wd: int, mask: int, name: bytes = b"") -> bytes:
    """One struct inotify_event, its name padded with NULs as the kernel pads it."""
    padded = name + b"\0" * (16 - len(name) % 16) if name else b""
    return EVENT.pack(wd, mask, 0, len(padded)) + padded


def test_parse_events_splits_a_buffer_into_events() -> None:
    buffer = event(1, IN_CREATE, b"a.toml") + event(2, IN_CREATE | IN_ISDIR, b"team") + event(1, 4)
    assert list(parse_events(buffer)) == [
        (1, IN_CREATE, "a.toml"),
        (2, IN_CREATE | IN_ISDIR, "team"),
        (1, 4, ""),
    ]


def test_parse_events_keeps_undecodable_names_as_the_filesystem_does() -> None:
    [(_, _, name)] = parse_events(event(1, IN_CLOSE_WRITE, b"caf\xe9.toml"))
    assert os.fsencode(name) == b"caf\xe9.toml"


def test_an_overflow_reports_the_whole_directory_and_watches_everything_again(
    jobs_dir: Path,
) -> None:
    watches = Watches(jobs_dir)
    try:
        # Made while the queue "overflowed": the watcher never saw this folder come.
        (jobs_dir / "unseen").mkdir()
        changed: set[Path] = set()
        watches.handle(parse_events(event(-1, IN_Q_OVERFLOW)), changed)
        assert changed == {
            jobs_dir,
            jobs_dir / "kron.toml",
            jobs_dir / "kron.yaml",
            jobs_dir / "kron.yml",
        }
        assert set(watches.wds) == {jobs_dir, jobs_dir / "unseen"}
        assert kernel_watches() == 2
    finally:
        watches.close()
    assert inotify_fds() == set()


def test_events_for_a_dropped_watch_are_ignored(jobs_dir: Path) -> None:
    watches = Watches(jobs_dir)
    try:
        changed: set[Path] = set()
        watches.handle(parse_events(event(9999, IN_CLOSE_WRITE, b"a.toml")), changed)
        assert changed == set()
    finally:
        watches.close()


# -- stopping, failing, falling back ------------------------------------------------------------


def test_stop_ends_the_watch_and_closes_the_inotify_instance(jobs_dir: Path) -> None:
    async def main() -> None:
        f = Follower(jobs_dir)
        await f.start()
        assert len(inotify_fds()) == 1
        f.stop.set()
        assert f.task is not None
        await asyncio.wait_for(f.task, DEADLINE_S)
        assert inotify_fds() == set()

    asyncio.run(main())


def test_cancelling_the_consumer_closes_the_inotify_instance(jobs_dir: Path) -> None:
    async def main() -> None:
        f = Follower(jobs_dir)
        await f.start()
        assert f.task is not None
        f.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(f.task, DEADLINE_S)
        assert inotify_fds() == set()

    asyncio.run(main())


def test_a_moved_jobs_directory_is_reported_then_the_watch_fails(
    jobs_dir: Path, tmp_path: Path
) -> None:
    async def main() -> None:
        batches: list[set[Path]] = []
        ready = asyncio.Event()

        async def consume() -> None:
            async for paths in watch(jobs_dir, asyncio.Event(), on_ready=ready.set):
                batches.append(paths)

        consumer = asyncio.ensure_future(consume())
        await asyncio.wait_for(ready.wait(), DEADLINE_S)
        os.rename(jobs_dir, tmp_path / "moved")
        # The daemon retries on a failure: a directory put back in its place is then watched.
        with pytest.raises(OSError, match="was moved or removed"):
            await asyncio.wait_for(consumer, DEADLINE_S)
        assert batches == [{jobs_dir}]
        assert inotify_fds() == set()

    asyncio.run(main())


def test_a_missing_jobs_directory_is_an_error(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(FileNotFoundError):
            async for _ in watch(tmp_path / "missing", asyncio.Event()):
                pass
        assert inotify_fds() == set()

    asyncio.run(main())


def unavailable() -> Any:
    raise InotifyUnavailable("inotify is Linux only (this is test)")


def test_without_inotify_changes_still_arrive_by_polling(
    jobs_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(watch_module, "_libc", unavailable)

    async def body(f: Follower) -> None:
        (jobs_dir / "a.toml").write_text(JOB)
        await f.until_seen(jobs_dir / "a.toml")
        assert f.seen == {jobs_dir / "a.toml"}

    with caplog.at_level(logging.WARNING, logger="kron.watch"):
        follow(jobs_dir, body)
    assert [r.getMessage() for r in caplog.records if r.name == "kron.watch"] == [
        f"inotify is Linux only (this is test); watching {jobs_dir} by polling every 30 ms instead"
    ]


class WatchLimit:
    """The C library, but inotify_add_watch fails with ENOSPC once `allowed` watches were added."""

    def __init__(self, allowed: int) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.inotify_init1 = self._libc.inotify_init1
        self.inotify_rm_watch = self._libc.inotify_rm_watch
        self.allowed = allowed

    def inotify_add_watch(self, fd: int, path: bytes, mask: int) -> int:
        if self.allowed == 0:
            ctypes.set_errno(errno.ENOSPC)
            return -1
        self.allowed -= 1
        result: int = self._libc.inotify_add_watch(fd, path, mask)
        return result


def test_out_of_watches_at_start_falls_back_to_polling(
    jobs_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (jobs_dir / "team").mkdir()
    limit = WatchLimit(allowed=2)  # the jobs directory, added twice on the way in
    monkeypatch.setattr(watch_module, "_libc", lambda: limit)

    async def body(f: Follower) -> None:
        (jobs_dir / "team" / "x.toml").write_text(JOB)
        await f.until_seen(jobs_dir / "team" / "x.toml")

    with caplog.at_level(logging.WARNING, logger="kron.watch"):
        follow(jobs_dir, body)
    assert [r.getMessage() for r in caplog.records if r.name == "kron.watch"] == [
        f"cannot watch {jobs_dir / 'team'}: the inotify watch limit is reached "
        f"(sysctl fs.inotify.max_user_watches); watching {jobs_dir} by polling every 30 ms instead"
    ]


def test_out_of_watches_for_a_new_folder_changes_to_polling_and_reads_the_folder(
    jobs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = WatchLimit(allowed=2)
    monkeypatch.setattr(watch_module, "_libc", lambda: limit)

    async def body(f: Follower) -> None:
        assert len(inotify_fds()) == 1
        (jobs_dir / "team").mkdir()
        await f.until_seen(jobs_dir / "team")
        # on_ready again: the caller re-checks what changed while the watchers changed over.
        await until_true(lambda: f.readies == 2)
        (jobs_dir / "team" / "x.toml").write_text(JOB)
        await f.until_seen(jobs_dir / "team" / "x.toml")

    follow(jobs_dir, body)


# -- idle -----------------------------------------------------------------------------------------


class CountingSelector(selectors.DefaultSelector):  # type: ignore[valid-type,misc]
    """The event loop's selector, counting each time the loop wakes with a ready fd."""

    def __init__(self) -> None:
        super().__init__()
        self.wakes = 0
        self.selects = 0

    def select(self, timeout: float | None = None) -> list[Any]:
        ready: list[Any] = super().select(timeout)
        self.selects += 1
        self.wakes += bool(ready)
        return ready


def test_an_idle_watcher_never_wakes_the_loop_or_starts_a_thread(jobs_dir: Path) -> None:
    (jobs_dir / "team").mkdir()
    for i in range(100):
        (jobs_dir / f"j{i}.toml").write_text(JOB)
    selector = CountingSelector()

    async def main() -> None:
        f = Follower(jobs_dir)
        threads = threading.active_count()
        await f.start()
        await asyncio.sleep(0)  # let the start settle: nothing is pending after this
        before = (selector.selects, selector.wakes)
        await asyncio.sleep(1.0)  # a quiet second: the loop wakes for this timer only
        after = (selector.selects, selector.wakes)
        assert (after[0] - before[0], after[1] - before[1]) == (2, 0)
        assert threading.active_count() == threads
        assert f.batches == []
        await f.close()

    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selector)) as runner:
        runner.run(asyncio.wait_for(main(), DEADLINE_S))
