"""What a change of the jobs directory is told as: log lines, and audit log events."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from kron.config.catalog import Changes
from kron.engine.audit import AuditLog
from kron.model.errors import Problem

__all__ = ["log_problems", "report_changes"]

log = logging.getLogger("kron.daemon")


def report_changes(
    changes: Changes, *, audit: AuditLog, settings_path: Path | None, started: float | None
) -> None:
    """Log a catalog change and write it to the audit log.

    Args:
        started: when the reload began (`time.perf_counter`), for the time it took.
    """
    started = started or time.perf_counter()
    if changes.settings_changed:
        audit.write("settings", path=settings_path)
    for problem in changes.settings_problems:
        (log.error if problem.is_error else log.warning)(
            "%s (kept the last good settings)", problem
        )
    for entry in changes.invalid:
        log_problems(entry.problems)
        kept = " (its last good version stays scheduled)" if entry.job is not None else ""
        log.error("%s: invalid%s", entry.path, kept)
        audit.write(
            "invalid",
            job=entry.job_id,
            path=entry.path,
            error="; ".join(p.message for p in entry.errors),
        )
    for entry in changes.fixed:
        log.info("%s: valid again", entry.path)
    for job in changes.added:
        audit.write("add", job=job.id, path=job.path, config_sha=job.config_sha)
    for job in changes.updated:
        audit.write("change", job=job.id, path=job.path, config_sha=job.config_sha)
    for job_id in changes.removed:
        audit.write("remove", job=job_id)
    if changes:
        log.info(
            "reloaded in %.1f ms: %d added, %d changed, %d removed, %d invalid",
            (time.perf_counter() - started) * 1000,
            len(changes.added),
            len(changes.updated),
            len(changes.removed),
            len(changes.invalid),
        )


def log_problems(problems: list[Problem]) -> None:
    for problem in problems:
        (log.error if problem.is_error else log.warning)("%s", problem)
