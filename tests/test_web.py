"""The read-only status page on the metrics listener: what it shows, what it escapes, what it
refuses, and the same pages in a real headless Chromium."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from kron.engine import records
from kron.service import web
from kron.service.daemon import Daemon
from kron.service.html import CONTENT_SECURITY_POLICY

from .browser import ARTIFACTS, DevTools, kron_daemon, wait_until
from .clock import FakeClock
from .harness import Events, read_records, write_job
from .test_metrics import with_listener

T0 = datetime(2026, 3, 2, 7, 0, 30, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'


class Page(HTMLParser):
    """What a reader sees: the tables as rows of cell text, the <pre> blocks, links, styles."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.pres: list[str] = []
        self.links: list[str] = []
        self.styles: list[str] = []
        self.tags: list[str] = []
        self.headings: list[str] = []
        self.paragraphs: list[str] = []
        self.code: list[str] = []
        self._code: list[str] | None = None
        self._text: list[str] | None = None
        self._cell: list[str] | None = None
        self._pre: list[str] | None = None
        self._style: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")
        elif tag == "pre":
            self._pre = []
        elif tag == "style":
            self._style = []
        elif tag == "a":
            self.links.append(dict(attrs)["href"] or "")
        elif tag in ("h1", "p"):
            self._text = []
        elif tag == "code":
            self._code = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "pre" and self._pre is not None:
            self.pres.append("".join(self._pre))
            self._pre = None
        elif tag == "style" and self._style is not None:
            self.styles.append("".join(self._style))
            self._style = None
        elif tag == "code" and self._code is not None:
            self.code.append("".join(self._code))
            self._code = None
        elif tag in ("h1", "p") and self._text is not None:
            text = " ".join("".join(self._text).split())
            (self.headings if tag == "h1" else self.paragraphs).append(text)
            self._text = None

    def handle_data(self, data: str) -> None:
        for part in (self._cell, self._pre, self._style, self._text, self._code):
            if part is not None:
                part.append(data)


