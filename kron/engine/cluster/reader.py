"""Reading the cluster's records: `kron history` and `kron show`, the status page's job and run
pages, in a thread or a command, never on a daemon's event loop. One connection per read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg

from kron.engine.store import Line
from kron.model.errors import KronError
from kron.model.run import Outcome, RunEnded, RunRecord, read_line
from kron.model.settings import ClusterSettings

__all__ = ["ClusterReader", "reader_for"]

RECENT_LINES = 200  # a job's tail, as FileRecordStore.recent reads one


class ClusterReader:
    """The read half of the RecordStore protocol, over the cluster's `kron_records`."""

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        self._url = url
        self._timeout_s = timeout_s

    def _rows(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Raises KronError when the database does not answer (said without the URL)."""
        try:
            with psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=max(1, round(self._timeout_s)),
                application_name="kron reader",
            ) as conn:
                return conn.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            said = " ".join(str(exc).split())[:300]
            raise KronError(f"the cluster database is out of reach ({said})") from None

    def ping(self) -> None:
        self._rows("SELECT 1")

    def has_job(self, job_id: str) -> bool:
        return bool(self._rows("SELECT 1 FROM kron_records WHERE job = %s LIMIT 1", (job_id,)))

    def job_ids(self) -> list[str]:
        return [str(job) for (job,) in self._rows("SELECT DISTINCT job FROM kron_records")]

    def records(self, job_id: str) -> Iterator[Line]:
        return _typed(
            self._rows("SELECT line FROM kron_records WHERE job = %s ORDER BY id", (job_id,))
        )

    def recent(self, job_id: str) -> list[Line]:
        rows = self._rows(
            "SELECT line FROM kron_records WHERE job = %s ORDER BY id DESC LIMIT %s",
            (job_id, RECENT_LINES),
        )
        return list(_typed(reversed(rows)))

    def last_terminal(self, job_id: str, outcome: Outcome | None = None) -> RunEnded | None:
        rows = self._rows(
            """SELECT line FROM kron_records
               WHERE job = %s AND outcome IS NOT NULL AND outcome <> 'started' AND NOT late
                 AND (%s::text IS NULL OR outcome = %s::text)
               ORDER BY id DESC LIMIT 1""",
            (job_id, outcome, outcome),
        )
        line = next(_typed(rows), None)
        return line if isinstance(line, RunEnded) else None

    def runs(
        self,
        *,
        job: str | None = None,
        outcome: Outcome | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        rows = self._rows(
            """SELECT line FROM (
                   SELECT DISTINCT ON (run_id) run_id, line, outcome, at FROM kron_records
                   WHERE outcome IS NOT NULL AND NOT late
                     AND (%(job)s::text IS NULL OR job = %(job)s::text)
                     AND (%(since)s::timestamptz IS NULL OR at >= %(since)s::timestamptz)
                   ORDER BY run_id, (outcome <> 'started') DESC, id DESC
               ) r
               WHERE %(outcome)s::text IS NULL OR outcome = %(outcome)s::text
               ORDER BY at DESC, run_id DESC
               LIMIT %(limit)s""",
            {"job": job, "since": since, "outcome": outcome, "limit": limit},
        )
        return [line for line in _typed(rows) if isinstance(line, RunRecord)]

    def find(self, run_id: str) -> list[Line]:
        escaped = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._rows(
            "SELECT run_id, line FROM kron_records WHERE run_id LIKE %s ORDER BY id",
            (escaped + "%",),
        )
        matches: dict[str, list[Line]] = {}
        for found, raw in rows:
            line = read_line(raw)
            if line is not None:
                matches.setdefault(str(found), []).append(line)
        if len(matches) == 1:
            return next(iter(matches.values()))
        return [lines[-1] for lines in matches.values()]


def _typed(rows: Any) -> Iterator[Line]:
    for row in rows:
        line = read_line(row[0])
        if line is not None:
            yield line


def reader_for(cluster: ClusterSettings) -> ClusterReader:
    """A reader of the cluster's records, for a command.

    Raises:
        KronError: no URL, or the database does not answer (said without the URL).
    """
    from kron.engine.cluster.database import database_url

    reader = ClusterReader(database_url(cluster))
    reader.ping()
    return reader
