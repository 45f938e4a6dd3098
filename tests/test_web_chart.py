"""The chart of a job's recent runs: what it draws for no run, one run, many runs, every
outcome, a run still going, and durations of nothing and of weeks."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from kron.model.run import Outcome, RunEnded, RunRecord, RunStarted, Trigger
from kron.service.chart import CHART_RUNS, runs_chart

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
UTC_ZONE = ZoneInfo("UTC")
SVG = "{http://www.w3.org/2000/svg}"


def ended(
    n: int, outcome: Outcome, took: float | None, *, attempt: int = 1, start: datetime | None = None
) -> RunEnded:
    """Run n, at minute n of the day; `took` None: a slot that never ran."""
    slot = start or datetime(2026, 3, 2, tzinfo=UTC) + timedelta(minutes=n)
    return RunEnded(
        run_id=f"run{n}",
        job="j",
        slot=slot,
        trigger=Trigger.SCHEDULE,
        attempt=attempt,
        outcome=outcome,
        started_at=slot if took is not None else None,
        ended_at=slot + timedelta(seconds=took or 0),
        config_sha="sha",
    )


def drawn(runs: list[RunRecord], zone: ZoneInfo = UTC_ZONE) -> ET.Element:
    """The chart's SVG, parsed as XML (so it is well-formed, too)."""
    html = runs_chart(runs, zone, NOW)
    (svg,) = re.findall(r"<svg.*</svg>", html)
    return ET.fromstring(svg)


def columns(svg: ET.Element) -> list[dict[str, str | float | None]]:
    """Each run's column: its colour class, title, x, and bar height (None: no bar)."""
    found = []
    for group in svg.iter(f"{SVG}g"):
        bar = group.find(f"{SVG}rect[@class='bar']")
        cell = group.find(f"{SVG}rect[@class='cell']")
        assert cell is not None
        found.append(
            {
                "class": group.get("class"),
                "title": group.findtext(f"{SVG}title"),
                "x": float(cell.get("x", "nan")),
                "bar": float(bar.get("height", "nan")) if bar is not None else None,
            }
        )
    return found


def test_no_runs_draw_no_chart() -> None:
    assert runs_chart([], UTC_ZONE, NOW) == ""


def test_one_run_is_one_column_at_the_right_with_a_full_height_bar() -> None:
    svg = drawn([ended(5, Outcome.SUCCEEDED, 2.5)])
    assert svg.get("role") == "img"
    assert svg.get("aria-label") == (
        "Outcomes and durations of the last 1 run, oldest first: 1 succeeded. It took 2s500ms."
    )
    assert columns(svg) == [
        {
            "class": "col ok",
            "title": "2026-03-02 00:05:00 UTC · succeeded · 2s500ms",
            "x": (CHART_RUNS - 1) * 10.0,
            "bar": 82.0,
        }
    ]


def test_many_runs_show_the_newest_sixty_oldest_on_the_left() -> None:
    runs = [ended(n, Outcome.SUCCEEDED, float(n + 1)) for n in range(100)]
    svg = drawn(list(reversed(runs)))  # the store gives them newest first
    shown = columns(svg)
    assert len(shown) == CHART_RUNS
    assert [c["x"] for c in shown] == [float(10 * i) for i in range(CHART_RUNS)]
    assert shown[0]["title"] == "2026-03-02 00:40:00 UTC · succeeded · 41s"
    assert shown[-1]["title"] == "2026-03-02 01:39:00 UTC · succeeded · 1m40s"
    assert shown[-1]["bar"] == 82.0
    assert shown[0]["bar"] == round(82 * 41 / 100, 2)
    assert svg.get("aria-label", "").endswith("60 succeeded. Durations from 41s to 1m40s.")


