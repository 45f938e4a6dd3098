"""One job file -> a validated, typed Job (or every problem with its file, line and field)."""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import stat
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from kron.config.build import build_job, merge_defaults
from kron.config.discovery import job_id_for
from kron.config.documents import NUL_MESSAGE, Document, fingerprint, nul_pointers, read_document
from kron.config.schema import MAX_ERRORS, schema_errors
from kron.config.tables import misplaced_keys
from kron.model.digests import sha256
from kron.model.errors import Problem, Severity, SpecError, shorten
from kron.model.job import Job
from kron.model.secrets import Secrets
from kron.model.settings import Settings
from kron.model.trust import Trust, folder_refusals, refusals, stat_refusals

__all__ = [
    "Loaded",
    "config_sha",
    "identity_of",
    "internal_error",
    "job_of",
    "load_files",
    "load_job",
    "read_job_file",
    "unchanged",
]

log = logging.getLogger("kron.loader")


def load_job(
    path: Path,
    *,
    jobs_dir: Path,
    settings: Settings,
    job_id: str | None = None,
    folders_seen: dict[str, list[str]] | None = None,
    real_folders: dict[str, str] | None = None,
    trust: Trust | None = None,
) -> tuple[Job, list[Problem]]:
    """Load one job file; return the Job and its warnings, or raise SpecError with every error.

    `job_id`, `folders_seen`, `real_folders` and `trust` let a caller loading many files share
    work between them.
    """
    doc = read_job_file(
        path,
        jobs_dir=jobs_dir,
        settings=settings,
        folders_seen=folders_seen,
        real_folders=real_folders,
        trust=trust,
    )
    return job_of(doc, jobs_dir=jobs_dir, settings=settings, job_id=job_id)


def read_job_file(
    path: Path,
    *,
    jobs_dir: Path,
    settings: Settings,
    folders_seen: dict[str, list[str]] | None = None,
    real_folders: dict[str, str] | None = None,
    trust: Trust | None = None,
) -> Document:
    """Read a job file that lies inside the jobs directory (links resolved) and that kron may
    trust (its owner, its mode, its folders), or raise SpecError saying why not.

    `folders_seen` and `real_folders` hold folder verdicts and resolved folders for one load.
    """
    trust = trust or Trust.current()
    real_folders = {} if real_folders is None else real_folders
    real = resolved(path, jobs_dir, real_folders)
    root = real_folders[_ROOT]
    if real is None or not real.startswith(root + os.sep):
        # Not opened: a link named x.yaml to /etc/shadow would have its lines quoted back as
        # unknown fields in the log, the audit log, `kron status` and the status page.
        target = shorten(real or os.path.realpath(path), 200)
        raise SpecError(
            [
                Problem(
                    path=str(path),
                    message=f"refused: a symlink to {target}, outside the jobs directory "
                    f"{root}; kron reads only job files inside it",
                )
            ]
        )
    vet = None
    if trust.enabled:
        in_folders = folder_refusals(path, root=jobs_dir, trust=trust, folders_seen=folders_seen)
        if real != os.path.abspath(path):  # reached through a link: the target's folders too
            in_folders += [
                m
                for m in folder_refusals(
                    Path(real), root=Path(root), trust=trust, folders_seen=folders_seen
                )
                if m not in in_folders
            ]
        if in_folders:  # not even opened: whoever can write the folder may have swapped it
            refused = refusals(path, trust=trust) + in_folders
            raise SpecError([Problem(path=str(path), message=m) for m in refused])
        vet = functools.partial(_vet, path, trust)
    return read_document(path, max_size=settings.max_file_size, vet=vet)


_ROOT = "\0root"  # the key of the jobs directory's own real path in `real_folders`


