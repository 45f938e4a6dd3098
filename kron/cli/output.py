"""How the commands print: aligned tables, records, JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from kron.cli.colour import outcome_style, paint
from kron.model.times import parse_time

__all__ = ["dump", "local_time", "print_record", "print_table", "record_lines"]

# The fields of a run record in the order `kron show` prints them; every other field follows
# (what an action adds: http_status, latency_ms, tokens, wait, ...), then the deliveries.
_FIRST = (
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
)
_LAST = ("config_sha", "host", "pid", "daemon_pid")
_NOT_FIELDS = ("v", "stdout", "stderr", "deliveries")


def dump(value: Any, out: TextIO) -> None:
    json.dump(value, out, indent=2, ensure_ascii=False)
    out.write("\n")


def local_time(text: str | None, zone: str) -> str:
    if not text:
        return "-"
    return parse_time(text).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S %Z")


def print_table(
    rows: Sequence[Sequence[str]],
    out: TextIO,
    *,
    indent: str = "",
    colour: bool = False,
    outcome_column: int | None = None,
) -> None:
    """An aligned table: rich on a terminal, plain columns in a pipe; with `colour`, the
    cells of `outcome_column` in their outcome's colour."""
    if out.isatty():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(*rows[0], box=None, header_style="bold", pad_edge=False)
        for row in rows[1:]:
            texts = [
                Text(cell, style=outcome_style(cell) or "")
                if index == outcome_column and colour
                else Text(cell)
                for index, cell in enumerate(row)
            ]
            table.add_row(*texts)
        Console(file=out, color_system="auto" if colour else None).print(table)
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for number, row in enumerate(rows):
        cells = []
        for index, (cell, width) in enumerate(zip(row, widths, strict=True)):
            padded = cell.ljust(width)
            if index == outcome_column and number > 0:
                # Padding first, so escape codes never count towards a column's width.
                padded = paint(cell, outcome_style(cell), on=colour) + padded[len(cell) :]
            cells.append(padded)
        print(indent + "  ".join(cells).rstrip(), file=out)


def _flat(key: str, value: Any) -> Iterator[tuple[str, Any]]:
    """`wait: {satisfied: true}` as `wait.satisfied: true`, so every field gets a line."""
    if isinstance(value, dict) and value:
        for name, inner in value.items():
            yield from _flat(f"{key}.{name}", inner)
    else:
        yield key, value


def record_lines(record: dict[str, Any]) -> list[tuple[str, str]]:
    """Every field of a record that holds something, as (name, text), in `kron show` order."""
    middle = sorted(k for k in record if k not in (*_FIRST, *_LAST, *_NOT_FIELDS))
    lines = []
    for key in (*_FIRST, *middle, *_LAST):
        for name, value in _flat(key, record.get(key)):
            if value is None or value is False or value in ("", [], {}):
                continue  # an empty field is not shown; `exit_code: 0` is
            if isinstance(value, list | dict):
                text = json.dumps(value, ensure_ascii=False)
            else:
                text = "true" if value is True else str(value)
            lines.append((name, text))
    return lines


def print_record(
    record: dict[str, Any], out: TextIO, *, as_json: bool, colour: bool = False
) -> None:
    """A run record, every field it holds, then its deliveries and its output."""
    if as_json:
        dump(record, out)
        return
    for name, text in record_lines(record):
        shown = paint(text, outcome_style(text), on=colour) if name == "outcome" else text
        print(f"{name + ':':12} {shown}", file=out)
    for delivery in record.get("deliveries", []):
        attempts = delivery.get("attempts") or 1
        tries = f"after {attempts} attempts" if attempts > 1 else "first attempt"
        if delivery.get("ok"):
            state = paint(f"ok ({tries})", "green", on=colour)
        else:
            state = paint(f"failed ({tries}): {delivery.get('error')}", "red", on=colour)
        print(f"{'delivery:':12} {delivery.get('target')} {state}", file=out)
    for stream in ("stdout", "stderr"):
        captured = record.get(stream)
        if captured:
            print(f"--- {stream} ---", file=out)
            print(str(captured).rstrip("\n"), file=out)
