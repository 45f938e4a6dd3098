"""Run records on real files: whole lines under contention, tolerant readers, pruning that loses
nothing appended while it runs."""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from kron.engine import records
from kron.engine.records import (
    append,
    last_slot,
    prune,
    read,
    read_tail,
    records_path,
    unfinished_runs,
)
from kron.model.times import format_time, parse_time

PROJECT_ROOT = Path(records.__file__).resolve().parents[1]
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DEADLINE_S = 50


def started(run_id: str, slot: str = "2026-11-22T03:00:00Z", **extra: Any) -> dict[str, Any]:
    record = {"v": 1, "run_id": run_id, "job": "backups/nightly", "slot": slot}
    return record | {"outcome": "started"} | extra


def ended(
    run_id: str,
    slot: str = "2026-11-22T03:00:00Z",
    *,
    outcome: str = "succeeded",
    ended_at: str = "2026-11-22T11:00:00Z",
    **extra: Any,
) -> dict[str, Any]:
    record = {"v": 1, "run_id": run_id, "job": "backups/nightly", "slot": slot}
    return record | {"outcome": outcome, "ended_at": ended_at, "exit_code": 0} | extra


def one_run(path: Path, run_id: str, **kwargs: Any) -> None:
    append(path, started(run_id, kwargs.get("slot", "2026-11-22T03:00:00Z")))
    append(path, ended(run_id, **kwargs))


def line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def run_ids(path: Path) -> list[str]:
    return [r["run_id"] for r in read(path)]


def every_line_parses(path: Path) -> list[dict[str, Any]]:
    """Split the raw bytes ourselves, so a blank or broken line fails instead of being skipped."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    return [json.loads(part) for part in raw[:-1].split(b"\n")]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.d" / "nightly.runs.jsonl"


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


@contextmanager
def spawned(script: str, *argvs: tuple[object, ...]) -> Iterator[list[subprocess.Popen[str]]]:
    """Run one Python child per argv, talking over pipes; on the way out none is left behind."""
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, *map(str, argv)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for argv in argvs
    ]
    try:
        yield children
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
            child.wait(timeout=DEADLINE_S)
            for stream in (child.stdin, child.stdout):
                if stream is not None:
                    stream.close()


# -- where records live ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job_id", "records_dir", "expected"),
    [
        ("nightly", None, "jobs.d/nightly.runs.jsonl"),
        ("backups/nightly", None, "jobs.d/backups/nightly.runs.jsonl"),
        ("backups/db/nightly", "state", "state/backups/db/nightly.runs.jsonl"),
        ("nightly", "state", "state/nightly.runs.jsonl"),
    ],
)
def test_records_live_beside_the_job_file_or_mirrored_under_records_dir(
    tmp_path: Path, job_id: str, records_dir: str | None, expected: str
) -> None:
    where = None if records_dir is None else tmp_path / records_dir
    got = records_path(job_id, jobs_dir=tmp_path / "jobs.d", records_dir=where)
    assert got == tmp_path / expected


@pytest.mark.parametrize("job_id", ["../escape", "a//b", "/abs", "a/./b", "", "a\\b"])
def test_a_job_id_that_would_leave_the_folder_is_rejected(tmp_path: Path, job_id: str) -> None:
    with pytest.raises(ValueError, match="is not a relative path"):
        records_path(job_id, jobs_dir=tmp_path, records_dir=None)


def test_append_creates_the_nested_folders_under_records_dir(tmp_path: Path) -> None:
    target = records_path("backups/db/nightly", jobs_dir=tmp_path, records_dir=tmp_path / "state")
    append(target, ended("r1"))
    assert run_ids(target) == ["r1"]


# -- appending ---------------------------------------------------------------------------------


def test_append_writes_one_compact_utf8_line(path: Path) -> None:
    append(path, {"v": 1, "run_id": "r1", "stdout": "héllo ✓\n"})
    assert path.read_bytes() == '{"v":1,"run_id":"r1","stdout":"héllo ✓\\n"}\n'.encode()


def test_append_many_writes_whole_lines_in_one_write(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    append(path, ended("r0"))
    writes: list[bytes] = []
    real_write = os.write

    def counting_write(fd: int, data: bytes) -> int:
        writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(records.os, "write", counting_write)
    records.append_many(path, [ended("r1"), ended("r2"), ended("r3")])
    records.append_many(path, [])
    assert len(writes) == 1
    assert run_ids(path) == ["r0", "r1", "r2", "r3"]


def test_append_creates_the_file_readable_by_its_group_only(path: Path, umask_022: None) -> None:
    append(path, ended("r1"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_large_record_is_written_with_a_single_write(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    append(path, ended("r0"))
    sizes: list[int] = []
    real_write = os.write

    def spy(fd: int, data: bytes | memoryview) -> int:
        sizes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", spy)
    append(path, ended("r1", stdout="x" * 300_000))
    assert sizes == [len(line(ended("r1", stdout="x" * 300_000)))]


WRITER = """
import sys, threading
from pathlib import Path
from kron.engine.records import append

