"""Run records: one JSON object per line, appended whole, read back tolerantly, pruned in place.

Appends and pruning share one protocol. An appender takes a shared `flock` on its descriptor and
checks that the path still names the file it opened; pruning rewrites the file beside itself and
swaps it in with `os.replace` while holding the exclusive lock, so a waiting appender finds a new
inode and reopens. Appenders need not exclude each other: one `write` with `O_APPEND` to a local
regular file is atomic with respect to other writes whatever its size (POSIX 2.9.7; Linux holds
the inode lock for the whole write). Over NFS it is not, so records belong on a local disk.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import attrgetter
from pathlib import Path
from typing import IO, Any

from kron.model.run import Outcome
from kron.model.times import parse_time

__all__ = [
    "RECORD_SUFFIX",
    "TAIL_BYTES",
    "append",
    "append_many",
    "last_slot",
    "last_terminal",
    "prune",
    "read",
    "read_reversed",
    "read_tail",
    "record_files",
    "records_path",
    "unfinished_runs",
]

RECORD_SUFFIX = ".runs.jsonl"
TAIL_BYTES = 256 * 1024
_STARTED = Outcome.STARTED.value
_TERMINAL = frozenset(o.value for o in Outcome if o.is_terminal)

_log = logging.getLogger("kron.records")
_FILE_MODE = 0o640
_DIR_MODE = 0o750
_BLOCK = 64 * 1024


def records_path(job_id: str, *, jobs_dir: Path, records_dir: Path | None) -> Path:
    """Return where a job's records live: beside its file, or mirrored under `records_dir`.

    Args:
        job_id: The job's id, `/`-separated (`backups/nightly`).
        jobs_dir: The jobs directory the id is relative to.
        records_dir: The `records_dir` setting, or None to write beside the job file.

    Returns:
        `<base>/<job_id>.runs.jsonl`; `append` creates missing folders.
    """
    parts = job_id.split("/")
    if any(part in ("", ".", "..") for part in parts) or "\\" in job_id or "\0" in job_id:
        raise ValueError(f"job id {job_id!r} is not a relative path of named parts")
    base = jobs_dir if records_dir is None else records_dir
    return base.joinpath(*parts[:-1], parts[-1] + RECORD_SUFFIX)


def append(path: Path, record: Mapping[str, Any]) -> None:
    """Append one record as one line with one `write`, creating the file (and its folders).

    Args:
        path: The records file.
        record: A JSON-serialisable mapping.
    """
    _append_lines(path, _line(record))


def append_many(path: Path, many: Iterable[Mapping[str, Any]]) -> None:
    """Append records as whole lines with one `write`: a batch costs one open, not one each."""
    data = b"".join(_line(record) for record in many)
    if data:
        _append_lines(path, data)


# One encoder for every line: json.dumps with options builds a new one per call, which cost
# more than the encoding of a short record (10,000 audit lines at start: 60 ms less).
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _line(record: Mapping[str, Any]) -> bytes:
    return (_encode(record) + "\n").encode("utf-8")


def _append_lines(path: Path, data: bytes) -> None:
    made_folder = False
    while True:
        try:  # read access too: the last byte tells whether a crash left a torn line
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        except FileNotFoundError:
            if made_folder:
                raise
            path.parent.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            made_folder = True
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # Python retries flock and write on EINTR (PEP 475)
            opened = _still_named(fd, path)
            if opened is None:
                continue  # pruning swapped the file while we waited for the lock
            if _ends_mid_line(fd, opened):
                # A crash left a torn line, or another append is half-way through its write.
                # Only the exclusive lock tells them apart: it waits for appends in flight.
                fcntl.flock(fd, fcntl.LOCK_EX)
                opened = _still_named(fd, path)
                if opened is None:
                    continue
                if _ends_mid_line(fd, opened):
                    data = b"\n" + data  # never glue a record to a torn one
            _write_all(fd, data)
            return
        finally:
            os.close(fd)


def _ends_mid_line(fd: int, status: os.stat_result) -> bool:
    return status.st_size > 0 and os.pread(fd, 1, status.st_size - 1) != b"\n"


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte, resuming after a short write; on failure, leave no partial line.

    On a local file a write comes up short only when the disk fills or the process is killed.
    A full disk must not leave half a record that readers would skip and later appends would
    follow: what was written of `data` is cut off again before the error is raised.
    """
    view = memoryview(data)
    start = os.fstat(fd).st_size
    try:
        while view:
            written = os.write(fd, view)
            if written == 0:
                raise OSError(errno.ENOSPC, f"write to descriptor {fd} made no progress")
            view = view[written:]
    except OSError:
        _cut_back(fd, start, len(data) - len(view))
        raise