def unchanged(
    path: Path, seen: bytes, *, jobs_dir: Path, trust: Trust, folders: dict[str, bool]
) -> bool:
    """Whether `path` is still the very file read before (its fingerprint `seen`), and one
    `read_job_file` would read: inside the jobs directory, its folders and itself trusted.

    The checks of a reading, without the reading, by one `lstat` of a plain file: a warm start
    judges each file it takes from the cache as it would judge the file. `folders` keeps each
    folder's verdict for one load; a link is judged as a reading judges it.
    """
    text = os.fspath(path)
    try:
        st = os.lstat(text)
    except OSError:
        return False
    folder = os.path.dirname(text)
    if stat.S_ISLNK(st.st_mode) or folders.get(folder) is False:
        return False  # a link, or a folder refused: read as a reading reads it
    if fingerprint(st) != seen or (trust.enabled and stat_refusals(st, path, trust=trust)):
        return False
    if folder not in folders:
        folders[folder] = _folder_trusted(Path(folder), jobs_dir, trust)
    return folders[folder]


def _folder_trusted(folder: Path, jobs_dir: Path, trust: Trust) -> bool:
    """Whether files in `folder` may be read: it lies inside the jobs directory, links
    resolved, and neither it nor a folder above it up to the jobs directory is refused (nor,
    when reached through a link, any folder of its target's)."""
    root = os.path.realpath(jobs_dir)
    real = os.path.realpath(folder)
    if real != root and not real.startswith(root + os.sep):
        return False
    probe = folder / "_"  # folder_refusals judges the folders of a file in `folder`
    if folder_refusals(probe, root=jobs_dir, trust=trust):
        return False
    if real != os.path.abspath(folder):
        return not folder_refusals(Path(real) / "_", root=Path(root), trust=trust)
    return True


def resolved(path: Path, jobs_dir: Path, real_folders: dict[str, str]) -> str | None:
    """The real path of a job file (symlinks resolved), with its folder's resolved once per
    load; None when the file is a link that cannot be resolved (a loop is left to the reader).

    `realpath` costs some 50 µs a call: 10,000 files in a few folders resolve a few folders
    and `lstat` each file.
    """
    if _ROOT not in real_folders:
        real_folders[_ROOT] = os.path.realpath(jobs_dir)
    folder, name = os.path.split(os.fspath(path))
    real_folder = real_folders.get(folder)
    if real_folder is None:
        real_folder = real_folders[folder] = os.path.realpath(folder)
    real = os.path.join(real_folder, name)
    try:
        is_link = stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return real  # gone, or unreadable: the reader says so
    if not is_link:
        return real
    try:
        return os.path.realpath(path, strict=True)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return real  # a loop is reported by the reader, as `cannot read: ...`
        return os.path.realpath(path)  # a dangling link: judged by where it points


def job_of(
    doc: Document,
    *,
    jobs_dir: Path,
    settings: Settings,
    job_id: str | None = None,
    now: datetime | None = None,
) -> tuple[Job, list[Problem]]:
    """The Job a read job file defines and its warnings, or SpecError with every error.

    Every error is found in one pass: the fields the schema refuses are set aside, and the rest
    is built and checked as if they were absent, so a misspelt field does not hide a bad
    schedule below it. Problems come in line order.
    """
    nuls = nul_pointers(doc.data)
    found = schema_errors("job", doc.data)
    problems = [doc.problem(pointer, message) for pointer, message in found]
    problems += [doc.problem(pointer, NUL_MESSAGE) for pointer in nuls]
    # A NUL character is refused wherever it is: no path, argv, environment or user name can
    # hold one (the kernel's strings end at it). Its field is set aside like a schema error's.
    refused: list[tuple[str, ...]] = [_refusable(pointer) for pointer in nuls]
    if len(problems) >= MAX_PROBLEMS:
        # The report is full: setting fields aside and building would find problems no one
        # sees, at the cost of another schema pass per round (seconds, for 90,000 bad keys).
        masked = Secrets.in_tables(doc.data, settings.defaults).mask_problems(problems)
        raise SpecError(capped(in_file_order(masked), str(doc.path)))
    data = _without(doc.data, refused) if refused else doc.data
    for _ in range(_SET_ASIDE_ROUNDS):
        if not found:
            break
        # Setting a field aside can leave its table incomplete: check again, set that aside.
        refused += [_refusable(pointer) for pointer, _ in found]
        data = _without(data, refused)
        found = schema_errors("job", data) if data else []
    else:
        data = {}
    if settings.defaults:
        data = merge_defaults(settings.defaults, data)
    job, built = build_job(
        doc,
        data,
        job_id=job_id or job_id_for(doc.path, jobs_dir),
        config_sha=config_sha(doc.text, settings.defaults),
        settings=settings,
        now=now,
    )
    if refused:
        job = None  # what was set aside is part of the job
        problems += [p for p in built if not _follows_from(p, refused)]
    else:
        problems = built
    problems += [
        doc.problem(pointer, message, Severity.WARNING)
        for pointer, message in misplaced_keys("job", doc.data)
    ]
    # Errors quote values too (`expected a string, got 12345`): mask secrets in every message.
    problems = in_file_order(Secrets.in_tables(doc.data, settings.defaults).mask_problems(problems))
    if job is None:
        raise SpecError(capped([p for p in problems if p.is_error] or problems, str(doc.path)))
    return job, capped(problems, str(doc.path))


