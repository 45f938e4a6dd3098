"""Reading run records back: `kron history` and `kron show`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from kron.engine import records


def record_files(root: Path) -> Iterator[Path]:
    """Every records file below the records location (hidden folders skipped)."""
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.endswith(records.RECORD_SUFFIX):
                yield Path(folder) / name


def runs(
    root: Path,
    *,
    job: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """Records matching the filters, newest first; a run still going shows its started line."""
    if job is not None:
        paths: list[Path] = [root / f"{job}{records.RECORD_SUFFIX}"]
    else:
        paths = list(record_files(root))
    found: dict[str, dict[str, Any]] = {}
    for path in paths:
        for record in records.read(path):
            run_id = record.get("run_id")
            line_outcome = record.get("outcome")
            if not isinstance(run_id, str) or not isinstance(line_outcome, str):
                continue  # not a run line (a delivery note, say)
            if line_outcome == records.STARTED_OUTCOME:
                found.setdefault(run_id, record)
            else:
                found[run_id] = record
    selected = []
    for record in found.values():
        if outcome and record.get("outcome") != outcome:
            continue
        if record.get("outcome") == records.STARTED_OUTCOME and outcome is None:
            shown = {**record, "outcome": "running"}
        else:
            shown = record
        when = _when(shown)
        if since and (when is None or when < since):
            continue
        selected.append(shown)
    selected.sort(key=_sort_key, reverse=True)
    return selected


def _sort_key(record: dict[str, Any]) -> float:
    when = _when(record)
    return when.timestamp() if when else 0.0


def _when(record: dict[str, Any]) -> datetime | None:
    for key in ("ended_at", "started_at", "slot"):
        value = record.get(key)
        if isinstance(value, str):
            try:
                return records.parse_time(value)
            except ValueError:
                continue
    return None


def find_run(root: Path, run_id: str) -> list[dict[str, Any]]:
    """Every line of the runs whose id starts with `run_id` (a unique prefix is enough): its
    started and terminal lines and notes such as deliveries, in file order."""
    matches: dict[str, list[dict[str, Any]]] = {}
    for path in record_files(root):
        for record in records.read(path):
            rid = record.get("run_id")
            if isinstance(rid, str) and rid.startswith(run_id):
                matches.setdefault(rid, []).append(record)
    if len(matches) == 1:
        return next(iter(matches.values()))
    return [lines[-1] for lines in matches.values()]
