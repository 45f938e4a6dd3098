"""The status page's HTML: one stylesheet, no script, every value escaped.

Job output is untrusted, so every value goes through `html.escape` and the Content-Security-
Policy forbids scripts outright.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from kron import __version__
from kron.model.run import HOST, DeliveryNote, Outcome, RunRecord, RunState
from kron.model.times import format_time
from kron.model.units import format_duration
from kron.service.httpd import Response
from kron.service.view import JobView

CSS = """
:root{color-scheme:light dark;--fg:#1b1f24;--muted:#667;--line:#d8dce1;--bg:#fff;--code:#f4f5f7;
--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--run:#0969da}
@media (prefers-color-scheme:dark){:root{--fg:#e6e8eb;--muted:#9aa3ad;--line:#363c44;
--bg:#14171b;--code:#1e2227;--ok:#3fb950;--bad:#f85149;--warn:#d29922;--run:#58a6ff}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header{display:flex;flex-wrap:wrap;gap:.2rem .75rem;align-items:baseline;padding:.6rem 1rem;
border-bottom:1px solid var(--line);overflow-wrap:anywhere}
header a{font-weight:700;font-size:1.1rem;color:inherit;text-decoration:none}
main{max-width:80rem;margin:0 auto;padding:.5rem 1rem 2rem}
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
table.stack td{white-space:normal;overflow-wrap:break-word}
table.stack td:first-child,table.jobs td:nth-child(2){overflow-wrap:anywhere}
table.stack td>div{min-width:0}
table.jobs .tag{display:block;width:fit-content;max-width:16rem;overflow:hidden;
text-overflow:ellipsis;white-space:nowrap}
.badge{white-space:nowrap}
@media (max-width:40rem){table.stack thead{display:none}
table.stack,table.stack tbody,table.stack tr,table.stack td{display:block}
table.stack tr{padding:.4rem 0;border-bottom:1px solid var(--line)}
table.stack tr:last-child{border-bottom:0}
table.stack td{display:grid;grid-template-columns:6.5rem minmax(0,1fr);gap:.6rem;border:0;
padding:.1rem .65rem}
table.stack td::before{content:attr(data-label);color:var(--muted);font-size:.8rem;
text-transform:uppercase;letter-spacing:.03em;padding-top:.1rem}
table.stack td:first-child{display:block;font-weight:600}
table.stack td:first-child::before{content:none}
table.stack td.none{display:none}
table.jobs .tag{max-width:100%}}
figure.chart{margin:.4rem 0 1rem}
figure.chart svg{display:block;width:100%;height:7rem;background:var(--code);
border:1px solid var(--line);border-radius:6px}
.chart .col{fill:currentColor}
.chart .hit{fill:transparent}
.chart .col:hover .hit{fill:var(--line)}
.chart .axis{stroke:var(--line);stroke-width:1;vector-effect:non-scaling-stroke}
figcaption{font-size:.85rem;color:var(--muted);margin-top:.3rem}
figcaption .key{white-space:nowrap}
header .who{margin-left:auto;font-size:.9rem;font-weight:400}
header a.who{color:var(--run);text-decoration:underline}
.actions{display:flex;flex-wrap:wrap;gap:.5rem;margin:.8rem 0}
form.act{display:inline-block;margin:0}
button{font:inherit;font-size:.9rem;padding:.2rem .75rem;border:1px solid var(--line);
border-radius:6px;background:var(--code);color:var(--fg);cursor:pointer}
button.danger{color:var(--bad);border-color:currentColor}
form.login{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;margin:.8rem 0}
input{font:inherit;padding:.25rem .5rem;border:1px solid var(--line);border-radius:6px;
background:var(--bg);color:var(--fg);min-width:0}
.notice{padding:.5rem .75rem;border:1px solid currentColor;border-radius:6px}
""".strip()
_STYLE_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'none'; "
    "script-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# With `[web] actions`: the page's own forms (log in, run now, pause...) may post to it, and
# nowhere else.
CONTENT_SECURITY_POLICY_FORMS = CONTENT_SECURITY_POLICY.replace(
    "form-action 'none'", "form-action 'self'"
)
HTML_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
# The colour of an outcome's (or a live run's state's) badge; anything else is muted.
_BADGE: dict[str, str] = {  # StrEnum members hash as their values
    Outcome.SUCCEEDED: "ok",
    Outcome.FAILED: "bad",
    Outcome.TIMEOUT: "bad",
    Outcome.ABANDONED: "bad",
    Outcome.DEPENDENCY_FAILED: "bad",
    Outcome.WAIT_TIMEOUT: "bad",
    Outcome.SKIPPED: "warn",
    Outcome.MISSED: "warn",
    Outcome.REPLACED: "warn",
    Outcome.CANCELLED: "warn",
    Outcome.STARTED: "run",
    RunState.RUNNING: "run",
}
RUNNING = "running"  # what a run that has not ended shows in place of an outcome


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def page(
    status: int,
    title: str,
    body: str,
    *,
    headers: Mapping[str, str] | None = None,
    who: str = "",
    forms: bool = False,
) -> Response:
    """A whole page; `who` goes at the right of the header (log in or out), `forms` lets the
    page's forms post to the page's own address."""
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
<header><a href="/">kron</a><span class="muted">{esc(HOST)} · {esc(__version__)}</span>
{who}</header>
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
        headers={
            **HTML_HEADERS,
            **({"content-security-policy": CONTENT_SECURITY_POLICY_FORMS} if forms else {}),
            **(headers or {}),
        },
    )


def not_found(message: str) -> Response:
    return page(
        404,
        "Not found",
        f'<h1>Not found</h1><p>{esc(message)}</p><p><a href="/">All jobs</a></p>',
    )


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    empty: str = "",
    sticky: bool = False,
    stack: bool = False,
    name: str = "",
) -> str:
    """A table whose cells are HTML already; it scrolls sideways on a narrow screen, with the
    first column kept in view if `sticky`. A `stack` table wraps its cells instead, and on a
    phone shows each row as a card of labelled lines (the header row is hidden there)."""
    if stack:
        body = [
            "<tr>"
            + "".join(_card_cell(h, cell) for h, cell in zip(headers, row, strict=True))
            + "</tr>"
            for row in rows
        ]
    else:
        body = ["<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows]
    if not body:
        return f'<p class="muted">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    classes = " ".join(c for c in ("stack" if stack else "sticky" if sticky else "", name) if c)
    opening = f'<table class="{classes}">' if classes else "<table>"
    return (
        f'<div class="scroll">{opening}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _card_cell(label: str, cell: str) -> str:
    """A cell of a `stack` table: labelled on a phone, and left out there when empty."""
    empty = "" if cell else ' class="none"'
    return f'<td data-label="{esc(label)}"{empty}><div>{cell}</div></td>'


def fields(pairs: Iterable[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{esc(label)}</th><td>{value}</td></tr>" for label, value in pairs)
    return f'<div class="scroll"><table class="fields">{rows}</table></div>'


def crumbs(links: Iterable[tuple[str, str]], here: str) -> str:
    parts = [f'<a href="{esc(href)}">{esc(label)}</a>' for href, label in links]
    return f"<nav>{' / '.join([*parts, esc(here)])}</nav>"


def job_href(job_id: str) -> str:
    return "/jobs/" + quote(job_id, safe="/")


def job_link(job_id: str, *, wrap: bool = False) -> str:
    """A link to the job's page; `wrap` lets a narrow column break the id after its folders."""
    shown = breakable(job_id) if wrap else esc(job_id)
    return f'<a href="{esc(job_href(job_id))}">{shown}</a>'


def run_link(run_id: str, job_id: str) -> str:
    href = f"/runs/{quote(run_id, safe='')}?job={quote(job_id, safe='/')}"
    return f'<a href="{esc(href)}"><code>{esc(run_id)}</code></a>'


def time_cell(when: datetime | None, zone: ZoneInfo, now: datetime, *, inline: bool = False) -> str:
    """The time in the job's zone, with how far it is from now (below it in a table column,
    beside it elsewhere); `-` for none."""
    if when is None:
        return '<span class="muted">-</span>'
    local = when.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")
    between = " " if inline else "<br>"
    return (
        f'<time datetime="{esc(format_time(when))}">{esc(local)}</time>'
        f"{between}<small>({esc(relative(when - now))})</small>"
    )


def relative(delta: timedelta) -> str:
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


def duration(value: object) -> str:
    if not isinstance(value, int | float):
        return '<span class="muted">-</span>'
    return esc(format_duration(timedelta(seconds=value)))


def exit_cell(record: RunRecord) -> str:
    if record.exit_code is not None:
        return esc(record.exit_code)
    if record.signal is not None:
        return esc(f"signal {record.signal}")
    return '<span class="muted">-</span>'


def badge(value: object) -> str:
    """An outcome (or a live run's state) as a coloured badge."""
    if not value:
        return '<span class="muted">-</span>'
    return f'<span class="badge {badge_class(value)}">{esc(value)}</span>'


def badge_class(value: object) -> str:
    """The colour class of an outcome or a live run's state: ok, bad, warn, run or muted."""
    return _BADGE.get(str(value), "muted")


def tags(values: Mapping[str, str]) -> str:
    """Each tag as `key=value`; its title holds it whole, for where a long one is cut short."""
    return "".join(
        f'<span class="tag" title="{esc(k)}={esc(v)}">{esc(k)}={esc(v)}</span>'
        for k, v in sorted(values.items())
    )


def breakable(text: str) -> str:
    """Escaped, with a line break allowed after each `/` (a job id, a zone), so a narrow
    column wraps `platform/databases/...` at its folders rather than anywhere."""
    return "/<wbr>".join(esc(part) for part in text.split("/"))


def job_state(job: JobView) -> str:
    states = []
    if job.running:
        states.append('<span class="badge run">running</span>')
    if job.stuck:
        states.append('<span class="badge bad">stuck</span>')
    if job.paused:
        states.append('<span class="badge warn">paused</span>')
    if not job.enabled:
        states.append('<span class="badge warn">disabled</span>')
    return " ".join(states) or f'<span class="muted">{esc(job.firing)}</span>'


def value_cell(value: object) -> str:
    if isinstance(value, str):
        return esc(value)
    return f"<code>{esc(json.dumps(value, ensure_ascii=False, sort_keys=True))}</code>"


def delivery_row(note: DeliveryNote, zone: ZoneInfo, now: datetime) -> list[str]:
    """A notification's delivery line (kron.notify): target, sent or failed, attempts, error."""
    result = (
        '<span class="badge ok">sent</span>' if note.ok else '<span class="badge bad">failed</span>'
    )
    return [
        esc(note.target),
        result,
        esc(note.attempts),
        time_cell(note.at, zone, now),
        esc(note.error or ""),
    ]


def compact(line: Mapping[str, Any]) -> str:
    return json.dumps(
        {k: v for k, v in line.items() if k not in ("v", "run_id", "job")},
        ensure_ascii=False,
        sort_keys=True,
    )
