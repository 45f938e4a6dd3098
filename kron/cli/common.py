"""What the commands share: exit codes, and finding jobs, records and the daemon.

Imports happen inside the functions that need them, so that each command loads only its own
share of kron (`kron validate` never loads the daemon).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from kron.model.errors import KronError, UsageError

if TYPE_CHECKING:
    from typing import TextIO

    from kron.engine.cluster.reader import ClusterReader
    from kron.engine.store import FileRecordStore
    from kron.service.control import ControlClient

__all__ = [
    "EXIT_BAD",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "client_for",
    "find_job_file",
    "is_within",
    "job_id_of",
    "job_ids",
    "records_root",
    "store_for",
    "unknown_job",
]

EXIT_OK, EXIT_BAD, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
JOB_SUFFIXES = (".toml", ".yaml", ".yml")


def is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def find_job_file(job: str, jobs_dir: Path) -> Path:
    """A job id (`backups/nightly`) or a path to its file."""
    direct = Path(job)
    if direct.is_file():
        return direct
    for suffix in JOB_SUFFIXES:
        candidate = jobs_dir / f"{job}{suffix}"
        if candidate.is_file():
            return candidate
    raise UsageError(unknown_job(job, jobs_dir))


def job_ids(jobs_dir: Path) -> list[str]:
    """The ids of the job files below `jobs_dir` (read from their names, not loaded)."""
    from kron.config.discovery import discover, job_id_for

    files, _ = discover(jobs_dir) if jobs_dir.is_dir() else ([], [])
    return sorted(job_id_for(path, jobs_dir) for path in files)


def unknown_job(job: str, jobs_dir: Path, known: list[str] | None = None) -> str:
    """`no job 'nightly' in jobs.d; did you mean 'backups/nightly'?`"""
    from kron.model.errors import did_you_mean

    hint = did_you_mean(job, known if known is not None else job_ids(jobs_dir))
    return f"no job {job!r} in {jobs_dir}" + (hint or " (give a job id or a file)")


def records_root(jobs_dir: Path, override: Path | None = None) -> Path:
    """Where the records are: --records-dir, else kron.toml's records_dir, else the jobs dir."""
    from kron.config.settings import load_settings

    if override is not None:
        return override
    settings, _ = load_settings(jobs_dir)
    return settings.records_dir or jobs_dir


def store_for(
    jobs_dir: Path, override: Path | None = None, *, err: TextIO | None = None
) -> FileRecordStore | ClusterReader:
    """The records of the jobs in `jobs_dir`, to read: a cluster's (kron.toml's `[cluster]`),
    else the files. When the cluster's database does not answer, this node's files, with a
    note on `err`."""
    from kron.config.settings import load_settings
    from kron.engine.store import FileRecordStore
    from kron.model.clock import RealClock

    settings, _ = load_settings(jobs_dir) if jobs_dir.is_dir() else (None, [])
    root = override or (settings.records_dir if settings else None) or jobs_dir
    files = FileRecordStore(jobs_dir=root, records_dir=None, clock=RealClock())
    if settings is None or settings.cluster is None:
        return files
    from kron.engine.cluster.reader import reader_for

    try:
        reader: ClusterReader = reader_for(settings.cluster)
    except KronError as exc:
        if err is not None:
            print(f"note: {exc}; reading this node's records in {root}", file=err)
        return files
    return reader


def client_for(jobs_dir: Path) -> ControlClient:
    """The control client for the daemon serving jobs_dir (DaemonUnreachable: exit 3)."""
    from kron.config.settings import load_settings
    from kron.model.settings import Settings
    from kron.service.control import reach

    settings = load_settings(jobs_dir)[0] if jobs_dir.is_dir() else Settings()
    return reach(jobs_dir, settings)


def job_id_of(job: str, jobs_dir: Path) -> str:
    """A job id from an id or a path to a job file."""
    from kron.config.discovery import job_id_for

    path = Path(job)
    if path.suffix in JOB_SUFFIXES and path.exists() and is_within(path, jobs_dir):
        return job_id_for(path.resolve(), jobs_dir.resolve())
    return job