def test_every_outcome_has_its_colour_and_slots_that_never_ran_have_no_bar() -> None:
    outcomes = [o for o in Outcome if o is not Outcome.STARTED]
    never_ran = {Outcome.SKIPPED, Outcome.MISSED, Outcome.DEPENDENCY_FAILED}
    runs = [ended(n, o, None if o in never_ran else 1.0) for n, o in enumerate(outcomes)]
    shown = columns(drawn(list(reversed(runs))))
    assert [(c["class"], c["bar"] is None) for c in shown] == [
        ("col ok", False),  # succeeded
        ("col bad", False),  # failed
        ("col bad", False),  # timeout
        ("col warn", True),  # skipped
        ("col warn", True),  # missed
        ("col warn", False),  # replaced
        ("col warn", False),  # cancelled
        ("col bad", False),  # abandoned
        ("col bad", True),  # dependency_failed
        ("col bad", False),  # wait_timeout
    ]
    assert [str(c["title"]).split(" · ")[1:] for c in shown][3] == ["skipped", "did not run"]


def test_a_zero_second_run_is_a_tick_and_a_run_of_weeks_sets_the_scale() -> None:
    runs = [
        ended(0, Outcome.SUCCEEDED, 0.0),
        ended(1, Outcome.SUCCEEDED, 0.001),
        ended(2, Outcome.SUCCEEDED, 3 * 7 * 86400.0),
    ]
    svg = drawn(list(reversed(runs)))
    assert [c["bar"] for c in columns(svg)] == [0.6, 1.5, 82.0]
    assert [str(c["title"]).rsplit(" · ", 1)[1] for c in columns(svg)] == ["0s", "1ms", "21d"]
    assert svg.get("aria-label", "").endswith("Durations from 0s to 21d.")


def test_only_zero_second_runs_draw_ticks_not_a_division_by_zero() -> None:
    svg = drawn([ended(1, Outcome.FAILED, 0.0), ended(0, Outcome.SUCCEEDED, 0.0)])
    assert [c["bar"] for c in columns(svg)] == [0.6, 0.6]
    assert svg.get("aria-label", "").endswith("1 succeeded, 1 failed. Each took 0s.")


def test_a_clock_stepped_back_during_a_run_draws_it_as_zero_seconds() -> None:
    start = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    run = RunEnded(
        run_id="r",
        job="j",
        slot=start,
        trigger=Trigger.SCHEDULE,
        attempt=1,
        outcome=Outcome.SUCCEEDED,
        started_at=start,
        ended_at=start - timedelta(seconds=30),
        config_sha="sha",
    )
    assert columns(drawn([run]))[0]["bar"] == 0.6


def test_a_run_still_going_shows_as_running_with_its_time_so_far() -> None:
    started = RunStarted(
        run_id="live",
        job="j",
        slot=NOW - timedelta(minutes=2),
        trigger=Trigger.MANUAL,
        attempt=1,
        started_at=NOW - timedelta(minutes=2),
        config_sha="sha",
    )
    svg = drawn([started, ended(0, Outcome.FAILED, 60.0)])
    assert [(c["class"], c["title"], c["bar"]) for c in columns(svg)] == [
        ("col bad", "2026-03-02 00:00:00 UTC · failed · 1m", 41.0),
        ("col run", "2026-03-02 11:58:00 UTC · running · 2m", 82.0),
    ]
    assert svg.get("aria-label", "").endswith("1 failed, 1 running. Durations from 1m to 2m.")


def test_titles_are_in_the_job_s_zone_and_name_a_retry_s_attempt() -> None:
    run = ended(0, Outcome.TIMEOUT, 5.0, attempt=3, start=datetime(2026, 7, 1, 6, 30, tzinfo=UTC))
    (column,) = columns(drawn([run], ZoneInfo("America/New_York")))
    assert column["title"] == "2026-07-01 02:30:00 EDT · timeout · 5s · attempt 3"


def test_the_caption_says_what_the_picture_shows() -> None:
    html = runs_chart(
        [ended(1, Outcome.FAILED, 90.0), ended(0, Outcome.SUCCEEDED, 30.0)], UTC_ZONE, NOW
    )
    caption = re.sub(r"<[^>]+>", "", html.split("<figcaption>")[1])
    assert caption == (
        "Last 2 runs, oldest on the left · bar height: duration, tallest bar 1m30s · "
        "&#9632; 1 succeeded &#9632; 1 failed"
    )