path, proc, threads, per_thread, size = Path(sys.argv[1]), *map(int, sys.argv[2:])
go = threading.Barrier(threads + 1, timeout=50)

def stdout(writer, i):
    unit = f"{writer}/{i}:é✓·"
    return (unit * (size // len(unit.encode()) + 1))[:size]

def work(t):
    go.wait()
    for i in range(per_thread):
        writer = f"{proc}-{t}"
        append(path, {"v": 1, "run_id": f"{writer}-{i}", "outcome": "succeeded",
                      "stdout": stdout(writer, i)})

workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
for w in workers:
    w.start()
print("ready", flush=True)
sys.stdin.readline()
go.wait()
for w in workers:
    w.join()
"""


def test_two_hundred_writers_appending_large_records_at_once_never_interleave(
    path: Path,
) -> None:
    # 8 processes x 25 threads, each record far larger than PIPE_BUF (4 KiB) and a page.
    procs, threads, per_thread, size = 8, 25, 3, 100 * 1024
    argvs = [(path, p, threads, per_thread, size) for p in range(procs)]
    with spawned(WRITER, *argvs) as children:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
        for child in children:  # all 200 threads sit at the barrier: release them together
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.close()
        for child in children:
            assert child.wait(timeout=DEADLINE_S) == 0
    lines = every_line_parses(path)
    assert len(lines) == procs * threads * per_thread
    expected_ids = {
        f"{p}-{t}-{i}" for p in range(procs) for t in range(threads) for i in range(per_thread)
    }
    assert {r["run_id"] for r in lines} == expected_ids
    for record in lines:
        writer, i = record["run_id"].rsplit("-", 1)
        unit = f"{writer}/{i}:é✓·"
        assert record["stdout"] == (unit * (size // len(unit.encode()) + 1))[:size]


def test_an_append_waiting_while_pruning_swaps_the_file_reopens_and_lands_in_the_new_file(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_run(path, "old")
    real_flock = fcntl.flock
    pruner = os.open(path, os.O_RDONLY)
    real_flock(pruner, fcntl.LOCK_EX)  # what prune holds while it swaps the file
    old_inode = os.fstat(pruner).st_ino
    waiting = threading.Event()

    def flock(fd: int, operation: int) -> None:
        if os.fstat(fd).st_ino == old_inode:
            waiting.set()  # the appender has the old file open and is about to wait for it
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    appender = threading.Thread(target=append, args=(path, ended("late")))
    appender.start()
    try:
        assert waiting.wait(timeout=DEADLINE_S)
        replacement = path.with_name("swap.tmp")
        replacement.write_bytes(line(ended("kept")))
        os.replace(replacement, path)
    finally:
        os.close(pruner)  # releases the lock
        appender.join(timeout=DEADLINE_S)
    assert not appender.is_alive()
    assert run_ids(path) == ["kept", "late"]


def test_an_append_whose_file_was_deleted_while_it_waited_creates_it_again(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_run(path, "old")
    real_flock = fcntl.flock
    removed = threading.Event()

    def flock(fd: int, operation: int) -> None:
        if not removed.is_set():
            path.unlink()  # someone removed the records while the append waited for the lock
            removed.set()
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    append(path, ended("after"))
    assert run_ids(path) == ["after"]


def test_an_append_that_finds_another_append_half_written_waits_for_it(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = line(ended("first"))
    path.parent.mkdir(parents=True)
    other = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    fcntl.flock(other, fcntl.LOCK_SH)
    os.write(other, first[:40])  # an appender part-way through one large write
    real_flock = fcntl.flock
    asks_exclusive = threading.Event()

    def flock(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_EX:
            asks_exclusive.set()
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    appender = threading.Thread(target=append, args=(path, ended("second")))
    appender.start()
    try:
        assert asks_exclusive.wait(timeout=DEADLINE_S)
        os.write(other, first[40:])
    finally:
        os.close(other)
        appender.join(timeout=DEADLINE_S)
    assert not appender.is_alive()
    assert path.read_bytes() == first + line(ended("second"))


def test_append_through_a_dangling_symlink_fails_instead_of_looping(tmp_path: Path) -> None:
    link = tmp_path / "nightly.runs.jsonl"
    link.symlink_to(tmp_path / "gone" / "nightly.runs.jsonl")
    with pytest.raises(FileNotFoundError):
        append(link, ended("r1"))


# -- reading -------------------------------------------------------------------------------------


def test_a_missing_file_reads_as_no_records(path: Path) -> None:
    assert list(read(path)) == []
    assert read_tail(path) == []
    assert last_slot(path) is None
    assert unfinished_runs(path) == []


def test_a_torn_last_line_is_skipped_by_every_reader(path: Path) -> None:
    one_run(path, "r1", slot="2026-11-22T03:00:00Z")
    append(path, started("r2", slot="2026-11-23T03:00:00Z"))
    torn = line(ended("r2", slot="2026-11-23T03:00:00Z"))
    with path.open("ab") as f:
        f.write(torn[: len(torn) // 2])  # the crash came mid-write
    assert run_ids(path) == ["r1", "r1", "r2"]
    assert [r["run_id"] for r in read_tail(path)] == ["r1", "r1", "r2"]
    assert last_slot(path) == datetime(2026, 11, 23, 3, tzinfo=UTC)
    assert unfinished_runs(path) == [started("r2", slot="2026-11-23T03:00:00Z")]


def test_garbage_lines_in_the_middle_are_skipped(path: Path) -> None:
    append(path, ended("r1"))
    with path.open("ab") as f:
        f.write(b"not json\n[1, 2]\n\n\xff\xfe{}\n")
    append(path, ended("r2"))
    assert run_ids(path) == ["r1", "r2"]
    assert [r["run_id"] for r in read_tail(path)] == ["r1", "r2"]


def test_an_append_after_a_torn_line_starts_a_line_of_its_own(path: Path) -> None:
    append(path, ended("r1"))
    with path.open("ab") as f:
        f.write(b'{"v":1,"run_id":"r2","outc')
    append(path, ended("r3"))
    assert run_ids(path) == ["r1", "r3"]
    assert path.read_bytes().endswith(b'"outc\n' + line(ended("r3")))


def test_read_tail_returns_only_records_whose_whole_line_is_in_the_window(path: Path) -> None:
    for run_id in ("r1", "r2", "r3", "r4"):
        append(path, ended(run_id))
    size = len(line(ended("r1")))
    assert [r["run_id"] for r in read_tail(path, max_bytes=2 * size + 5)] == ["r3", "r4"]
    assert [r["run_id"] for r in read_tail(path, max_bytes=2 * size)] == ["r3", "r4"]
    assert [r["run_id"] for r in read_tail(path, max_bytes=2 * size - 1)] == ["r4"]
    assert [r["run_id"] for r in read_tail(path, max_bytes=10**9)] == ["r1", "r2", "r3", "r4"]


def test_read_tail_assembles_lines_longer_than_its_read_block(path: Path) -> None:
    for run_id in ("r1", "r2", "r3"):
        append(path, ended(run_id, stdout=run_id * 100_000))
    tail = read_tail(path, max_bytes=10**9)
    assert [(r["run_id"], len(r["stdout"])) for r in tail] == [
        ("r1", 200_000),
        ("r2", 200_000),
        ("r3", 200_000),
    ]


def test_last_slot_is_the_newest_slot_of_started_and_terminal_lines(path: Path) -> None:
    one_run(path, "r1", slot="2026-11-22T03:00:00Z")
    append(path, started("r2", slot="2026-11-23T03:00:00+01:00"))  # a newer slot, still running
    append(path, ended("r0", slot="2026-11-21T03:00:00Z"))  # catch-up of an older slot ends
    append(path, {"v": 1, "run_id": "x", "outcome": "queued", "slot": "2030-01-01T00:00:00Z"})
    append(path, {"v": 1, "run_id": "y", "outcome": "failed"})
    append(path, {"v": 1, "run_id": "z", "outcome": "failed", "slot": "tomorrow"})
    assert last_slot(path) == datetime(2026, 11, 23, 2, tzinfo=UTC)


def test_last_slot_looks_past_the_window_when_the_last_record_is_larger(path: Path) -> None:
    one_run(path, "r1", slot="2026-11-22T03:00:00Z", stdout="x" * 300_000)
    assert read_tail(path, max_bytes=1000) == []
    assert last_slot(path, max_bytes=1000) == datetime(2026, 11, 22, 3, tzinfo=UTC)


def test_unfinished_runs_are_started_lines_without_a_later_terminal_line(path: Path) -> None:
    one_run(path, "done")
    append(path, started("crashed", slot="2026-11-22T04:00:00Z"))
    append(path, started("retried", slot="2026-11-22T05:00:00Z"))
    append(path, ended("retried", slot="2026-11-22T05:00:00Z", outcome="failed", attempt=1))
    append(path, started("retried", slot="2026-11-22T05:00:00Z", attempt=2))
    append(path, ended("skipped", outcome="skipped"))
    assert unfinished_runs(path) == [
        started("crashed", slot="2026-11-22T04:00:00Z"),
        started("retried", slot="2026-11-22T05:00:00Z", attempt=2),
    ]


def test_unfinished_runs_looks_only_at_the_tail(path: Path) -> None:
    append(path, started("early"))
    one_run(path, "later", stdout="x" * 1000)
    later_bytes = path.stat().st_size - len(line(started("early")))
    assert unfinished_runs(path, max_bytes=later_bytes + 1) == []
    assert unfinished_runs(path, max_bytes=10**6) == [started("early")]


# -- pruning -------------------------------------------------------------------------------------


def test_prune_keeps_the_newest_runs_counting_a_started_and_terminal_line_as_one(
    path: Path,
) -> None:
    for i in range(5):
        one_run(path, f"r{i}")
    assert prune(path, keep=3, max_age=None, now=NOW) == 4
    assert run_ids(path) == ["r2", "r2", "r3", "r3", "r4", "r4"]


def test_prune_ranks_runs_by_their_latest_line(path: Path) -> None:
    append(path, started("long"))
    one_run(path, "short")
    append(path, ended("long"))
    assert prune(path, keep=1, max_age=None, now=NOW) == 2
    assert run_ids(path) == ["long", "long"]


def test_prune_by_age_drops_runs_that_ended_before_the_cutoff(path: Path) -> None:
    one_run(path, "old", ended_at="2026-11-20T11:59:59Z")
    one_run(path, "edge", ended_at="2026-11-21T12:00:00+00:00")
    one_run(path, "new", ended_at="2026-11-22T11:00:00Z")
    assert prune(path, keep=None, max_age=timedelta(days=1), now=NOW) == 2
    assert run_ids(path) == ["edge", "edge", "new", "new"]


def test_prune_counts_each_record_without_a_run_id_as_a_run_of_its_own(path: Path) -> None:
    append(path, {"v": 1, "outcome": "missed", "slot": "2026-11-20T03:00:00Z"})
    append(path, {"v": 1, "outcome": "missed", "slot": "2026-11-21T03:00:00Z"})
    append(path, {"v": 1, "outcome": "missed", "slot": "2026-11-22T03:00:00Z"})
    assert prune(path, keep=2, max_age=None, now=NOW) == 1
    assert [r["slot"] for r in read(path)] == ["2026-11-21T03:00:00Z", "2026-11-22T03:00:00Z"]


def test_prune_never_drops_the_newest_run_however_old(path: Path) -> None:
    one_run(path, "older", ended_at="2020-01-01T00:00:00Z")
    one_run(path, "newest", ended_at="2020-01-02T00:00:00Z")
    assert prune(path, keep=None, max_age=timedelta(days=30), now=NOW) == 2
    assert run_ids(path) == ["newest", "newest"]
    assert last_slot(path) == datetime(2026, 11, 22, 3, tzinfo=UTC)


def test_prune_never_drops_the_started_line_of_a_run_still_going(path: Path) -> None:
    append(path, started("running", slot="2026-01-01T00:00:00Z"))
    for i in range(3):
        one_run(path, f"r{i}", ended_at="2026-01-01T01:00:00Z")
    assert prune(path, keep=1, max_age=timedelta(hours=1), now=NOW) == 4
    assert run_ids(path) == ["running", "r2", "r2"]
    assert unfinished_runs(path) == [started("running", slot="2026-01-01T00:00:00Z")]


def test_prune_with_nothing_due_leaves_the_file_untouched(path: Path) -> None:
    for i in range(3):
        one_run(path, f"r{i}")
    with path.open("ab") as f:
        f.write(b"garbage\n")
    before = path.stat()
    content = path.read_bytes()
    assert prune(path, keep=3, max_age=timedelta(days=1), now=NOW) == 0
    assert prune(path, keep=10, max_age=None, now=NOW) == 0
    assert prune(path, keep=None, max_age=None, now=NOW) == 0
    assert path.stat().st_ino == before.st_ino
    assert path.read_bytes() == content


def test_prune_of_a_missing_file_removes_nothing(path: Path) -> None:
    assert prune(path, keep=1, max_age=timedelta(days=1), now=NOW) == 0
    assert not path.exists()


def test_prune_refuses_to_keep_no_runs(path: Path) -> None:
    with pytest.raises(ValueError, match="keep must be at least 1, not 0"):
        prune(path, keep=0, max_age=None, now=NOW)


def test_a_rewrite_drops_garbage_and_keeps_mode_torn_tail_and_no_temporary_file(
    path: Path,
) -> None:
    for i in range(3):
        one_run(path, f"r{i}")
    with path.open("ab") as f:
        f.write(b"garbage\n")
    path.chmod(0o600)
    with path.open("ab") as f:
        f.write(b'{"v":1,"run_id":"torn"')
    assert prune(path, keep=1, max_age=None, now=NOW) == 5
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == line(started("r2")) + line(ended("r2")) + b'{"v":1,"run_id":"torn"'
    assert sorted(p.name for p in path.parent.iterdir()) == ["nightly.runs.jsonl"]


def test_prune_gives_way_when_another_prune_swapped_the_file_first(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        one_run(path, f"r{i}")
    real_flock = fcntl.flock

    def flock(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_EX:  # the other prune wins the race to the lock
            replacement = path.with_name("other.tmp")
            replacement.write_bytes(line(ended("theirs")))
            os.replace(replacement, path)
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    assert prune(path, keep=1, max_age=None, now=NOW) == 0
    assert run_ids(path) == ["theirs"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["nightly.runs.jsonl"]


def test_a_failed_prune_leaves_the_file_and_no_temporary_file(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        one_run(path, f"r{i}")
    content = path.read_bytes()

    def replace(src: str, dst: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        prune(path, keep=1, max_age=None, now=NOW)
    assert path.read_bytes() == content
    assert sorted(p.name for p in path.parent.iterdir()) == ["nightly.runs.jsonl"]


APPENDER = """
import sys
from pathlib import Path
from kron.engine.records import append

path = Path(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
for i in range(1000):
    if i == 500:
        print("half", flush=True)
        sys.stdin.readline()
    append(path, {"v": 1, "run_id": f"expired-{i}", "outcome": "succeeded",
                  "ended_at": "2020-01-01T00:00:00Z"})
    append(path, {"v": 1, "run_id": f"new-{i}", "outcome": "succeeded",
                  "ended_at": "2026-11-22T11:59:00Z"})
"""


def test_prune_while_another_process_appends_loses_no_appended_line(path: Path) -> None:
    for i in range(50):
        one_run(path, f"old-{i}", ended_at="2020-01-01T00:00:00Z")
    for i in range(10):
        one_run(path, f"kept-{i}")
    append(path, started("running", slot="2019-01-01T00:00:00Z"))
    policy: dict[str, Any] = {"keep": None, "max_age": timedelta(days=1), "now": NOW}
    half = threading.Event()
    lines_read: list[str] = []
    with spawned(APPENDER, (path,)) as (child,):
        assert child.stdin is not None
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"

        def watch() -> None:
            assert child.stdout is not None
            for text in child.stdout:
                lines_read.append(text)
                if text == "half\n":
                    half.set()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        child.stdin.write("go\n")
        child.stdin.flush()
        removed = 0
        while not half.is_set() and child.poll() is None:  # prune while the first half lands
            removed += prune(path, **policy)
        assert half.wait(timeout=DEADLINE_S)
        removed += prune(path, **policy)  # the child is paused: this one has expired runs to drop
        child.stdin.write("more\n")
        child.stdin.close()
        while child.poll() is None:
            removed += prune(path, **policy)
        assert child.wait(timeout=DEADLINE_S) == 0
        watcher.join(timeout=DEADLINE_S)
    removed += prune(path, **policy)
    assert lines_read == ["half\n"]
    assert removed == 100 + 1000  # every old line and every expired append, each exactly once
    expected = {f"kept-{i}" for i in range(10)} | {"running"} | {f"new-{i}" for i in range(1000)}
    lines = every_line_parses(path)
    assert len(lines) == 10 * 2 + 1 + 1000
    assert {r["run_id"] for r in lines} == expected
    assert [r["run_id"] for r in lines if r["run_id"].startswith("new-")] == [
        f"new-{i}" for i in range(1000)
    ]


# -- time ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T03:00:00Z", datetime(2026, 11, 22, 3, tzinfo=UTC)),
        ("2026-11-22t03:00:00z", datetime(2026, 11, 22, 3, tzinfo=UTC)),
        ("2026-11-22 03:00:00Z", datetime(2026, 11, 22, 3, tzinfo=UTC)),
        ("2026-11-22T04:30:00+01:30", datetime(2026, 11, 22, 3, tzinfo=UTC)),
        ("2026-11-21T22:00:00-05:00", datetime(2026, 11, 22, 3, tzinfo=UTC)),
        ("2026-11-22T03:00:00.25Z", datetime(2026, 11, 22, 3, 0, 0, 250000, tzinfo=UTC)),
        ("2026-11-22T03:00:00.123456789Z", datetime(2026, 11, 22, 3, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_parse_time_reads_rfc3339_into_aware_utc(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-22T03:00:00",  # no offset: ambiguous
        "2026-11-22",
        "20261122T030000Z",
        "2026-11-22T03:00Z",
        "2026-13-22T03:00:00Z",
        "2026-11-22T03:00:60Z",
        "2026-11-22T03:00:00+24:00",
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        " 2026-11-22T03:00:00Z",
    ],
)
def test_parse_time_rejects_what_is_not_rfc3339(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC 3339|offset|out of range|must be in"):
        parse_time(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2026, 11, 22, 3, tzinfo=UTC), "2026-11-22T03:00:00Z"),
        (datetime(2026, 11, 22, 4, tzinfo=timezone(timedelta(hours=1))), "2026-11-22T03:00:00Z"),
        (datetime(2026, 11, 22, 3, 0, 0, 250000, tzinfo=UTC), "2026-11-22T03:00:00.250000Z"),
        (datetime(2026, 11, 22, 3, 0, 0, 1, tzinfo=UTC), "2026-11-22T03:00:00.000001Z"),
    ],
)
def test_format_time_writes_utc_with_z_and_microseconds_only_when_present(
    value: datetime, expected: str
) -> None:
    assert format_time(value) == expected
    assert parse_time(expected) == value


def test_format_time_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="is naive"):
        format_time(datetime(2026, 11, 22, 3))  # noqa: DTZ001 - the naive value is the point


def test_a_run_with_a_delivery_note_is_pruned_like_any_other(tmp_path: Path) -> None:
    path = tmp_path / "j.runs.jsonl"
    for i in range(5):
        run_id = f"r{i}"
        records.append(
            path, {"run_id": run_id, "outcome": "started", "slot": f"2026-01-0{i + 1}T00:00:00Z"}
        )
        records.append(
            path,
            {
                "run_id": run_id,
                "outcome": "failed",
                "slot": f"2026-01-0{i + 1}T00:00:00Z",
                "ended_at": f"2026-01-0{i + 1}T00:00:01Z",
            },
        )
        records.append(path, {"run_id": run_id, "delivery": {"target": "slack", "ok": True}})
    removed = records.prune(path, keep=2, max_age=None, now=datetime(2026, 2, 1, tzinfo=UTC))
    assert removed == 9
    assert sorted({r["run_id"] for r in records.read(path)}) == ["r3", "r4"]
