"""One job file -> a validated, typed Job (or every problem with its file, line and field)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kron.config.build import build_job, merge_defaults
from kron.config.discovery import job_id_for
from kron.config.documents import Document, read_document
from kron.config.schema import problems_from_schema
from kron.model.errors import Problem, SpecError
from kron.model.job import Job
from kron.model.secrets import Secrets
from kron.model.settings import Settings
from kron.model.trust import Trust, folder_refusals, refusals, stat_refusals

__all__ = ["config_sha", "job_of", "load_job", "read_job_file"]


def load_job(
    path: Path,
    *,
    jobs_dir: Path,
    settings: Settings,
    job_id: str | None = None,
    folders_seen: dict[str, list[str]] | None = None,
    trust: Trust | None = None,
) -> tuple[Job, list[Problem]]:
    """Load one job file; return the Job and its warnings, or raise SpecError with every error.

    `job_id`, `folders_seen` and `trust` let a caller loading many files share work between
    them.
    """
    doc = read_job_file(
        path, jobs_dir=jobs_dir, settings=settings, folders_seen=folders_seen, trust=trust
    )
    return job_of(doc, jobs_dir=jobs_dir, settings=settings, job_id=job_id)


def read_job_file(
    path: Path,
    *,
    jobs_dir: Path,
    settings: Settings,
    folders_seen: dict[str, list[str]] | None = None,
    trust: Trust | None = None,
) -> Document:
    """Read a job file that kron may trust (its owner, its mode, its folders), or raise
    SpecError saying why not."""
    trust = trust or Trust.current()
    vet = None
    if trust.enabled:
        in_folders = folder_refusals(path, root=jobs_dir, trust=trust, folders_seen=folders_seen)
        if in_folders:  # not even opened: whoever can write the folder may have swapped it
            refused = refusals(path, trust=trust) + in_folders
            raise SpecError([Problem(path=str(path), message=m) for m in refused])
        vet = functools.partial(_vet, path, trust)
    return read_document(path, max_size=settings.max_file_size, vet=vet)


def job_of(
    doc: Document, *, jobs_dir: Path, settings: Settings, job_id: str | None = None
) -> tuple[Job, list[Problem]]:
    """The Job a read job file defines and its warnings, or SpecError with every error."""
    path = doc.path
    # Errors quote values too (`expected a string, got 12345`): mask secrets in every message.
    secrets = Secrets.in_tables(doc.data, settings.defaults)
    problems = problems_from_schema(doc, "job", doc.data)
    if problems:
        raise SpecError(secrets.mask_problems(problems))
    data = merge_defaults(settings.defaults, doc.data) if settings.defaults else doc.data
    job, found = build_job(
        doc,
        data,
        job_id=job_id or job_id_for(path, jobs_dir),
        config_sha=config_sha(doc.text, settings.defaults),
        settings=settings,
    )
    found = secrets.mask_problems(found)
    if job is None:
        raise SpecError([p for p in found if p.is_error] or found)
    return job, found


def _vet(path: Path, trust: Trust, st: os.stat_result) -> None:
    """Refuse a job file by the stat of the open file (one stat per file, and the file read)."""
    refused = stat_refusals(st, path, trust=trust)
    if refused:
        raise SpecError([Problem(path=str(path), message=m) for m in refused])


def config_sha(text: str, defaults: Mapping[str, Any]) -> str:
    """A short hash of a job definition, carried by its run records: the file as committed
    (so it matches what a reviewer saw) and the kron.toml defaults merged under it."""
    digest = hashlib.sha256(text.encode())
    digest.update(_defaults_digest(defaults))
    return digest.hexdigest()[:16]


_DEFAULTS_DIGESTS: dict[int, tuple[Mapping[str, Any], bytes]] = {}


def _defaults_digest(defaults: Mapping[str, Any]) -> bytes:
    """The defaults' digest, computed once per settings object, not once per job file."""
    known = _DEFAULTS_DIGESTS.get(id(defaults))
    if known is not None and known[0] is defaults:
        return known[1]
    canonical = json.dumps(defaults, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(canonical.encode()).digest()
    _DEFAULTS_DIGESTS.clear()
    _DEFAULTS_DIGESTS[id(defaults)] = (defaults, digest)
    return digest
