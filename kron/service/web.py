"""The metrics listener: `/metrics` for Prometheus and a status page for people.

    GET /                  jobs, running runs, invalid files
    GET /jobs/<id>         one job, a chart of its recent runs, and its runs, newest first
                           (`?all=1`: every kept run)
    GET /runs/<run_id>     one run: times, outcome, output, deliveries (`?job=<id>` finds it
                           in that job's records without searching them all)
    GET /metrics           Prometheus text format (kron.service.metrics)

Pages are plain HTML rendered here (kron.service.html, kron.service.chart), no script. The
page is read-only unless `[web] actions` is on: then kron.service.webactions adds a login, the
buttons, and the POSTs behind them.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from zoneinfo import ZoneInfo

from kron.engine.store import Line
from kron.model.errors import KronError
from kron.model.run import DeliveryNote, RunEnded, RunRecord, RunStarted
from kron.service.chart import runs_chart
from kron.service.html import (
    RUNNING,
    badge,
    breakable,
    compact,
    crumbs,
    delivery_row,
    duration,
    esc,
    exit_cell,
    fields,
    job_href,
    job_link,
    job_state,
    not_found,
    page,
    run_link,
    table,
    tags,
    time_cell,
    value_cell,
)
from kron.service.httpd import Request, Response
from kron.service.metrics import CONTENT_TYPE, Metrics
from kron.service.view import DaemonView
from kron.service.webactions import JOB_ACTIONS, Console, Operator

__all__ = ["StatusSite", "listen_address"]

RUNS_SHOWN = 100  # on a job's page, unless ?all=1
_RUN_ID = re.compile(r"[\w.-]{1,100}")
_UTC = ZoneInfo("UTC")
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
    """The handler behind the `metrics` listener; GET only, unless a `console` takes actions."""

    def __init__(self, view: DaemonView, metrics: Metrics, console: Console | None = None) -> None:
        self.view = view
        self.metrics = metrics
        self._console = console

    @property
    def console(self) -> Console | None:
        """The actions, while kron.toml keeps them on: turning them off applies at the next
        reload (turning them on reads the token, which only a start does)."""
        console = self._console
        return console if console is not None and console.enabled() else None

    async def __call__(self, request: Request) -> Response:
        allowed = "GET, POST" if self.console else "GET"
        if request.method == "HEAD":
            # No body in an answer to HEAD (RFC 9110 9.3.2): kron.service.httpd would send one.
            return Response(status=405, content_type="text/plain", headers={"allow": allowed})
        if request.method == "POST" and self.console is not None:
            return await self.console.post(request)
        if request.method != "GET":
            said = (
                "takes GET, and POST from its buttons" if self.console else "is read-only: GET only"
            )
            return self._page(
                405,
                "Method not allowed",
                f"<p>This page {said}, not {esc(request.method)}.</p>",
                None,
                request.path,
                headers={"allow": allowed},
            )
        parts = [p for p in request.path.split("/") if p]
        if parts == ["metrics"]:
            return Response(body=self.metrics.render(), content_type=CONTENT_TYPE)
        console = self.console
        if console is not None and parts == ["login"]:
            return console.login_page(request)
        if console is not None and self._is_action(parts):
            return console.refuse_get(request.path)
        op = console.operator(request) if console is not None else None
        if not parts:
            return self._page(200, "Jobs", self.index(op), op, request.path)
        if parts[0] == "jobs" and len(parts) > 1:
            return await self.job_page(
                "/".join(parts[1:]), every=request.arg("all") in ("1", "true"), op=op
            )
        if parts[0] == "runs" and len(parts) == 2:
            return await self.run_page(parts[1], job_hint=request.arg("job"), op=op)
        return not_found(f"Nothing is served at {request.path}.")

    def _is_action(self, parts: list[str]) -> bool:
        """Whether a GET names an action (`/jobs/<id>/run`) rather than a page: a job `x/run`
        that is loaded keeps its page."""
        if parts == ["logout"] or (len(parts) == 3 and parts[0] == "runs" and parts[2] == "cancel"):
            return True
        if len(parts) < 3 or parts[0] != "jobs" or parts[-1] not in JOB_ACTIONS:
            return False
        whole, owner = "/".join(parts[1:]), "/".join(parts[1:-1])
        return self.view.job(whole) is None and self.view.job(owner) is not None

    def _page(
        self,
        status: int,
        title: str,
        body: str,
        op: Operator | None,
        here: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """A page, with the header's log in or log out when actions are on."""
        if self.console is None:
            return page(status, title, body, headers=headers)
        who = self.console.who(op, here)
        return page(status, title, body, headers=headers, who=who, forms=True)

    def index(self, op: Operator | None = None) -> str:
        """The jobs table, the runs alive now, and the files that failed to load."""
        view = self.view
        jobs = view.jobs()
        running = view.running()
        invalid = sorted(view.invalid_files().items())
        now = view.now()
        started = view.stats.started_at
        out = [
            "<h1>Jobs</h1>",
            '<p class="summary">',
            f"<span>{len(jobs)} jobs loaded</span>",
            f"<span>{len(running)} running</span>",
            f"<span>{len(invalid)} invalid files</span>",
            f"<span>up since {time_cell(started, _UTC, now, inline=True)}</span>"
            if started
            else "",
            "</p>",
        ]
        rows = [
            [
                job_link(job.id, wrap=True),
                f"<code>{esc(job.schedule)}</code>",
                breakable(job.timezone.key),
                time_cell(job.next_fire, job.timezone, now),
                badge(job.last_outcome),
                tags(job.tags),
                job_state(job),
            ]
            for job in jobs
        ]
        out.append(
            table(
                ["Job", "Schedule", "Zone", "Next run", "Last outcome", "Tags", "State"],
                rows,
                empty="No jobs loaded.",
                stack=True,  # fits a 1280 px screen without scrolling, and a phone as cards
                name="jobs",
            )
        )
        if running:
            headers = ["Run", "Job", "State", "Trigger", "Attempt", "Started"]
            cancel = self.console.cancel_button if self.console is not None and op else None
            out.append("<h2>Running now</h2>")
            out.append(
                table(
                    [*headers, "Action"] if cancel else headers,
                    [
                        [
                            run_link(run.run_id, run.job),
                            job_link(run.job),
                            badge(run.state)
                            + (
                                f' <span class="badge bad" title="{esc(run.stuck)}">stuck</span>'
                                if run.stuck
                                else ""
                            ),
                            esc(run.trigger),
                            esc(run.attempt),
                            time_cell(run.started_at, view.zone(run.job), now),
                            *([cancel(run.run_id, op)] if cancel else []),
                        ]
                        for run in running
                    ],
                    stack=True,
                )
            )
        if view.cluster is not None:
            out.append(_cluster_section(view.cluster_status()))
        if invalid:
            out.append("<h2>Invalid files</h2>")
            for path, problems in invalid:
                # Each error starts with the path, already the heading: `path:line:col: ...`.
                errors = [str(p).removeprefix(f"{path}:") for p in problems]
                state = (
                    "Its last good version still runs."
                    if view.kept(path)
                    else "No job runs from it: it has never loaded."
                )
                out.append(
                    f'<div class="problem"><code>{esc(path)}</code> <small>{state}</small>'
                    f"<pre>{esc(chr(10).join(errors))}</pre></div>"
                )
        return "\n".join(out)

    async def job_page(self, job_id: str, *, every: bool, op: Operator | None = None) -> Response:
        """One job's definition and state, a chart of its recent runs, and its runs from its
        records, newest first."""
        job = self.view.job(job_id)
        if job is None:
            return not_found(f"No job {job_id!r} is loaded.")
        zone = job.timezone
        now = self.view.now()
        found = await asyncio.to_thread(self.view.store.runs, job=job_id)
        shown = found if every else found[:RUNS_SHOWN]
        pairs = [
            ("Schedule", f"<code>{esc(job.schedule)}</code>"),
            ("Zone", esc(zone.key)),
            ("Next run", time_cell(job.next_fire, zone, now, inline=True)),
            ("State", job_state(job)),
            ("Last outcome", badge(job.last_outcome)),
            ("Last success", time_cell(job.last_success_at, zone, now, inline=True)),
            ("Tags", tags(job.tags) or "-"),
            ("File", f"<code>{esc(job.path)}</code>"),
            ("Config SHA", f"<code>{esc(job.config_sha)}</code>"),
        ]
        out = [
            crumbs([("/", "Jobs")], job_id),
            f"<h1>{esc(job_id)}</h1>",
            f"<p>{esc(job.description)}</p>" if job.description else "",
            fields(pairs),
            self.console.job_buttons(job, op) if self.console is not None else "",
            "<h2>Runs</h2>",
            runs_chart(found, zone, now),
        ]
        if len(shown) < len(found):
            out.append(
                f'<p class="muted">The newest {len(shown)} of {len(found)} kept runs. '
                f'<a href="{esc(job_href(job_id))}?all=1">Show all</a></p>'
            )
        rows = [
            [
                run_link(r.run_id, job_id),
                badge(RUNNING if isinstance(r, RunStarted) else r.outcome),
                esc(r.trigger),
                esc(r.attempt),
                time_cell(r.slot, zone, now),
                time_cell(r.started_at, zone, now),
                duration(r.duration_s),
                exit_cell(r),
            ]
            for r in shown
        ]
        out.append(
            table(
                ["Run", "Outcome", "Trigger", "Attempt", "Slot", "Started", "Duration", "Exit"],
                rows,
                empty="No runs recorded yet.",
                sticky=True,
            )
        )
        return self._page(200, job_id, "\n".join(out), op, job_href(job_id))

    async def run_page(
        self, run_id: str, *, job_hint: str | None, op: Operator | None = None
    ) -> Response:
        """A run's record: times, outcome, error, output, and any further lines (deliveries)."""
        if not _RUN_ID.fullmatch(run_id):
            return not_found(f"No run {run_id!r}.")
        lines = await asyncio.to_thread(self._run_lines, run_id, job_hint)
        runs = [line for line in lines if isinstance(line, RunRecord)]
        if not runs:
            return not_found(f"No run {run_id!r} in the records.")
        terminal = [r for r in runs if isinstance(r, RunEnded)]
        typed = terminal[0] if terminal else runs[0]
        record = typed.to_json() if terminal else typed.to_json() | {"outcome": RUNNING}
        others = [r.to_json() for r in terminal[1:]]
        deliveries = [line for line in lines if isinstance(line, DeliveryNote)]
        job_id = str(record["job"])
        loaded = self.view.job(job_id) is not None
        zone = self.view.zone(job_id)
        now = self.view.now()
        pairs = []
        for key, label in _RUN_FIELDS:
            value = record.get(key)
            if value is None or (key == "truncated" and not value):
                continue
            if key == "job":
                shown = job_link(job_id) if loaded else esc(job_id)
            elif key == "outcome":
                shown = badge(value)
            elif key in ("slot", "started_at", "ended_at"):
                shown = time_cell(getattr(typed, key), zone, now, inline=True)
            elif key == "duration_s":
                shown = duration(value)
            else:
                shown = esc(value)
            pairs.append((label, shown))
        known = {key for key, _ in _RUN_FIELDS} | _NOT_FIELDS
        pairs += [(k, value_cell(v)) for k, v in record.items() if k not in known]
        links = [("/", "Jobs")]
        if loaded:
            links.append((job_href(job_id), job_id))
        out = [
            crumbs(links, run_id),
            f"<h1>Run <code>{esc(run_id)}</code></h1>",
            fields(pairs),
        ]
        if not terminal and self.console is not None and op is not None:
            out.append(f'<div class="actions">{self.console.cancel_button(run_id, op)}</div>')
        if record.get("error"):
            out += ["<h2>Error</h2>", f"<pre>{esc(record['error'])}</pre>"]
        for stream in ("stdout", "stderr"):
            text = record.get(stream)
            if isinstance(text, str):
                body = esc(text) if text else '<span class="muted">(empty)</span>'
                out += [f"<h2>{stream}</h2>", f"<pre>{body}</pre>"]
        if deliveries:
            out.append("<h2>Deliveries</h2>")
            out.append(
                table(
                    ["Target", "Result", "Attempts", "At", "Error"],
                    [delivery_row(note, zone, now) for note in deliveries],
                )
            )
        if others:
            out.append("<h2>Other lines</h2>")
            out.append(
                table(["Record line"], [[f"<code>{esc(compact(r))}</code>"] for r in others])
            )
        here = f"/runs/{run_id}"
        return self._page(200, f"Run {run_id}", "\n".join(out), op, here)

    def _run_lines(self, run_id: str, job_hint: str | None) -> list[Line]:
        """Every record line of the run, from the hinted job's records if they have it."""
        store = self.view.store
        if job_hint and self.view.job(job_hint) is not None:
            lines = [line for line in store.records(job_hint) if line.run_id == run_id]
            if lines:
                return lines
        # find matches prefixes, as `kron show` does; a page's address names one run.
        return [line for line in store.find(run_id) if line.run_id == run_id]