async def get_page(client: httpx.AsyncClient, path: str, status: int = 200) -> Page:
    response = await client.get(path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    return Page(response.text)


def test_the_jobs_page_shows_schedule_zone_next_run_last_outcome_tags_and_state(
    jobs_dir: Path,
) -> None:
    write_job(
        jobs_dir,
        "backups/nightly.toml",
        'schedule = "0 3 * * *"\ntimezone = "Europe/Berlin"\ncommand = ["true"]\n'
        '[tags]\nteam = "ops"\ntier = "1"\n',
    )
    write_job(
        jobs_dir, "probe.toml", 'schedule = "* * * * *"\ntimezone = "UTC"\nshell = "exit 2"\n'
    )
    write_job(
        jobs_dir,
        "off.toml",
        'schedule = "@daily"\ntimezone = "UTC"\nenabled = false\ncommand = ["true"]\n',
    )
    write_job(jobs_dir, "held.toml", 'schedule = "@hourly"\ntimezone = "UTC"\ncommand = ["true"]\n')
    write_job(jobs_dir, "broken.toml", 'schedule = "61 * * * *"\ncommand = ["true"]\n')
    clock = FakeClock(T0)

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        daemon.set_paused("held", True)
        await clock.set(datetime(2026, 3, 2, 7, 1, tzinfo=UTC))
        await events.until(lambda e: e.outcomes("probe") == ["failed"])
        page = await get_page(client, "/")
        assert page.tables == [
            [
                ["Job", "Schedule", "Zone", "Next run", "Last outcome", "Tags", "State"],
                [
                    "backups/nightly",
                    "0 3 * * *",
                    "Europe/Berlin",
                    "2026-03-03 03:00:00 CET (in 19 h)",
                    "-",
                    "team=opstier=1",
                    "scheduled",
                ],
                ["held", "@hourly", "UTC", "-", "-", "", "paused"],
                ["off", "@daily", "UTC", "-", "-", "", "disabled"],
                [
                    "probe",
                    "* * * * *",
                    "UTC",
                    "2026-03-02 07:02:00 UTC (in 60 s)",
                    "failed",
                    "",
                    "scheduled",
                ],
            ]
        ]
        assert page.links[1:5] == [
            "/jobs/backups/nightly",
            "/jobs/held",
            "/jobs/off",
            "/jobs/probe",
        ]
        assert page.pres == ["1:1: schedule: minute field '61' is not valid; expected 0-59"]
        assert page.code[-1] == str(jobs_dir / "broken.toml")

    with_listener(jobs_dir, clock, body)


def test_a_job_page_lists_its_runs_newest_first_each_linking_to_its_run(
    jobs_dir: Path, tmp_path: Path
) -> None:
    count = tmp_path / "count"
    write_job(
        jobs_dir,
        "team/alt.toml",
        'schedule = "* * * * *"\ntimezone = "America/New_York"\ndescription = "odd runs fail"\n'
        f'shell = "n=$(cat {count} 2>/dev/null || echo 0); echo $((n + 1)) > {count}; '
        'exit $((n % 2))"\n',
    )
    clock = FakeClock(T0)

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        for minute in (1, 2, 3):
            await clock.set(datetime(2026, 3, 2, 7, minute, tzinfo=UTC))
            await events.until(lambda e, n=minute: len(e.ended()) == n)
        ids = [e.run_id for e in events.ended()]
        page = await get_page(client, "/jobs/team/alt")
        fields, runs = page.tables
        assert fields[:5] == [
            ["Schedule", "* * * * *"],
            ["Zone", "America/New_York"],
            ["Next run", "2026-03-02 02:04:00 EST (in 60 s)"],
            ["State", "scheduled"],
            ["Last outcome", "succeeded"],
        ]
        assert runs == [
            ["Run", "Outcome", "Trigger", "Attempt", "Slot", "Started", "Duration", "Exit"],
            *(
                [
                    ids[i],
                    outcome,
                    "schedule",
                    "1",
                    f"2026-03-02 02:0{i + 1}:00 EST ({ago})",
                    f"2026-03-02 02:0{i + 1}:00 EST ({ago})",
                    "0s",
                    code,
                ]
                for i, outcome, code, ago in [
                    (2, "succeeded", "0", "now"),
                    (1, "failed", "1", "60 s ago"),
                    (0, "succeeded", "0", "2 min ago"),
                ]
            ),
        ]
        run_links = [link for link in page.links if link.startswith("/runs/")]
        assert run_links == [f"/runs/{ids[i]}?job=team/alt" for i in (2, 1, 0)]

    with_listener(jobs_dir, clock, body)


def test_a_job_page_shows_the_newest_runs_and_every_kept_run_on_asking(
    jobs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web, "RUNS_SHOWN", 2)
    write_job(jobs_dir, "j.toml", 'schedule = "* * * * *"\ntimezone = "UTC"\ncommand = ["true"]\n')
    clock = FakeClock(T0)

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        for minute in (1, 2, 3):
            await clock.set(datetime(2026, 3, 2, 7, minute, tzinfo=UTC))
            await events.until(lambda e, n=minute: len(e.ended()) == n)
        ids = [e.run_id for e in events.ended()]
        newest = await get_page(client, "/jobs/j")
        assert [row[0] for row in newest.tables[1][1:]] == [ids[2], ids[1]]
        assert newest.paragraphs == ["The newest 2 of 3 kept runs. Show all"]
        assert "/jobs/j?all=1" in newest.links
        every = await get_page(client, "/jobs/j?all=1")
        assert [row[0] for row in every.tables[1][1:]] == [ids[2], ids[1], ids[0]]
        assert every.paragraphs == []

    with_listener(jobs_dir, clock, body)


def test_a_run_page_shows_its_times_exit_code_output_and_deliveries(jobs_dir: Path) -> None:
    write_job(
        jobs_dir,
        "report.toml",
        'schedule = "* * * * *"\ntimezone = "UTC"\n'
        "shell = \"echo 'line one'; echo 'line two'; echo oops >&2; exit 4\"\n",
    )
    clock = FakeClock(T0)

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        await clock.set(datetime(2026, 3, 2, 7, 1, tzinfo=UTC))
        await events.until(lambda e: e.outcomes() == ["failed"])
        (ended,) = events.ended()
        # A notification's line, as kron.notify.deliveries appends it beside the run it reports on.
        records.append(
            jobs_dir / "report.runs.jsonl",
            {
                "v": 1,
                "run_id": ended.run_id,
                "job": "report",
                "delivery": {"target": "webhook", "ok": False, "attempts": 3, "error": "503"},
                "at": "2026-03-02T07:01:05Z",
            },
        )
        for path in (f"/runs/{ended.run_id}?job=report", f"/runs/{ended.run_id}"):
            page = await get_page(client, path)
            fields, deliveries = page.tables
            assert fields == [
                ["Job", "report"],
                ["Outcome", "failed"],
                ["Trigger", "schedule"],
                ["Attempt", "1"],
                ["Slot", "2026-03-02 07:01:00 UTC (now)"],
                ["Started", "2026-03-02 07:01:00 UTC (now)"],
                ["Ended", "2026-03-02 07:01:00 UTC (now)"],
                ["Duration", "0s"],
                ["Exit code", "4"],
                ["Host", ended_host(jobs_dir)],
                ["PID", str(ended.pid)],
                ["Config SHA", daemon.catalog.active["report"].config_sha],
            ]
            assert deliveries == [
                ["Target", "Result", "Attempts", "At", "Error"],
                ["webhook", "failed", "3", "2026-03-02 07:01:05 UTC (in 5 s)", "503"],
            ]
            assert page.pres == ["line one\nline two\n", "oops\n"]

    with_listener(jobs_dir, clock, body)


def ended_host(jobs_dir: Path) -> str:
    return str(read_records(jobs_dir / "report.runs.jsonl")[-2]["host"])


def test_job_output_and_every_other_value_is_escaped_never_run(
    jobs_dir: Path, tmp_path: Path
) -> None:
    hostile = tmp_path / "hostile.txt"
    hostile.write_text(HOSTILE, encoding="utf-8")
    write_job(
        jobs_dir,
        "evil.toml",
        'schedule = "* * * * *"\ntimezone = "UTC"\n'
        f"description = {json.dumps(HOSTILE)}\n"
        f'shell = "cat {hostile}; cat {hostile} >&2; exit 1"\n'
        f"[tags]\nx = {json.dumps(HOSTILE)}\n",
    )
    write_job(jobs_dir, "<b>bold</b>.toml", 'schedule = "61 * * * *"\ncommand = ["true"]\n')
    clock = FakeClock(T0)

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        await clock.set(datetime(2026, 3, 2, 7, 1, tzinfo=UTC))
        await events.until(lambda e: e.outcomes() == ["failed"])
        (ended,) = events.ended()
        pages = {}
        for path in ("/", "/jobs/evil", f"/runs/{ended.run_id}"):
            response = await client.get(path)
            assert response.status_code == 200
            assert "<script" not in response.text
            pages[path] = page = Page(response.text)
            assert {"script", "img", "b"} & set(page.tags) == set()
        assert pages[f"/runs/{ended.run_id}"].pres == [HOSTILE, HOSTILE]
        assert pages["/jobs/evil"].paragraphs[0] == HOSTILE
        assert pages["/"].tables[0][1][5] == f"x={HOSTILE}"
        assert pages["/"].code[-1] == str(jobs_dir / "<b>bold</b>.toml")

    with_listener(jobs_dir, clock, body)


def test_unknown_jobs_runs_and_paths_answer_404(jobs_dir: Path) -> None:
    write_job(jobs_dir, "j.toml", 'schedule = "* * * * *"\ntimezone = "UTC"\ncommand = ["true"]\n')
    clock = FakeClock(T0)

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        await clock.set(datetime(2026, 3, 2, 7, 1, tzinfo=UTC))
        await events.until(lambda e: e.outcomes() == ["succeeded"])
        for path in (
            "/jobs/nope",
            "/jobs/j/more",
            "/jobs/../j",
            "/runs/0123456789abcdef0123",
            "/runs/0123456789abcdef0123?job=j",
            f"/runs/{events.ended()[0].run_id[:10]}",  # a page names a whole run id
            "/runs/%3Cscript%3E",
            "/runs",
            "/jobs",
            "/favicon.ico",
        ):
            page = await get_page(client, path, status=404)
            assert page.headings == ["Not found"]

    with_listener(jobs_dir, clock, body)


def test_anything_but_get_answers_405_allowing_get(jobs_dir: Path) -> None:
    write_job(jobs_dir, "j.toml", 'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\n')

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        for method, path in [
            ("POST", "/"),
            ("PUT", "/metrics"),
            ("DELETE", "/jobs/j"),
            ("PATCH", "/runs/x"),
            ("OPTIONS", "/"),
            ("HEAD", "/"),
        ]:
            response = await client.request(method, path)
            assert (response.status_code, response.headers["allow"]) == (405, "GET"), method
        assert (await client.get("/jobs/j")).status_code == 200
        assert daemon.scheduler is not None
        assert [js.paused for js in daemon.scheduler.jobs.values()] == [False]

    with_listener(jobs_dir, FakeClock(T0), body)


def test_the_policy_forbids_scripts_and_allows_exactly_the_page_s_own_stylesheet(
    jobs_dir: Path,
) -> None:
    write_job(jobs_dir, "j.toml", 'schedule = "@daily"\ntimezone = "UTC"\ncommand = ["true"]\n')

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        for path, status in [("/", 200), ("/jobs/j", 200), ("/nothing", 404)]:
            response = await client.get(path)
            assert response.status_code == status
            (style,) = Page(response.text).styles
            digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
            assert response.headers["content-security-policy"] == (
                f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'none'; "
                "script-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
            )
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"

    with_listener(jobs_dir, FakeClock(T0), body)


def test_a_run_still_going_shows_as_running_on_every_page(jobs_dir: Path, tmp_path: Path) -> None:
    release = tmp_path / "release"
    write_job(
        jobs_dir,
        "slow.toml",
        'schedule = "* * * * *"\ntimezone = "UTC"\n'
        f'shell = "while [ ! -e {release} ]; do sleep 0.02; done"\n',
    )
    clock = FakeClock(T0)

    async def body(daemon: Daemon, events: Events, client: httpx.AsyncClient) -> None:
        await clock.set(datetime(2026, 3, 2, 7, 1, tzinfo=UTC))
        await events.until(lambda e: len(e.started()) == 1)
        run_id = events.started()[0].run_id
        try:
            index = await get_page(client, "/")
            assert index.tables[1] == [
                ["Run", "Job", "State", "Trigger", "Attempt", "Started"],
                [run_id, "slow", "running", "schedule", "1", "2026-03-02 07:01:00 UTC (now)"],
            ]
            assert index.tables[0][1][6] == "running"
            job = await get_page(client, "/jobs/slow")
            assert job.tables[1][1][:2] == [run_id, "running"]
            run = await get_page(client, f"/runs/{run_id}")
            assert run.tables[0][:2] == [["Job", "slow"], ["Outcome", "running"]]
            assert run.pres == []
        finally:
            release.touch()
        await events.until(lambda e: e.outcomes() == ["succeeded"])

    with_listener(jobs_dir, clock, body)


# -- a real browser ---------------------------------------------------------------------------


def test_a_real_browser_follows_a_job_to_its_run_and_shows_the_output(
    jobs_dir: Path, short_tmp: Path, browser: DevTools
) -> None:
    write_job(
        jobs_dir,
        "backups/nightly.toml",
        'description = "Dump the database and ship it off-site"\nschedule = "@reboot"\n'
        'timezone = "Europe/Berlin"\n'
        "shell = \"echo 'dumped 1432 tables to /var/backups/db.sql.gz'; "
        "echo '<script>alert(1)</script> stays text'\"\n"
        '[tags]\nteam = "ops"\ntier = "1"\n',
    )
    write_job(
        jobs_dir,
        "probe.toml",
        'schedule = "@reboot"\ntimezone = "UTC"\nshell = "echo connection refused >&2; exit 7"\n',
    )
    write_job(
        jobs_dir,
        "reports/weekly.toml",
        'schedule = "0 9 * * MON"\ntimezone = "America/New_York"\nenabled = false\n'
        'command = ["true"]\n',
    )
    write_job(jobs_dir, "typo.toml", 'schedule = "61 * * * *"\ncommand = ["true"]\n')
    nightly = jobs_dir / "backups" / "nightly.runs.jsonl"
    probe = jobs_dir / "probe.runs.jsonl"
    with kron_daemon(jobs_dir, short_tmp) as base:
        (run,) = wait_until(
            "the @reboot runs",
            lambda: (
                [r for r in records.read(nightly) if r.get("outcome") == "succeeded"]
                if any(r.get("outcome") == "failed" for r in records.read(probe))
                else None
            ),
        )
        browser.viewport(1280, mobile=False)
        browser.load(f"{base}/")
        assert browser.text("h1") == ["Jobs"]
        browser.screenshot(ARTIFACTS / "status-page-jobs.png", width=1280, mobile=False)
        browser.screenshot(ARTIFACTS / "status-page-jobs-phone.png", width=390, mobile=True)

        browser.click('a[href="/jobs/backups/nightly"]')
        assert browser.location() == f"{base}/jobs/backups/nightly"
        assert browser.text("h1") == ["backups/nightly"]

        browser.screenshot(ARTIFACTS / "status-page-job-phone.png", width=390, mobile=True)

        browser.click(f'a[href^="/runs/{run["run_id"]}"]')
        assert browser.location() == f"{base}/runs/{run['run_id']}?job=backups/nightly"
        assert browser.text("pre") == [
            "dumped 1432 tables to /var/backups/db.sql.gz\n<script>alert(1)</script> stays text\n",
            "(empty)",
        ]
        browser.screenshot(ARTIFACTS / "status-page.png", width=1280, mobile=False)
        browser.screenshot(ARTIFACTS / "status-page-phone.png", width=390, mobile=True)
    assert (ARTIFACTS / "status-page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
