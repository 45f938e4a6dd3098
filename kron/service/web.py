"""The metrics listener: `/metrics` for Prometheus and a read-only status page for people.

    GET /                  jobs, running runs, invalid files
    GET /jobs/<id>         one job and its runs, newest first (`?all=1`: every kept run)
    GET /runs/<run_id>     one run: times, outcome, output, deliveries (`?job=<id>` finds it
                           in that job's records without searching them all)
    GET /metrics           Prometheus text format (kron.service.metrics)

Pages are plain HTML rendered here, no script: job output is untrusted, so every value goes
through `html.escape` and the Content-Security-Policy forbids scripts outright.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from kron import __version__
from kron.engine import history, records
from kron.model.errors import KronError
from kron.model.run import HOST
from kron.model.units import format_duration
from kron.service.control import ControlAPI, job_view
from kron.service.httpd import Request, Response
from kron.service.metrics import CONTENT_TYPE, Metrics

if TYPE_CHECKING:
    from kron.service.daemon import Daemon

__all__ = ["StatusSite", "listen_address"]

RUNS_SHOWN = 100  # on a job's page, unless ?all=1
_RUN_ID = re.compile(r"[\w.-]{1,100}")
_UTC = ZoneInfo("UTC")

CSS = """
:root{color-scheme:light dark;--fg:#1b1f24;--muted:#667;--line:#d8dce1;--bg:#fff;--code:#f4f5f7;
--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--run:#0969da}
@media (prefers-color-scheme:dark){:root{--fg:#e6e8eb;--muted:#9aa3ad;--line:#363c44;
--bg:#14171b;--code:#1e2227;--ok:#3fb950;--bad:#f85149;--warn:#d29922;--run:#58a6ff}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header{display:flex;gap:.75rem;align-items:baseline;padding:.6rem 1rem;
border-bottom:1px solid var(--line)}
header a{font-weight:700;font-size:1.1rem;color:inherit;text-decoration:none}
main{max-width:72rem;margin:0 auto;padding:.5rem 1rem 2rem}
h1{font-size:1.35rem;margin:.8rem 0 .4rem;overflow-wrap:anywhere}
h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
a{color:var(--run)}
.muted,small{color:var(--muted)}
nav{font-size:.9rem;overflow-wrap:anywhere}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;border:1px solid var(--line);
border-radius:6px}
table{border-collapse:collapse;width:100%}
th,td{padding:.4rem .65rem;text-align:left;vertical-align:top;white-space:nowrap;
border-bottom:1px solid var(--line)}
tr:last-child td{border-bottom:0}
th{font-size:.8rem;text-transform:uppercase;letter-spacing:.03em;color:var(--muted);
background:var(--code)}
table.fields th{width:1%;text-transform:none;letter-spacing:0;font-size:.9rem}
table.fields td{white-space:normal;overflow-wrap:anywhere}
code,pre{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:var(--code);border:1px solid var(--line);border-radius:6px;padding:.6rem .75rem;
margin:0;white-space:pre-wrap;overflow-wrap:anywhere;max-height:70vh;overflow:auto}
.badge{display:inline-block;padding:0 .45rem;border-radius:999px;font-size:.85rem;
border:1px solid currentColor}
.ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}.run{color:var(--run)}
.tag{display:inline-block;background:var(--code);border:1px solid var(--line);
border-radius:4px;padding:0 .3rem;margin:0 .2rem .1rem 0;font-size:.85rem}
.summary{display:flex;flex-wrap:wrap;gap:.3rem 1.2rem;margin:.2rem 0 1rem}
.problem{margin:.6rem 0}
.problem code{display:block;margin-bottom:.2rem;overflow-wrap:anywhere}
table.sticky td:first-child,table.sticky th:first-child{position:sticky;left:0;z-index:1;
background:var(--bg);box-shadow:1px 0 0 var(--line)}
table.sticky th:first-child{background:var(--code)}
""".strip()
_STYLE_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'none'; "
    "script-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HTML_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
_OUTCOME_CLASS = {
    outcome: css
    for css, outcomes in [
        ("ok", "succeeded"),
        ("bad", "failed timeout abandoned dependency_failed wait_timeout"),
        ("warn", "skipped missed replaced cancelled"),
        ("run", "running started"),
    ]
    for outcome in outcomes.split()
}
# Shown first on a run's page, in this order; any other field of the record follows.
_RUN_FIELDS = (
    ("job", "Job"),
    ("outcome", "Outcome"),
    ("trigger", "Trigger"),
    ("attempt", "Attempt"),
    ("slot", "Slot"),
    ("started_at", "Started"),
    ("ended_at", "Ended"),
    ("duration_s", "Duration"),
    ("exit_code", "Exit code"),
    ("signal", "Signal"),
    ("truncated", "Output truncated"),
    ("upstream", "Triggered by"),
    ("host", "Host"),
    ("pid", "PID"),
    ("config_sha", "Config SHA"),
)
_NOT_FIELDS = {"v", "run_id", "stdout", "stderr", "error"}


def listen_address(text: str) -> tuple[str, int]:
    """`127.0.0.1:9108` -> ("127.0.0.1", 9108); `[::1]:9108` -> ("::1", 9108).

    Raises:
        KronError: naming the setting, when there is no port or it is out of range.
    """
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise KronError(f"metrics = {text!r}: want HOST:PORT with a port from 0 to 65535")
    return host, int(port)


class StatusSite:
    """The handler behind the `metrics` listener; GET only, nothing here changes anything."""

    def __init__(self, daemon: Daemon, metrics: Metrics) -> None:
        self.daemon = daemon
        self.metrics = metrics
        self._control = ControlAPI(daemon)

    async def __call__(self, request: Request) -> Response:
        if request.method == "HEAD":
            # No body in an answer to HEAD (RFC 9110 9.3.2): kron.service.httpd would send one.
            return Response(status=405, content_type="text/plain", headers={"allow": "GET"})
        if request.method != "GET":
            return _page(
                405,
                "Method not allowed",
                f"<p>This page is read-only: GET only, not {esc(request.method)}.</p>",
                headers={"allow": "GET"},
            )
        parts = [p for p in request.path.split("/") if p]
        if parts == ["metrics"]:
            return Response(body=self.metrics.render(), content_type=CONTENT_TYPE)
        if not parts:
            return _page(200, "Jobs", self.index())
        if parts[0] == "jobs" and len(parts) > 1:
            return await self.job_page(
                "/".join(parts[1:]), every=request.arg("all") in ("1", "true")
            )
        if parts[0] == "runs" and len(parts) == 2:
            return await self.run_page(parts[1], job_hint=request.arg("job"))
        return _not_found(f"Nothing is served at {request.path}.")

    @property
    def _now(self) -> datetime:
        return self.daemon.clock.now()

    def _zone(self, job_id: str) -> ZoneInfo:
        """The job's zone, for its times; UTC for a job no longer loaded."""
        scheduler = self.daemon.scheduler
        js = scheduler.jobs.get(job_id) if scheduler is not None else None
        return js.job.timezone if js is not None else _UTC

    def index(self) -> str:
        """The jobs table, the runs alive now, and the files that failed to load."""
        status = self._control.status()
        jobs = self._control.jobs({})
        now = self._now
        started = records.parse_time(status["started_at"]) if status["started_at"] else None
        out = [
            "<h1>Jobs</h1>",
            '<p class="summary">',
            f"<span>{len(jobs)} jobs loaded</span>",
            f"<span>{len(status['running'])} running</span>",
            f"<span>{len(status['invalid_files'])} invalid files</span>",
            f"<span>up since {_time(started, _UTC, now, inline=True)}</span>" if started else "",
            "</p>",
        ]
        rows = []
        for job in jobs:
            zone = ZoneInfo(job["timezone"])
            rows.append(
                [
                    f'<a href="{esc(_job_href(job["id"]))}">{esc(job["id"])}</a>',
                    f"<code>{esc(job['schedule'])}</code>",
                    esc(job["timezone"]),
                    _time(_parse(job["next_fire"]), zone, now),
                    _outcome(job["last_outcome"]),
                    _tags(job["tags"]),
                    _job_state(job),
                ]
            )
        out.append(
            _table(
                ["Job", "Schedule", "Zone", "Next run", "Last outcome", "Tags", "State"],
                rows,
                empty="No jobs loaded.",
                sticky=True,
            )
        )
        if status["running"]:
            out.append("<h2>Running now</h2>")
            out.append(
                _table(
                    ["Run", "Job", "State", "Trigger", "Attempt", "Started"],
                    [
                        [
                            _run_link(run["run_id"], run["job"]),
                            f'<a href="{esc(_job_href(run["job"]))}">{esc(run["job"])}</a>',
                            _outcome(run["state"]),
                            esc(run["trigger"]),
                            esc(run["attempt"]),
                            _time(_parse(run["started_at"]), self._zone(run["job"]), now),
                        ]
                        for run in status["running"]
                    ],
                )
            )
        if status["invalid_files"]:
            out.append("<h2>Invalid files</h2>")
            out.append(
                '<p class="muted">A job whose file turned invalid keeps running its last good '
                "version.</p>"
            )
            for entry in status["invalid_files"]:
                path = entry["path"]
                # Each error starts with the path, already the heading: `path:line:col: ...`.
                errors = [e.removeprefix(f"{path}:") for e in entry["errors"]]
                out.append(
                    f'<div class="problem"><code>{esc(path)}</code>'
                    f"<pre>{esc(chr(10).join(errors))}</pre></div>"
                )
        return "\n".join(out)

    async def job_page(self, job_id: str, *, every: bool) -> Response:
        """One job's definition and state, and its runs from its records file, newest first."""
        scheduler = self.daemon.scheduler
        assert scheduler is not None
        js = scheduler.jobs.get(job_id)
        if js is None:
            return _not_found(f"No job {job_id!r} is loaded.")
        job = job_view(js)
        zone = js.job.timezone
        now = self._now
        found = await asyncio.to_thread(history.runs, self.daemon.records_root, job=job_id)
        shown = found if every else found[:RUNS_SHOWN]
        fields = [
            ("Schedule", f"<code>{esc(job['schedule'])}</code>"),
            ("Zone", esc(job["timezone"])),
            ("Next run", _time(_parse(job["next_fire"]), zone, now, inline=True)),
            ("State", _job_state(job)),
            ("Last outcome", _outcome(job["last_outcome"])),
            ("Last success", _time(_parse(job["last_success_at"]), zone, now, inline=True)),
            ("Tags", _tags(job["tags"]) or "-"),
            ("File", f"<code>{esc(job['path'])}</code>"),
            ("Config SHA", f"<code>{esc(job['config_sha'])}</code>"),
        ]
        out = [
            _crumbs([("/", "Jobs")], job_id),
            f"<h1>{esc(job_id)}</h1>",
            f"<p>{esc(job['description'])}</p>" if job["description"] else "",
            _fields(fields),
            "<h2>Runs</h2>",
        ]
        if len(shown) < len(found):
            out.append(
                f'<p class="muted">The newest {len(shown)} of {len(found)} kept runs. '
                f'<a href="{esc(_job_href(job_id))}?all=1">Show all</a></p>'
            )
        rows = [
            [
                _run_link(str(r.get("run_id")), job_id),
                _outcome(r.get("outcome")),
                esc(r.get("trigger", "")),
                esc(r.get("attempt", "")),
                _time(_parse(r.get("slot")), zone, now),
                _time(_parse(r.get("started_at")), zone, now),
                _duration(r.get("duration_s")),
                _exit(r),
            ]
            for r in shown
        ]
        out.append(
            _table(
                ["Run", "Outcome", "Trigger", "Attempt", "Slot", "Started", "Duration", "Exit"],
                rows,
                empty="No runs recorded yet.",
                sticky=True,
            )
        )
        return _page(200, job_id, "\n".join(out))

    async def run_page(self, run_id: str, *, job_hint: str | None) -> Response:
        """A run's record: times, outcome, error, output, and any further lines (deliveries)."""
        if not _RUN_ID.fullmatch(run_id):
            return _not_found(f"No run {run_id!r}.")
        lines = await asyncio.to_thread(self._run_lines, run_id, job_hint)
        if not lines:
            return _not_found(f"No run {run_id!r} in the records.")
        terminal = [r for r in lines if r.get("outcome") in records.TERMINAL_OUTCOMES]
        started = [r for r in lines if r.get("outcome") == records.STARTED_OUTCOME]
        record = terminal[0] if terminal else {**started[0], "outcome": "running"}
        others = [r for r in lines if r is not record and r not in started]
        job_id = str(record.get("job", ""))
        scheduler = self.daemon.scheduler
        assert scheduler is not None
        js = scheduler.jobs.get(job_id)
        zone = js.job.timezone if js is not None else _UTC
        now = self._now
        fields = []
        for key, label in _RUN_FIELDS:
            value = record.get(key)
            if value is None or (key == "truncated" and not value):
                continue
            if key == "job":
                shown = (
                    f'<a href="{esc(_job_href(job_id))}">{esc(job_id)}</a>'
                    if js is not None
                    else esc(job_id)
                )
            elif key == "outcome":
                shown = _outcome(value)
            elif key in ("slot", "started_at", "ended_at"):
                shown = _time(_parse(value), zone, now, inline=True)
            elif key == "duration_s":
                shown = _duration(value)
            else:
                shown = esc(value)
            fields.append((label, shown))
        known = {key for key, _ in _RUN_FIELDS} | _NOT_FIELDS
        fields += [(k, _value(v)) for k, v in record.items() if k not in known]
        crumbs = [("/", "Jobs")]
        if js is not None:
            crumbs.append((_job_href(job_id), job_id))
        out = [
            _crumbs(crumbs, run_id),
            f"<h1>Run <code>{esc(run_id)}</code></h1>",
            _fields(fields),
        ]
        if record.get("error"):
            out += ["<h2>Error</h2>", f"<pre>{esc(record['error'])}</pre>"]
        for stream in ("stdout", "stderr"):
            text = record.get(stream)
            if isinstance(text, str):
                body = esc(text) if text else '<span class="muted">(empty)</span>'
                out += [f"<h2>{stream}</h2>", f"<pre>{body}</pre>"]
        deliveries = [r for r in others if isinstance(r.get("delivery"), dict)]
        if deliveries:
            out.append("<h2>Deliveries</h2>")
            out.append(
                _table(
                    ["Target", "Result", "Attempts", "At", "Error"],
                    [_delivery_row(r, zone, now) for r in deliveries],
                )
            )
        notes = [r for r in others if r not in deliveries]
        if notes:
            out.append("<h2>Other lines</h2>")
            out.append(
                _table(["Record line"], [[f"<code>{esc(_compact(r))}</code>"] for r in notes])
            )
        return _page(200, f"Run {run_id}", "\n".join(out))

    def _run_lines(self, run_id: str, job_hint: str | None) -> list[dict[str, Any]]:
        """Every record line of the run, from the hinted job's file if that has it."""
        sink, scheduler = self.daemon.sink, self.daemon.scheduler
        assert sink is not None
        assert scheduler is not None
        if job_hint and job_hint in scheduler.jobs:
            path = sink.path(job_hint)
            lines = [r for r in records.read(path) if r.get("run_id") == run_id]
            if lines:
                return lines
        # find_run matches prefixes, as `kron show` does; a page's address names one run.
        found = history.find_run(self.daemon.records_root, run_id)
        return [r for r in found if r.get("run_id") == run_id]


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(
    status: int, title: str, body: str, *, headers: Mapping[str, str] | None = None
) -> Response:
    document = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{esc(title)} · kron</title>