MAX_PROBLEMS = 50  # reported per file; a file with more says how many more


def capped(problems: list[Problem], path: str) -> list[Problem]:
    """The first MAX_PROBLEMS problems (errors before warnings), then one saying how many more.

    A generated file with 10,000 bad list items gets a report a person can read, and the
    daemon's log, status and audit log stay small.
    """
    if len(problems) <= MAX_PROBLEMS:
        return problems
    errors = [p for p in problems if p.is_error]
    shown = (errors + [p for p in problems if not p.is_error])[:MAX_PROBLEMS]
    more = len(problems) - len(shown)
    more_errors = len(errors) - sum(p.is_error for p in shown)
    # Past MAX_ERRORS the schema stops looking (schema.py): say so rather than undercount.
    at_least = "at least " if len(problems) >= MAX_ERRORS else ""
    summary = f"and {at_least}{more} more problems, not shown"
    if more_errors and more_errors != more:
        summary = f"and {at_least}{more} more problems ({more_errors} errors), not shown"
    severity = Severity.ERROR if more_errors else Severity.WARNING
    kept = {id(p) for p in shown}
    first = next(p for p in problems if id(p) not in kept)  # in file order: where they start
    hidden = Problem(
        path=path, message=summary, line=first.line, column=first.column, severity=severity
    )
    return in_file_order([*shown, hidden])


_SET_ASIDE_ROUNDS = 4


def in_file_order(problems: list[Problem]) -> list[Problem]:
    """Whole-file problems first, then by line and column (a stable sort)."""
    return sorted(problems, key=lambda p: (p.line is not None, p.line or 0, p.column or 0))


def _refusable(pointer: Sequence[str | int]) -> tuple[str, ...]:
    """The part of a document to set aside for a schema error at `pointer`: the field itself,
    or the whole list it sits in (its neighbours' indexes would shift)."""
    keys: list[str] = []
    for part in pointer:
        if isinstance(part, int):
            break
        keys.append(part)
    return tuple(keys)


def _without(data: Mapping[str, Any], refused: Sequence[tuple[str, ...]]) -> dict[str, Any]:
    """`data` with the fields at `refused` removed (tables along the way are copied)."""
    result = dict(data)
    for keys in refused:
        if not keys:
            return {}  # the whole document: nothing is left to check
        table = result
        for key in keys[:-1]:
            inner = table.get(key)
            if not isinstance(inner, dict):
                break
            table[key] = table = dict(inner)
        else:
            table.pop(keys[-1], None)
    return result


def _follows_from(problem: Problem, refused: Sequence[tuple[str, ...]]) -> bool:
    """Whether a problem found after setting fields aside is only the echo of that (an action
    that is missing because its table was refused, say)."""
    if not problem.field:
        return any(len(keys) <= 1 for keys in refused)
    for keys in refused:
        field = ".".join(keys)
        if problem.field == field or problem.field.startswith(field + "."):
            return True
    return False


