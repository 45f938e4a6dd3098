"""How the commands print: aligned tables, records, JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from kron.model.times import parse_time

__all__ = ["dump", "local_time", "print_record", "print_table"]


def dump(value: Any, out: TextIO) -> None:
    json.dump(value, out, indent=2, ensure_ascii=False)
    out.write("\n")


def local_time(text: str | None, zone: str) -> str:
    if not text:
        return "-"
    return parse_time(text).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S %Z")


def print_table(rows: Sequence[Sequence[str]], out: TextIO, *, indent: str = "") -> None:
    """An aligned table: rich on a terminal, plain columns in a pipe."""
    if out.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*rows[0], box=None, header_style="bold", pad_edge=False)
        for row in rows[1:]:
            table.add_row(*row)
        Console(file=out).print(table)
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print(indent + "  ".join(cells).rstrip(), file=out)


def print_record(record: dict[str, Any], out: TextIO, *, as_json: bool) -> None:
    if as_json:
        dump(record, out)
        return
    keys = (
        "run_id",
        "job",
        "slot",
        "trigger",
        "attempt",
        "outcome",
        "started_at",
        "ended_at",
        "duration_s",
        "exit_code",
        "signal",
        "error",
        "truncated",
        "upstream",
        "config_sha",
        "host",
        "pid",
    )
    for key in keys:
        if record.get(key) not in (None, "", False):
            print(f"{key + ':':12} {record[key]}", file=out)
    for delivery in record.get("deliveries", []):
        state = "ok" if delivery.get("ok") else f"failed: {delivery.get('error')}"
        print(f"{'delivery:':12} {delivery.get('target')} {state}", file=out)
    for stream in ("stdout", "stderr"):
        text = record.get(stream)
        if text:
            print(f"--- {stream} ---", file=out)
            print(text.rstrip("\n"), file=out)
