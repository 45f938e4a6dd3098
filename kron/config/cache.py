"""The warm-start cache: the jobs a daemon built from its files, kept for its next start.

A daemon with 10,000 job files spends its start reading, checking and building them. When a
file is the very file read last time (its fingerprint: device, inode, size, times, owner, group
and mode, `documents.fingerprint`), built by the same kron under the same settings, the job it
gave then is the job it gives now. The cache is an optimisation only:

- It is never trusted over the file. Every file is stat-ed and judged as a reading judges it
  (inside the jobs directory, its folders and itself trusted: `loader.unchanged`); a changed,
  replaced, moved, chmod-ed or chown-ed file is read again.
- Only what the file alone decides is kept: a job that names another file (`env_file`, a
  `wait.kubeconfig`) or whose warnings depend on the date (`@at`) is read every time, and so
  is an invalid file. Nothing read from elsewhere is kept: env_file values are read at each
  run, never here; what the cache holds, the job files hold already.
- A missing, unreadable, torn, foreign or stale cache is ignored (and replaced): deleting it
  changes nothing but the time a start takes. The key is kron's version, a digest of the code
  and schemas that turn files into jobs, the Python version, the settings in force, the jobs
  directory and the user; the body carries its length and CRC-32.
- It is written whole under a hidden name and renamed into place, mode 0600 (job files may
  hold secret values): readable by the daemon's user alone. A file that is not that user's,
  or that others may read or write, is not read. Unpickling knows kron's job model and a few
  standard types, nothing else.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import pickle
import stat
import sys
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from kron import __version__
from kron.config.loader import Loaded, unchanged
from kron.model.digests import sha256
from kron.model.errors import Problem
from kron.model.job import Job
from kron.model.schedule import ScheduleKind
from kron.model.settings import Settings
from kron.model.trust import Trust

__all__ = ["CACHE_NAME", "Cached", "JobCache", "cacheable", "still_good"]

log = logging.getLogger("kron.catalog")

CACHE_NAME = "jobs.cache"
_FORMAT = 1
_MODE = 0o600
_MAX_HEADER = 4096


@dataclass(frozen=True, slots=True)
class Cached:
    """What a file gave at its last reading: its fingerprint then, its job and warnings."""

    seen: bytes
    job: Job
    warnings: list[Problem]


def cacheable(job: Job | None, problems: list[Problem]) -> bool:
    """Whether a reading is decided by its file alone (and the settings, and kron)."""
    if job is None or any(p.is_error for p in problems):
        return False
    if job.env_file is not None or (job.wait is not None and job.wait.kubeconfig is not None):
        return False  # judged with another file, which can change on its own
    return job.schedule.kind is not ScheduleKind.AT  # `@at ... is in the past` ages


class JobCache:
    """The cache file of one jobs directory, at `path` (in kron's folder of the records)."""

    def __init__(self, path: Path, *, jobs_dir: Path) -> None:
        self.path = path
        self.jobs_dir = jobs_dir
        self.rows = 0  # readings in the file at the last `read`, of files still there or not

    def read(self, settings: Settings, paths: Iterable[Path]) -> dict[Path, Cached]:
        """The cached readings of `paths` (the discovered files) that this kron, under these
        settings, made; {} when there is no usable cache."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return {}
        try:
            with open(fd, "rb") as handle:
                st = os.fstat(handle.fileno())
                if not _private(st):
                    log.warning(
                        "ignoring the job cache %s: not a file of this user's alone (mode %04o, "
                        "uid %d); it is written again",
                        self.path,
                        stat.S_IMODE(st.st_mode),
                        st.st_uid,
                    )
                    return {}
                header = _header(handle.readline(_MAX_HEADER))
                if header is None or header.get("key") != self._key(settings):
                    return {}
                body = handle.read(int(header["size"]) + 1)
            if len(body) != header["size"] or zlib.crc32(body) != header["crc32"]:
                return {}
            by_name = {str(path): path for path in paths}
            rows = _Reader(io.BytesIO(body), by_name).load()
            self.rows = len(rows)
            found = {}
            for name, seen, job, warnings in rows:
                path = by_name.get(name)
                if path is not None and job.path is path:
                    found[path] = Cached(seen, job, warnings)
            return found
        except Exception as exc:  # a torn or foreign file, of any kind: read the files instead
            log.debug("ignoring the job cache %s: %r", self.path, exc)
            return {}

    def write(
        self,
        settings: Settings,
        readings: Iterable[tuple[Path, bytes | None, Job | None, list[Problem]]],
    ) -> int:
        """Replace the cache with the readings (path, fingerprint, job, problems) that their
        files alone decide (`cacheable`); return how many. Atomic; raises OSError."""
        rows = [
            (str(path), seen, job, problems)
            for path, seen, job, problems in readings
            if seen is not None and job is not None and cacheable(job, problems)
        ]
        buffer = io.BytesIO()
        _Writer(buffer).dump(rows)
        body = buffer.getvalue()
        header = {"key": self._key(settings), "size": len(body), "crc32": zlib.crc32(body)}
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, _MODE)
        try:
            with open(fd, "wb") as handle:
                os.fchmod(handle.fileno(), _MODE)  # an older file of that name kept its mode
                handle.write(json.dumps(header).encode() + b"\n")
                handle.write(body)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return len(rows)

    def _key(self, settings: Settings) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "kron": __version__,
            "code": _code_digest(),
            "python": sys.version,
            # The settings' repr holds every value that reaches a job: defaults, zone, policy.
            "settings": sha256(repr(settings).encode()).hexdigest(),
            "jobs_dir": os.path.realpath(self.jobs_dir),
            "uid": os.geteuid(),
        }


def still_good(
    cached: Mapping[Path, Cached], files: Iterable[Path], *, jobs_dir: Path
) -> dict[Path, Loaded]:
    """The cached readings of those `files` that are unchanged and trusted
    (`loader.unchanged`), as the loader would have given them."""
    trust = Trust.current()
    folders: dict[str, bool] = {}  # each folder's verdict, judged once
    kept: dict[Path, Loaded] = {}
    for path in files:
        reading = cached.get(path)
        if reading is not None and unchanged(
            path, reading.seen, jobs_dir=jobs_dir, trust=trust, folders=folders
        ):
            kept[path] = (path, reading.seen, reading.job, reading.warnings)
    return kept


def _private(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077


def _header(line: bytes) -> dict[str, Any] | None:
    try:
        header = json.loads(line)
    except ValueError:
        return None
    if not isinstance(header, dict) or not isinstance(header.get("size"), int):
        return None
    return header


@functools.cache
def _code_digest() -> str:
    """A digest of what turns files into jobs: kron's model, its config package and schemas.

    A kron changed in place (an upgrade that kept the version, a patched install) builds jobs
    its own way: a cache made by another build is not used.
    """
    package = Path(__file__).resolve().parent.parent
    digest = sha256()
    for folder, pattern in (("model", "*.py"), ("config", "*.py"), ("schemas", "*.json")):
        for path in sorted((package / folder).glob(pattern)):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


class _Writer(pickle.Pickler):
    """Paths and zones go by name: the reader gives back the path objects discovery made, and
    the zones of zoneinfo's cache (a zone's own pickling would need `getattr`)."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)

    def persistent_id(self, obj: Any) -> tuple[str, str] | None:
        if isinstance(obj, Path):
            return ("path", str(obj))
        if isinstance(obj, ZoneInfo):
            return ("zone", str(obj.key))
        return None


