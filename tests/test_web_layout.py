"""The status page as people see it, in a real headless Chromium: the jobs table fits a laptop
and a phone without a sideways scroll, and a job's page draws its recent runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kron.engine import records
from kron.model.run import Outcome

from .browser import ARTIFACTS, DevTools, kron_daemon
from .harness import write_job

LONG_FOLDER = "platform-databases/postgres-primary-eu-west-1"
UNBROKEN = "x" * 120  # an id with no place to break a line
# The outcomes a chart must draw, each with its duration (None: the slot never ran).
OUTCOMES: list[tuple[Outcome, float | None]] = [
    (Outcome.SUCCEEDED, 12.0),
    (Outcome.FAILED, 3.5),
    (Outcome.TIMEOUT, 600.0),
    (Outcome.SKIPPED, None),
    (Outcome.MISSED, None),
    (Outcome.REPLACED, 40.0),
    (Outcome.CANCELLED, 2.0),
    (Outcome.ABANDONED, 90.0),
    (Outcome.DEPENDENCY_FAILED, None),
    (Outcome.WAIT_TIMEOUT, 30.0),
    (Outcome.SUCCEEDED, 0.0),
]


def many_long_jobs(jobs_dir: Path, count: int = 40) -> list[str]:
    """Jobs with long ids, long tags, long schedules and long zones; some disabled."""
    ids = []
    for n in range(count):
        job_id = f"{LONG_FOLDER}/nightly-full-logical-dump-to-offsite-object-storage-{n:02d}"
        if n == 0:
            job_id = f"{LONG_FOLDER}/{UNBROKEN}"
        ids.append(job_id)
        schedule = "@at 2027-12-01T10:00:00+01:00" if n % 3 == 0 else "*/5 3-5 * JAN-DEC MON-FRI"
        write_job(
            jobs_dir,
            f"{job_id}.toml",
            f'schedule = "{schedule}"\ntimezone = "America/Argentina/ComodRivadavia"\n'
            f"enabled = {'false' if n % 4 == 1 else 'true'}\n"
            'command = ["true"]\n[tags]\n'
            'owner = "database-reliability-engineering-team@example.com"\n'
            f'runbook = "https://wiki.example.com/runbooks/postgres/{UNBROKEN}"\n'
            'tier = "1"\n',
        )
    return ids


def overflow(browser: DevTools) -> dict[str, list[int]]:
    """The page's and each table box's scroll width against its client width."""
    found: dict[str, list[int]] = browser.evaluate(
        "({page: [document.documentElement.scrollWidth, document.documentElement.clientWidth],"
        " boxes: [...document.querySelectorAll('.scroll')]"
        "   .map(e => e.scrollWidth - e.clientWidth)})"
    )
    return found


def state_cells(browser: DevTools) -> list[dict[str, float]]:
    """Where each job's State cell is, and how wide the window is."""
    cells: list[dict[str, float]] = browser.evaluate(
        "[...document.querySelectorAll('table.stack td[data-label=\"State\"]')].map(td => {"
        " const r = td.getBoundingClientRect();"
        " return {left: r.left, right: r.right, width: r.width, window: innerWidth}; })"
    )
    return cells


def test_the_jobs_table_fits_a_laptop_and_a_phone_without_a_sideways_scroll(
    jobs_dir: Path, short_tmp: Path, browser: DevTools
) -> None:
    ids = many_long_jobs(jobs_dir)
    with kron_daemon(jobs_dir, short_tmp) as base:
        for width, mobile, shot in [
            (1280, False, "status-page-many-jobs.png"),
            (1024, False, "status-page-many-jobs-1024.png"),
            (390, True, "status-page-many-jobs-phone.png"),
        ]:
            browser.viewport(width, mobile=mobile)
            browser.load(f"{base}/")
            rows = browser.count("table.stack tbody tr")
            assert rows == len(ids)
            measured = overflow(browser)
            assert measured["page"] == [width, width], (width, measured)
            assert measured["boxes"] == [0], (width, measured)
            cells = state_cells(browser)
            assert len(cells) == len(ids)
            # Every State cell is on the screen, whole: nothing to scroll sideways for.
            assert [
                c for c in cells if c["left"] < 0 or c["right"] > width or c["width"] <= 0
            ] == []
            texts = browser.text('table.stack td[data-label="State"]')
            assert texts.count("disabled") == 10
            assert texts.count("scheduled") + texts.count("done") == 30
            browser.screenshot(ARTIFACTS / shot, width=width, mobile=mobile)
        # On a phone the table is a column of cards: no header row, each cell a labelled line
        # as wide as the card.
        assert (
            browser.evaluate(
                "getComputedStyle(document.querySelector('table.stack thead')).display"
            )
            == "none"
        )
        widths = browser.evaluate(
            "[...document.querySelectorAll('table.stack tbody tr:first-child td')]"
            ".filter(td => getComputedStyle(td).display !== 'none')"
            ".map(td => Math.round(td.getBoundingClientRect().width))"
        )
        assert len(set(widths)) == 1, widths
        assert widths[0] > 300