def _vet(path: Path, trust: Trust, st: os.stat_result) -> None:
    """Refuse a job file by the stat of the open file (one stat per file, and the file read)."""
    refused = stat_refusals(st, path, trust=trust)
    if refused:
        raise SpecError([Problem(path=str(path), message=m) for m in refused])


def config_sha(text: str, defaults: Mapping[str, Any]) -> str:
    """A short hash of a job definition, carried by its run records: the file as committed
    (so it matches what a reviewer saw) and the kron.toml defaults merged under it."""
    digest = sha256(text.encode())
    digest.update(_defaults_digest(defaults))
    return digest.hexdigest()[:16]


_DEFAULTS_DIGESTS: dict[int, tuple[Mapping[str, Any], bytes]] = {}


def _defaults_digest(defaults: Mapping[str, Any]) -> bytes:
    """The defaults' digest, computed once per settings object, not once per job file."""
    known = _DEFAULTS_DIGESTS.get(id(defaults))
    if known is not None and known[0] is defaults:
        return known[1]
    canonical = json.dumps(defaults, sort_keys=True, separators=(",", ":"), default=str)
    digest = sha256(canonical.encode()).digest()
    _DEFAULTS_DIGESTS.clear()
    _DEFAULTS_DIGESTS[id(defaults)] = (defaults, digest)
    return digest


Loaded = tuple[Path, "bytes | None", "Job | None", list[Problem]]


def load_files(
    paths: list[Path], jobs_dir: Path, settings: Settings, now: datetime | None
) -> list[Loaded]:
    """Load job files one by one: (path, identity, job or None, problems) for each.

    Nothing raises: a file that makes the loader raise (a bug in kron) is reported as an
    internal error of that file, with the traceback in the debug log, and the others load.
    """
    folders: dict[str, list[str]] = {}  # one verdict per folder per load
    real_folders: dict[str, str] = {}  # and one resolved path
    trust = Trust.current()
    loaded: list[Loaded] = []
    for path in paths:
        try:
            loaded.append(
                _load_one(
                    path,
                    jobs_dir,
                    settings=settings,
                    now=now,
                    folders=(folders, real_folders),
                    trust=trust,
                )
            )
        except Exception:  # a bug in kron: this file is invalid, every other one still loads
            log.debug("loading %s raised", path, exc_info=True)
            loaded.append((path, identity_of(path), None, [internal_error(path)]))
    return loaded


def _load_one(
    path: Path,
    jobs_dir: Path,
    *,
    settings: Settings,
    now: datetime | None,
    folders: tuple[dict[str, list[str]], dict[str, str]],
    trust: Trust,
) -> Loaded:
    try:
        doc = read_job_file(
            path,
            jobs_dir=jobs_dir,
            settings=settings,
            folders_seen=folders[0],
            real_folders=folders[1],
            trust=trust,
        )
    except SpecError as exc:
        return (path, identity_of(path), None, exc.problems)
    # The identity is the open file's: a later change, even within the same read, is newer.
    try:
        job, warnings = job_of(doc, jobs_dir=jobs_dir, settings=settings, now=now)
    except SpecError as exc:
        return (path, doc.fingerprint, None, exc.problems)
    return (path, doc.fingerprint, job, warnings)


def internal_error(path: Path) -> Problem:
    """The problem reported for a file that made kron's loader raise: a bug, not the file's
    fault alone, kept to that file (the traceback is in the debug log)."""
    return Problem(
        path=str(path),
        message="internal error while loading this file (a bug in kron; "
        "the traceback is in the daemon's debug log: --log-level debug)",
    )


def identity_of(path: Path) -> bytes | None:
    """The file's fingerprint now (documents.fingerprint), None when it cannot be stat-ed."""
    try:
        st = path.stat()
    except OSError:
        return None
    return fingerprint(st)