# Everything a pickled job is made of (kron.model.job's flat pickling, schedules through the
# parse cache), and nothing else: a cache cannot name any other callable.
_ALLOWED = {
    ("kron.model.job", name)
    for name in (
        "_rebuild",
        "Job",
        "CommandAction",
        "ShellAction",
        "HttpAction",
        "DockerAction",
        "AgentAction",
        "RetryPolicy",
        "WaitSpec",
        "Delivery",
        "Retention",
        "Concurrency",
        "Catchup",
        "Backoff",
        "DeliveryKind",
        "WaitTimeoutAction",
    )
} | {
    ("kron.model.schedule", "parse_schedule"),
    ("kron.model.run", "Outcome"),
    ("kron.model.errors", "Problem"),
    ("kron.model.errors", "Severity"),
    ("builtins", "frozenset"),
    ("datetime", "timedelta"),
    ("copyreg", "__newobj__"),  # how a slotted dataclass (Problem) comes back
}


class _Reader(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, paths: dict[str, Path]) -> None:
        super().__init__(file)
        self._paths = paths

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} has no place in a job cache")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Path | ZoneInfo:
        kind, name = pid
        if kind == "path" and isinstance(name, str):
            return self._paths.get(name) or Path(name)
        if kind == "zone" and isinstance(name, str):
            return ZoneInfo(name)
        raise pickle.UnpicklingError(f"{kind!r} has no place in a job cache")
