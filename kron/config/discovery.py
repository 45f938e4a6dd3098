"""Which files of a jobs directory are jobs, and the id each one has."""

from __future__ import annotations

import os
from pathlib import Path

from kron.config.documents import JOB_SUFFIXES
from kron.model.errors import Problem, shorten

__all__ = ["SETTINGS_NAMES", "discover", "is_job_file", "job_id_for"]

SETTINGS_NAMES = ("kron.toml", "kron.yaml", "kron.yml")


def job_id_for(path: Path, jobs_dir: Path) -> str:
    """`jobs.d/backups/nightly.toml` -> `backups/nightly`."""
    text, root = str(path), str(jobs_dir).rstrip(os.sep)
    if text.startswith(root + os.sep):  # the common case, without pathlib's cost
        relative = text[len(root) + 1 :]
    else:
        relative = str(path.relative_to(jobs_dir))
    stem, _ = os.path.splitext(relative)
    return stem.replace(os.sep, "/")


def discover(jobs_dir: Path) -> tuple[list[Path], list[Problem]]:
    """Every job file below jobs_dir (following folder symlinks once), and unreadable entries."""
    files: list[Path] = []
    problems: list[Problem] = []
    seen_dirs: set[tuple[int, int]] = set()
    top = os.path.realpath(jobs_dir)

    def walk(folder: Path) -> None:
        try:
            st = folder.stat()
        except OSError as exc:
            problems.append(
                Problem(path=str(folder), message=f"cannot read folder: {exc.strerror}")
            )
            return
        if (st.st_dev, st.st_ino) in seen_dirs:
            problems.append(Problem(path=str(folder), message="symlink loop: folder already read"))
            return
        seen_dirs.add((st.st_dev, st.st_ino))
        if folder != jobs_dir and os.path.islink(folder):
            target = os.path.realpath(folder)
            if top == target or top.startswith(target.rstrip(os.sep) + os.sep):
                # A link to `/` or to `..` would have kron read a whole tree that is not jobs.
                problems.append(
                    Problem(
                        path=str(folder),
                        message=f"symlink loop: {target} holds the jobs directory; not read",
                    )
                )
                return
            if not target.startswith(top.rstrip(os.sep) + os.sep):
                # Job files are read from inside the jobs directory only: a link to a folder
                # elsewhere would make its files (and whoever can write them) a source of jobs.
                problems.append(
                    Problem(
                        path=str(folder),
                        message=f"refused: a symlink to {shorten(target, 200)}, outside the "
                        "jobs directory; not read",
                    )
                )
                return
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            problems.append(
                Problem(path=str(folder), message=f"cannot list folder: {exc.strerror}")
            )
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError as exc:
                problems.append(Problem(path=entry.path, message=f"cannot read: {exc.strerror}"))
                continue
            if is_dir:
                walk(Path(entry.path))
            elif is_job_file(entry.name) and not (
                entry.name in SETTINGS_NAMES and folder == jobs_dir
            ):
                files.append(folder / entry.name)  # twice as fast as parsing entry.path

    walk(jobs_dir)
    return files, problems


def is_job_file(name: str) -> bool:
    """True for a name that may hold a job: right suffix, not hidden, not an editor temporary."""
    if name.startswith((".", "#")) or name.endswith("~"):
        return False
    return name.endswith(JOB_SUFFIXES)