def write_runs(
    jobs_dir: Path, job_id: str, count: int, start: datetime, *, last_took: float | None = None
) -> list[str]:
    """`count` runs in the job's records file, one an hour, cycling through OUTCOMES; the last
    one succeeded after `last_took` seconds, if given. Each ends before the next starts, so
    newest first (by end, as the store orders them) is the order they ran in."""
    run_ids = []
    for n in range(count):
        outcome, took = OUTCOMES[n % len(OUTCOMES)]
        if n == count - 1 and last_took is not None:
            outcome, took = Outcome.SUCCEEDED, last_took
        slot = start + timedelta(hours=n)
        run_id = f"{n:04d}{'a' * 16}"
        run_ids.append(run_id)
        line = {
            "v": 1,
            "run_id": run_id,
            "job": job_id,
            "slot": slot.isoformat().replace("+00:00", "Z"),
            "trigger": "schedule",
            "attempt": 1,
            "outcome": outcome.value,
            "started_at": slot.isoformat().replace("+00:00", "Z") if took is not None else None,
            "ended_at": (slot + timedelta(seconds=took or 0)).isoformat().replace("+00:00", "Z"),
            "duration_s": took,
            "config_sha": "sha",
        }
        records.append(jobs_dir / f"{job_id}.runs.jsonl", line)
    return run_ids


def test_a_job_page_draws_its_runs_with_each_run_s_slot_and_outcome_under_the_mouse(
    jobs_dir: Path, short_tmp: Path, browser: DevTools
) -> None:
    write_job(
        jobs_dir,
        "backups/nightly.toml",
        # @manual: no slot of the schedule comes between the records and now to be recorded.
        'schedule = "@manual"\ntimezone = "Europe/Berlin"\ncommand = ["true"]\n',
    )
    for job_id in ("once", "never"):
        write_job(jobs_dir, f"{job_id}.toml", 'schedule = "@manual"\ncommand = ["true"]\n')
    start = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
    write_runs(jobs_dir, "backups/nightly", 75, start, last_took=40 * 86400.0)  # 40 days
    write_runs(jobs_dir, "once", 1, start)
    with kron_daemon(jobs_dir, short_tmp) as base:
        browser.viewport(1280, mobile=False)
        browser.load(f"{base}/jobs/backups/nightly")
        assert browser.count("figure.chart svg[role=img] g.col") == 60
        label = browser.evaluate("document.querySelector('figure.chart svg').ariaLabel")
        assert label == (
            "Outcomes and durations of the last 60 runs, oldest first: 11 succeeded, 5 failed, "
            "5 timeout, 5 skipped, 6 missed, 6 replaced, 6 cancelled, 6 abandoned, "
            "5 dependency_failed, 5 wait_timeout. Durations from 0s to 40d."
        )
        # Runs 15 to 74 are shown, oldest on the left: column c is run c + 15. The mouse over
        # a column, at the height of the bars, shows that run's slot, outcome and duration.
        browser.send("DOM.scrollIntoViewIfNeeded", nodeId=browser.node("figure.chart svg"))
        left, top, width, height = browser.evaluate(
            "(() => { const r = document.querySelector('figure.chart svg')"
            ".getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()"
        )
        titles = []
        for column in (59, 50, 9, 0):
            x, y = left + width * (column + 0.5) / 60, top + height * 0.9
            browser.hover(x, y)
            titles.append(
                browser.evaluate(
                    f"document.elementFromPoint({x}, {y}).closest('g.col')"
                    ".querySelector('title').textContent"
                )
            )
            hovered = browser.evaluate(
                "[...document.querySelectorAll('g.col')].findIndex(g => g.matches(':hover'))"
            )
            assert hovered == column
        assert titles == [
            "2026-03-04 03:00:00 CET · succeeded · 40d",  # run 74, the newest
            "2026-03-03 18:00:00 CET · succeeded · 0s",  # run 65
            "2026-03-02 01:00:00 CET · timeout · 10m",  # run 24
            "2026-03-01 16:00:00 CET · missed · did not run",  # run 15, the oldest shown
        ]
        heights = browser.evaluate(
            "[...document.querySelectorAll('g.col')].map(g => {"
            " const bar = g.querySelector('rect.bar');"
            " return bar ? bar.getBoundingClientRect().height : null; })"
        )
        inner = browser.evaluate("document.querySelector('figure.chart svg').clientHeight")
        # The longest run's bar fills the bars' area: 82 of the drawing's 100 units of height.
        assert heights[59] == pytest.approx(inner * 0.82, abs=0.05)
        assert 0 < heights[50] < heights[9] < 3  # 0 s: a tick; 10 minutes next to 40 days: low
        assert heights.count(None) == 16  # skipped, missed and dependency_failed never ran
        assert browser.log == []  # nothing refused by the policy, nothing failed to load
        browser.screenshot(ARTIFACTS / "status-page-job-chart.png", width=1280, mobile=False)
        browser.screenshot(ARTIFACTS / "status-page-job-chart-phone.png", width=390, mobile=True)
        measured = overflow(browser)
        assert measured["page"] == [390, 390]

        browser.viewport(1280, mobile=False)
        browser.load(f"{base}/jobs/once")
        assert browser.count("g.col") == 1
        assert browser.evaluate("document.querySelector('svg').ariaLabel") == (
            "Outcomes and durations of the last 1 run, oldest first: 1 succeeded. It took 12s."
        )
        browser.load(f"{base}/jobs/never")
        assert browser.count("svg") == 0
        assert browser.text("main p.muted") == ["No runs recorded yet."]
    assert json.loads((jobs_dir / "once.runs.jsonl").read_text())["outcome"] == "succeeded"