<style>{CSS}</style>
</head>
<body>
<header><a href="/">kron</a><span class="muted">{esc(HOST)} · {esc(__version__)}</span></header>
<main>
{body}
</main>
</body>
</html>
"""
    return Response(
        status=status,
        body=document.encode(),
        content_type="text/html; charset=utf-8",
        headers={**HTML_HEADERS, **(headers or {})},
    )


def _not_found(message: str) -> Response:
    return _page(
        404,
        "Not found",
        f'<h1>Not found</h1><p>{esc(message)}</p><p><a href="/">All jobs</a></p>',
    )


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    empty: str = "",
    sticky: bool = False,
) -> str:
    """A table whose cells are HTML already; it scrolls sideways on a narrow screen, with the
    first column kept in view if `sticky`."""
    body = ["<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows]
    if not body:
        return f'<p class="muted">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    table = '<table class="sticky">' if sticky else "<table>"
    return (
        f'<div class="scroll">{table}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _fields(fields: Iterable[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{esc(label)}</th><td>{value}</td></tr>" for label, value in fields)
    return f'<div class="scroll"><table class="fields">{rows}</table></div>'


def _crumbs(links: Iterable[tuple[str, str]], here: str) -> str:
    parts = [f'<a href="{esc(href)}">{esc(label)}</a>' for href, label in links]
    return f"<nav>{' / '.join([*parts, esc(here)])}</nav>"


def _job_href(job_id: str) -> str:
    return "/jobs/" + quote(job_id, safe="/")


def _run_link(run_id: str, job_id: str) -> str:
    href = f"/runs/{quote(run_id, safe='')}?job={quote(job_id, safe='/')}"
    return f'<a href="{esc(href)}"><code>{esc(run_id)}</code></a>'


def _parse(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return records.parse_time(value)
    except ValueError:
        return None


def _time(when: datetime | None, zone: ZoneInfo, now: datetime, *, inline: bool = False) -> str:
    """The time in the job's zone, with how far it is from now (below it in a table column,
    beside it elsewhere); `-` for none."""
    if when is None:
        return '<span class="muted">-</span>'
    local = when.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")
    between = " " if inline else "<br>"
    return (
        f'<time datetime="{esc(records.format_time(when))}">{esc(local)}</time>'
        f"{between}<small>({esc(_relative(when - now))})</small>"
    )


def _relative(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    size = abs(seconds)
    if size < 1:
        return "now"
    if size < 120:
        text = f"{size:.0f} s"
    elif size < 2 * 3600:
        text = f"{size / 60:.0f} min"
    elif size < 2 * 86400:
        text = f"{size / 3600:.0f} h"
    else:
        text = f"{size / 86400:.0f} d"
    return f"in {text}" if seconds > 0 else f"{text} ago"


def _duration(value: object) -> str:
    if not isinstance(value, int | float):
        return '<span class="muted">-</span>'
    return esc(format_duration(timedelta(seconds=value)))


def _exit(record: Mapping[str, Any]) -> str:
    if record.get("exit_code") is not None:
        return esc(record["exit_code"])
    if record.get("signal") is not None:
        return esc(f"signal {record['signal']}")
    return '<span class="muted">-</span>'


def _outcome(value: object) -> str:
    if not value:
        return '<span class="muted">-</span>'
    css = _OUTCOME_CLASS.get(str(value), "muted")
    return f'<span class="badge {css}">{esc(value)}</span>'


def _tags(tags: Mapping[str, str]) -> str:
    return "".join(f'<span class="tag">{esc(k)}={esc(v)}</span>' for k, v in sorted(tags.items()))


def _job_state(job: Mapping[str, Any]) -> str:
    states = []
    if job["running"]:
        states.append('<span class="badge run">running</span>')
    if job["paused"]:
        states.append('<span class="badge warn">paused</span>')
    if not job["enabled"]:
        states.append('<span class="badge warn">disabled</span>')
    return " ".join(states) or '<span class="muted">scheduled</span>'


def _value(value: object) -> str:
    if isinstance(value, str):
        return esc(value)
    return f"<code>{esc(json.dumps(value, ensure_ascii=False, sort_keys=True))}</code>"


def _delivery_row(line: Mapping[str, Any], zone: ZoneInfo, now: datetime) -> list[str]:
    """A notification's delivery line (kron.notify): target, sent or failed, attempts, error."""
    delivery = line["delivery"]
    ok = delivery.get("ok")
    result = '<span class="badge ok">sent</span>' if ok else '<span class="badge bad">failed</span>'
    return [
        esc(delivery.get("target", "")),
        result,
        esc(delivery.get("attempts", "")),
        _time(_parse(line.get("at")), zone, now),
        esc(delivery.get("error") or ""),
    ]


def _compact(record: Mapping[str, Any]) -> str:
    return json.dumps(
        {k: v for k, v in record.items() if k not in ("v", "run_id", "job")},
        ensure_ascii=False,
        sort_keys=True,
    )
