"""A record store that writes each record as one JSON line to a stream: `kron run --here`.

In a pod the records go to stdout, where the cluster's log collection keeps them; nothing is
written to the (read-only) jobs directory. What this process recorded is kept in memory, so
that retries, notifications and triggers read it as they would read a records file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import TextIO

from kron.engine.store import Line, Standing, WriteFailures
from kron.model.job import Retention
from kron.model.run import Outcome, ProcessNote, RunEnded, RunRecord, RunStarted

__all__ = ["StreamRecordStore"]

log = logging.getLogger("kron.records")


class StreamRecordStore:
    """Records as NDJSON on a stream; reads see only the records of this process."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lines: list[Line] = []
        self.failures = WriteFailures()  # never filled: a stream has no file to fail

    def append(self, line: Line) -> None:
        if isinstance(line, ProcessNote):
            return  # for a daemon after a crash; a pod's processes end with the pod
        self._lines.append(line)
        text = json.dumps(line.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n"
        try:
            self._stream.write(text)  # one write of a whole line, as in a records file
            self._stream.flush()
        except (OSError, ValueError) as exc:  # a closed pipe or stream
            log.error("job %s: cannot write record: %s", line.job, exc)

    def set_retention(self, job_id: str, retention: Retention | None) -> None:
        """Nothing to keep or drop: the lines are gone from here once written."""

    def prune(self, job_id: str, now: datetime) -> int:
        return 0

    def records(self, job_id: str) -> Iterator[Line]:
        return iter([line for line in self._lines if line.job == job_id])

    def recent(self, job_id: str) -> list[Line]:
        return list(self.records(job_id))

    def last_terminal(self, job_id: str, outcome: Outcome | None = None) -> RunEnded | None:
        for line in reversed(self._lines):
            if (
                isinstance(line, RunEnded)
                and line.job == job_id
                and (outcome is None or line.outcome is outcome)
            ):
                return line
        return None

    def standing(self, job_id: str) -> Standing:
        ended = {line.run_id for line in self.records(job_id) if isinstance(line, RunEnded)}
        runs = [line for line in self.records(job_id) if isinstance(line, RunRecord)]
        return Standing(
            last_slot=max((line.slot for line in runs), default=None),
            unfinished=[
                line for line in runs if isinstance(line, RunStarted) and line.run_id not in ended
            ],
            last=self.last_terminal(job_id),
            last_success=self.last_terminal(job_id, Outcome.SUCCEEDED),
        )

    def runs(
        self,
        *,
        job: str | None = None,
        outcome: Outcome | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        found: dict[str, RunRecord] = {}
        for line in reversed(self._lines):  # newest first: a run's final line wins
            if isinstance(line, RunRecord) and (job is None or line.job == job):
                found.setdefault(line.run_id, line)
        chosen = [
            record
            for record in found.values()
            if (outcome is None or record.outcome is outcome)
            and (since is None or _when(record) >= since)
        ]
        chosen.sort(key=_when, reverse=True)
        return chosen[:limit] if limit is not None else chosen

    def find(self, run_id: str) -> list[Line]:
        return [line for line in self._lines if line.run_id.startswith(run_id)]


def _when(record: RunRecord) -> datetime:
    return record.ended_at or record.started_at or record.slot
