"""The audit log: every load, change, removal, invalid file and operator action, one line each."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from kron.engine import records
from kron.engine.store import WriteFailures
from kron.model.clock import Clock
from kron.model.times import format_time, parse_time

__all__ = ["AUDIT_MAX_BYTES", "AuditLog", "count_events"]

log = logging.getLogger("kron.daemon")
AUDIT_MAX_BYTES = 16 * 1024 * 1024


class AuditLog:
    """Every load, change, removal and invalid file, as one JSON line each.

    The file is capped: past AUDIT_MAX_BYTES at start-up it becomes `audit.jsonl.1` (the one
    before that is dropped), so a daemon restarted daily with 10,000 jobs keeps a bounded log.
    """

    def __init__(self, path: Path, clock: Clock, *, rotate: bool = True) -> None:
        self.path = path
        self._clock = clock
        self._pending: list[dict[str, str | None]] | None = None
        self._batch_time = ""  # one time for a batch: 10,000 loads at start are one instant
        self._failures = WriteFailures()  # said once a minute, as for records
        if not rotate:  # another process's writer (`kron mcp`): the daemon rotates at its start
            return
        try:
            if path.stat().st_size > AUDIT_MAX_BYTES:
                path.replace(path.with_name(path.name + ".1"))
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot rotate the audit log %s: %s", path, exc)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Write every line logged inside the block at its end, with one `write`."""
        self._pending = []
        self._batch_time = format_time(self._clock.now())
        try:
            yield
        finally:
            pending, self._pending, self._batch_time = self._pending, None, ""
            self._append(pending)

    def write(
        self,
        event: str,
        *,
        job: str | None = None,
        path: Path | None = None,
        config_sha: str | None = None,
        error: str | None = None,
        via: str | None = None,
        run_id: str | None = None,
    ) -> None:
        """Log one event; `via` names the front end that asked for it (`mcp`, `web`), when not
        the files or the command line; `run_id` the run an operator started or cancelled."""
        line = {
            "time": self._batch_time or format_time(self._clock.now()),
            "event": event,
            "job": job,
            "path": str(path) if path else None,
            "config_sha": config_sha,
            "error": error,
        }
        if run_id is not None:
            line["run_id"] = run_id
        if via is not None:
            line["via"] = via
        if self._pending is not None:
            self._pending.append(line)
        else:
            self._append([line])

    def _append(self, lines: list[dict[str, str | None]]) -> None:
        try:
            records.append_many(self.path, lines)
        except OSError as exc:
            self._failures.failed(self.path, exc)
        else:
            self._failures.succeeded(self.path, terminal=True)


def count_events(path: Path, *, event: str, via: str, since: datetime) -> int:
    """How many `event` lines with this `via` the log (and its rotated part) holds since
    `since`: `kron mcp`'s daily limit is counted where every such change is written anyway."""
    needles = (f'"event":"{event}"'.encode(), f'"via":"{via}"'.encode())
    count = 0
    for part in (path.with_name(path.name + ".1"), path):
        try:
            data = part.read_bytes()
        except FileNotFoundError:
            continue
        for raw in data.splitlines():
            if not all(needle in raw for needle in needles):
                continue  # most lines: no JSON parsing
            try:
                line = json.loads(raw)
                if (
                    line["event"] == event
                    and line["via"] == via
                    and parse_time(line["time"]) >= since
                ):
                    count += 1
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line
    return count