def _cut_back(fd: int, start: int, written: int) -> None:
    """Remove the `written` bytes a failed append left after `start`, if nobody wrote since."""
    if not written:
        return
    fcntl.flock(fd, fcntl.LOCK_EX)  # appends in flight finish first
    if os.fstat(fd).st_size == start + written:
        os.ftruncate(fd, start)
    else:  # pragma: no cover - another appender followed: a line break keeps its line whole
        os.write(fd, b"\n")


def read(path: Path) -> Iterator[dict[str, Any]]:
    """Yield every valid record, oldest first; torn and garbage lines are skipped."""
    with _open_or_none(path) as f:
        for raw in f or ():
            record = _parse(raw)
            if record is not None:
                yield record


def read_reversed(path: Path) -> Iterator[dict[str, Any]]:
    """Yield every valid record, newest first (reading the file from its end)."""
    for _, raw in _backwards(path):
        record = _parse(raw)
        if record is not None:
            yield record


def read_tail(path: Path, max_bytes: int = TAIL_BYTES) -> list[dict[str, Any]]:
    """Return the valid records whose whole line lies within the last `max_bytes`, oldest first."""
    found: list[dict[str, Any]] = []
    for distance, raw in _backwards(path):
        if distance > max_bytes:
            break
        record = _parse(raw)
        if record is not None:
            found.append(record)
    found.reverse()
    return found


def last_slot(path: Path, max_bytes: int = TAIL_BYTES) -> datetime | None:
    """Return the newest `slot` of a started or terminal record, looking at the tail.

    The search goes past `max_bytes` until it finds a slot, so a last record larger than the window
    (big output) never makes a recorded slot look unrecorded.
    """
    newest: datetime | None = None
    for distance, raw in _backwards(path):
        if distance > max_bytes and newest is not None:
            break
        record = _parse(raw)
        outcome = record.get("outcome") if record else None
        if record is None or (outcome != _STARTED and outcome not in _TERMINAL):
            continue
        slot = _time_field(record, "slot")
        if slot is not None and (newest is None or slot > newest):
            newest = slot
    return newest


def last_terminal(
    path: Path, max_bytes: int = TAIL_BYTES, *, outcome: str | None = None
) -> dict[str, Any] | None:
    """Return the newest terminal record in the tail (with `outcome`, if given), or None."""
    for distance, raw in _backwards(path):
        if distance > max_bytes:
            break
        record = _parse(raw)
        found = record.get("outcome") if record else None
        if record is not None and found in _TERMINAL and outcome in (None, found):
            if record.get("late"):
                continue  # kept, but never a run's result (cluster mode: a lost lease)
            return record
    return None


def unfinished_runs(path: Path, max_bytes: int = TAIL_BYTES) -> list[dict[str, Any]]:
    """Return started lines in the tail that no later terminal line of their run follows."""
    found: list[dict[str, Any]] = []
    ended: set[str] = set()
    for distance, raw in _backwards(path):
        if distance > max_bytes:
            break
        record = _parse(raw)
        run_id = record.get("run_id") if record else None
        if record is None or not isinstance(run_id, str):
            continue
        outcome = record.get("outcome")
        if outcome in _TERMINAL:
            ended.add(run_id)
        elif outcome == _STARTED and run_id not in ended:
            found.append(record)
            ended.add(run_id)  # report a run once even if its start was written twice
    found.reverse()
    return found


def prune(path: Path, *, keep: int | None, max_age: timedelta | None, now: datetime) -> int:
    """Drop old runs while appenders keep writing; the newest run and running runs always stay.

    A run is every line with its `run_id` (a started line and its terminal line). Runs are ranked
    by their latest line. Unreadable lines go too when the file is rewritten anyway.

    Args:
        path: The records file.
        keep: How many runs to keep at most (at least 1), or None for no limit.
        max_age: Drop runs whose terminal line's `ended_at` is before `now - max_age`.
        now: The current time (aware).

    Returns:
        How many lines were removed; 0 when nothing was due, without rewriting the file.
    """
    if keep is not None and keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    if keep is None and max_age is None:
        return 0
    cutoff = None if max_age is None else now - max_age
    with _open_or_none(path) as f:
        if f is None:
            return 0
        if cutoff is None and keep is not None and _count_lines(f) <= keep:
            return 0  # fewer lines than runs to keep: nothing can go, and counting is cheap
        end, kept, dropped_runs = _plan(f, keep, cutoff)
        if not dropped_runs:
            return 0  # unreadable lines alone are not worth a rewrite
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with open(fd, "wb", buffering=1024 * 1024) as out:
                # Copy the survivors and sync them first: appenders wait only for the tail.
                f.seek(0)
                for keep_line in kept:
                    raw = f.readline()
                    if keep_line:
                        out.write(raw)
                status = os.fstat(f.fileno())
                os.fchmod(fd, status.st_mode & 0o7777)
                with suppress(OSError):  # only root may give the file back to its owner
                    os.fchown(fd, status.st_uid, status.st_gid)
                out.flush()
                os.fsync(fd)
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
                if _still_named(f.fileno(), path) is None:
                    os.unlink(tmp)
                    return 0  # another prune got there first
                f.seek(end)
                shutil.copyfileobj(f, out)  # appended since we read; appenders now wait for us
                out.flush()
                os.fsync(fd)
            os.replace(tmp, path)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    # Closing `f` released the lock: appenders waiting on the old file find the new one.
    _fsync_dir(path.parent)
    removed = len(kept) - sum(kept)
    _log.debug("pruned %d lines from %s", removed, path)
    return removed


