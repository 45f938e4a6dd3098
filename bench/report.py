"""The table: one row per figure, kron beside each peer, and kron's figure divided by the peer's.

A row may carry kron's target as an absolute figure (`target`, judged by the workload into
`met`) and as ratios to a peer or a floor measured in the same run (`checks`, built by
`ratio_check`): the verdict gives each with the ratio it found.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

COLUMNS = ("kron", "yacron", "apscheduler", "cron")
HEADER = (
    "workload",
    "figure",
    "kron",
    "yacron",
    "APScheduler",
    "Debian cron",
    "kron ÷ yacron",
    "kron ÷ APScheduler",
    "kron ÷ cron",
    "kron target",
)
NOTES_BEGIN = "<!-- BEGIN NOTES (kept as written when bench/run.py rewrites this page) -->"
NOTES_END = "<!-- END NOTES -->"


@dataclass
class Row:
    workload: str
    figure: str
    values: dict[str, float | str | None]
    unit: str = ""
    digits: int = 2
    target: str = ""
    met: bool | None = None
    ratio: bool = True
    notes: list[str] = field(default_factory=list)
    checks: list[tuple[str, bool | None]] = field(default_factory=list)  # ratio targets

    def cell(self, runner: str) -> str:
        value = self.values.get(runner)
        if value is None:
            return "—"
        if isinstance(value, str):
            return value
        if math.isnan(value):
            return "—"
        return f"{value:.{self.digits}f}"

    def ratio_to(self, peer: str) -> str:
        mine, theirs = self.values.get("kron"), self.values.get(peer)
        if (
            not self.ratio
            or not isinstance(mine, float | int)
            or not isinstance(theirs, float | int)
        ):
            return ""
        if math.isnan(mine) or math.isnan(theirs) or theirs <= 0:
            return ""
        return f"{mine / theirs:.2f}x"

    def verdict(self) -> str:
        parts = [(self.target, self.met)] if self.target else []
        parts += self.checks
        return "; ".join(f"{text}: {_MARK[met]}" for text, met in parts)

    def has_target(self) -> bool:
        return bool(self.target or self.checks)

    def ratio_check(
        self, limit: float, name: str, theirs: float | str | None = None, *, peer: str = ""
    ) -> Row:
        """Add the target kron ≤ limit x (the peer's figure in this row, or `theirs`)."""
        mine = self.values.get("kron")
        if peer:
            theirs = self.values.get(peer)
        text = f"≤ {limit:g}x {name}"
        if not _number(mine) or not _number(theirs) or theirs <= 0:  # type: ignore[operator]
            self.checks.append((text, None))
            return self
        found = mine / theirs  # type: ignore[operator]
        self.checks.append((f"{text} ({found:.2f}x)", found <= limit))
        return self

    def cells(self) -> list[str]:
        unit = f" ({self.unit})" if self.unit and f" {self.unit}" not in self.figure else ""
        return [
            self.workload,
            self.figure + unit,
            *(self.cell(r) for r in COLUMNS),
            self.ratio_to("yacron"),
            self.ratio_to("apscheduler"),
            self.ratio_to("cron"),
            self.verdict(),
        ]


_MARK = {True: "met", False: "**missed**", None: "not measured"}


def _number(value: object) -> bool:
    return isinstance(value, float | int) and not math.isnan(value)


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    last = None
    for row in rows:
        cells = row.cells()
        if cells[0] == last:
            cells[0] = ""  # one label per workload keeps the table readable
        else:
            last = cells[0]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def text_table(rows: list[Row]) -> str:
    """The same table for a terminal: workloads as headings, aligned columns."""
    header = HEADER[1:]
    body: list[tuple[str, list[str]]] = [(row.workload, row.cells()[1:]) for row in rows]
    widths = [max(len(h), *(len(cells[i]) for _, cells in body)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    last = None
    for workload, cells in body:
        if workload != last:
            out.append(f"\n{workload}")
            last = workload
        out.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(out)


def kept_notes(path: Path) -> str:
    """The hand-written notes block of an existing page, if any."""
    if not path.exists():
        return ""
    match = re.search(
        re.escape(NOTES_BEGIN) + r"\n(.*?)" + re.escape(NOTES_END), path.read_text(), re.S
    )
    return match.group(1) if match else ""
