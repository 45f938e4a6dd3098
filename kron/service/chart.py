"""A job's recent runs as a picture, drawn on the server as SVG: no script, so the status
page's Content-Security-Policy stays `script-src 'none'`.

Two rows share one time line, oldest run on the left: a strip of outcomes (one cell per run,
coloured as the outcome's badge) and a bar chart of durations (bar height in proportion to the
longest run shown). Hovering a column shows the run's slot, outcome and duration (an SVG
`<title>`, which browsers show as a tooltip); a screen reader reads the `aria-label` summary.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from kron.model.run import Outcome, RunRecord, RunStarted
from kron.model.units import format_duration, plural
from kron.service.html import RUNNING, badge_class, esc

__all__ = ["CHART_RUNS", "runs_chart"]

CHART_RUNS = 60  # columns: the newest runs, so one bar stays wide enough to hover on a phone
# The drawing's own units; the SVG is stretched to the page's width (preserveAspectRatio none),
# so nothing in it is text, which would stretch too.
_COLUMN = 10.0
_BAR = 8.0  # a column's cell and bar; the rest is the gap to the next
_STRIP = 10.0  # the outcomes strip's height
_TOP = 16.0  # where the bars' area starts
_BOTTOM = 98.0  # the bars' base line
_MIN_BAR = 1.5  # the shortest bar of a run that took any time, so that it shows at all
_ZERO_BAR = 0.6  # a run of 0 s: a tick on the base line, to tell it from a slot that never ran
_ORDER = {
    name: index
    for index, name in enumerate([*(o.value for o in Outcome if o.is_terminal), RUNNING])
}


def runs_chart(runs: Sequence[RunRecord], zone: ZoneInfo, now: datetime) -> str:
    """The newest CHART_RUNS of `runs` (newest first, as the store gives them) as a figure;
    "" for no runs, which the runs table says in words."""
    if not runs:
        return ""
    shown = list(reversed(runs[:CHART_RUNS]))  # oldest first, left to right
    durations = [_duration_s(run, now) for run in shown]
    longest = max((d for d in durations if d is not None), default=None)
    columns = []
    first = CHART_RUNS - len(shown)  # right-aligned: the newest run is always on the right
    for index, (run, seconds) in enumerate(zip(shown, durations, strict=True)):
        columns.append(_column(run, seconds, longest, (first + index) * _COLUMN, zone))
    outcomes = sorted(Counter(_outcome(run) for run in shown).items(), key=_in_order)
    counts = ", ".join(f"{count} {outcome}" for outcome, count in outcomes)
    span = _span(durations)
    label = (
        f"Outcomes and durations of the last {plural(len(shown), 'run')}, oldest first: {counts}."
    )
    if span:
        label += f" {span}."
    svg = (
        f'<svg role="img" aria-label="{esc(label)}" viewBox="0 0 {CHART_RUNS * _COLUMN:g} 100" '
        'preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">'
        f'<line class="axis" x1="0" x2="{CHART_RUNS * _COLUMN:g}" y1="{_BOTTOM:g}" '
        f'y2="{_BOTTOM:g}"/>{"".join(columns)}</svg>'
    )
    legend = " ".join(
        f'<span class="key"><span class="{badge_class(outcome)}">&#9632;</span> '
        f"{count} {esc(outcome)}</span>"
        for outcome, count in outcomes
    )
    scale = f"tallest bar {format_duration(timedelta(seconds=longest))}" if longest else ""
    caption = " · ".join(
        part
        for part in (
            f"Last {plural(len(shown), 'run')}, oldest on the left",
            "bar height: duration" + (f", {scale}" if scale else ""),
            legend,
        )
        if part
    )
    return f'<figure class="chart">{svg}<figcaption>{caption}</figcaption></figure>'


def _column(
    run: RunRecord, seconds: float | None, longest: float | None, x: float, zone: ZoneInfo
) -> str:
    """One run: a hover target the full height, its outcome cell, its duration bar."""
    outcome = _outcome(run)
    slot = run.slot.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")
    took = "did not run" if seconds is None else format_duration(timedelta(seconds=seconds))
    title = f"{slot} · {outcome} · {took}"
    if run.attempt > 1:
        title += f" · attempt {run.attempt}"
    parts = [
        f"<title>{esc(title)}</title>",
        f'<rect class="hit" x="{x:g}" y="0" width="{_COLUMN:g}" height="100"/>',
        f'<rect class="cell" x="{x:g}" y="0" width="{_BAR:g}" height="{_STRIP:g}"/>',
    ]
    if seconds is not None:
        height = _bar_height(seconds, longest)
        parts.append(
            f'<rect class="bar" x="{x:g}" y="{_BOTTOM - height:g}" width="{_BAR:g}" '
            f'height="{height:g}"/>'
        )
    return f'<g class="col {badge_class(outcome)}">{"".join(parts)}</g>'


def _bar_height(seconds: float, longest: float | None) -> float:
    if seconds <= 0 or not longest:
        return _ZERO_BAR
    room = _BOTTOM - _TOP
    return round(max(_MIN_BAR, room * seconds / longest), 2)


def _duration_s(run: RunRecord, now: datetime) -> float | None:
    """How long the run took (a live one: so far); None for a slot that never ran. A clock
    stepped back between start and end gives a negative span, drawn as 0 s."""
    if isinstance(run, RunStarted):
        seconds: float | None = (now - run.started_at).total_seconds()
    else:
        seconds = run.duration_s
    if seconds is None or not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _in_order(item: tuple[str, int]) -> int:
    """Outcomes in the order of the record format's list, a live run last."""
    return _ORDER.get(item[0], len(_ORDER))


def _outcome(run: RunRecord) -> str:
    return RUNNING if isinstance(run, RunStarted) else run.outcome.value


def _span(durations: Sequence[float | None]) -> str:
    took = [d for d in durations if d is not None]
    if not took:
        return "None of them ran"
    low, high = min(took), max(took)
    shortest = format_duration(timedelta(seconds=low))
    if low == high:
        if len(took) == 1:
            return (
                f"It took {shortest}"
                if len(durations) == 1
                else f"The one that ran took {shortest}"
            )
        return (
            f"Each that ran took {shortest}"
            if len(took) < len(durations)
            else f"Each took {shortest}"
        )
    return f"Durations from {shortest} to {format_duration(timedelta(seconds=high))}"