@dataclass(slots=True)
class _Run:
    last_line: int = 0
    running: bool = False  # set by its run lines; notes alone never keep a run
    ended_at: datetime | None = None
    dropped: bool = False


def _plan(f: IO[bytes], keep: int | None, cutoff: datetime | None) -> tuple[int, bytearray, int]:
    """Read whole lines once; return where they end, a keep flag per line and runs dropped."""
    line_runs: list[_Run | None] = []
    runs: list[_Run] = []
    by_id: dict[str, _Run] = {}
    end = 0
    f.seek(0)
    for raw in f:
        if not raw.endswith(b"\n"):
            break  # an append in flight (or a torn tail): copied verbatim under the lock
        end += len(raw)
        record = _parse(raw)
        if record is None:
            line_runs.append(None)
            continue
        run_id = record.get("run_id")
        run = by_id.get(run_id) if isinstance(run_id, str) else None
        if run is None:
            run = _Run()
            runs.append(run)
            if isinstance(run_id, str):
                by_id[run_id] = run
        run.last_line = len(line_runs)
        line_runs.append(run)
        if "outcome" not in record:
            continue  # a note on the run (a delivery): it neither starts nor ends it
        run.running = record.get("outcome") not in _TERMINAL
        if cutoff is not None and not run.running:
            run.ended_at = _time_field(record, "ended_at") or _time_field(record, "slot")
    runs.sort(key=attrgetter("last_line"), reverse=True)
    for rank, run in enumerate(runs[1:], start=1):  # the newest run stays, whatever its age
        too_old = cutoff is not None and run.ended_at is not None and run.ended_at < cutoff
        run.dropped = not run.running and ((keep is not None and rank >= keep) or too_old)
    kept = bytearray(run is not None and not run.dropped for run in line_runs)
    return end, kept, sum(run.dropped for run in runs)


def _count_lines(f: IO[bytes]) -> int:
    f.seek(0)
    return sum(block.count(b"\n") for block in iter(lambda: f.read(1024 * 1024), b""))


def _still_named(fd: int, path: Path) -> os.stat_result | None:
    """Return the open file's status if `path` still names it, else None."""
    opened = os.fstat(fd)
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return None
    same = (opened.st_dev, opened.st_ino) == (current.st_dev, current.st_ino)
    return opened if same else None


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (ext4 and XFS only promise that after the folder is synced)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _open_or_none(path: Path) -> Iterator[IO[bytes] | None]:
    """Open for reading; a missing file gives None, which readers treat as empty."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        yield None
        return
    with f:
        yield f


def _backwards(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield `(bytes from line start to end of file, line)`, newest line first."""
    with _open_or_none(path) as f:
        yield from () if f is None else _lines_backwards(f)


def _lines_backwards(f: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    end = f.seek(0, os.SEEK_END)
    pos = end
    pieces: list[bytes] = []  # the line being assembled, rightmost piece first
    while pos > 0:
        step = min(_BLOCK, pos)
        pos -= step
        f.seek(pos)
        chunk = f.read(step)
        parts = chunk.split(b"\n")
        pieces.append(parts[-1])
        if len(parts) == 1:
            continue
        start = pos + len(chunk) - len(parts[-1])
        yield end - start, b"".join(reversed(pieces))
        for part in reversed(parts[1:-1]):
            start -= len(part) + 1
            yield end - start, part
        pieces = [parts[0]]
    yield end, b"".join(reversed(pieces))


def _parse(raw: bytes) -> dict[str, Any] | None:
    """Decode one line; None for blank, torn or garbage lines."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # bad UTF-8 and bad JSON are both ValueErrors
        return None
    return value if isinstance(value, dict) else None


def _time_field(record: Mapping[str, Any], name: str) -> datetime | None:
    value = record.get(name)
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def record_files(root: Path) -> Iterator[Path]:
    """Every records file below a records location (hidden folders skipped), in name order."""
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.endswith(RECORD_SUFFIX):
                yield Path(folder) / name