def _cluster_section(cluster: dict[str, Any]) -> str:
    """The nodes of the cluster, as `kron status` lists them, with their drift."""
    db = cluster["database"]
    reach = (
        "the database answers"
        if db["reachable"]
        else f"the database is OUT OF REACH since {db['down_since']}: nothing fires on this node"
    )
    out = [
        "<h2>Cluster</h2>",
        f'<p class="summary"><span>this node: {esc(cluster["node"])}</span>'
        f"<span>{esc(reach)}</span></p>",
    ]
    rows = [
        [
            esc(node["node"]),
            esc(node["state"]),
            esc(node["version"]),
            esc(node["host"]),
            esc(f"{node['silent_s']:.1f}s ago"),
            esc(node["running"]),
            f"<code>{esc(node['digest'])}</code>" + (" differs" if node["drift"] else ""),
        ]
        for node in cluster["nodes"]
    ]
    out.append(table(["Node", "State", "Version", "Host", "Heartbeat", "Running", "Job set"], rows))
    for node in cluster["nodes"]:
        drift = node["drift"]
        if drift:
            said = "; ".join(
                f"{what}: {', '.join(drift[key])}"
                for key, what in (
                    ("differ", "defined differently"),
                    ("only_there", "only there"),
                    ("only_here", "only here"),
                )
                if drift[key]
            )
            out.append(f"<p>Drift on node {esc(node['node'])}: {esc(said)}</p>")
    return "\n".join(out)
