"""What an agent may do to a jobs directory, confined: the operations behind `kron mcp`'s tools.

Reads go where the CLI's go (the daemon's control API when one runs, the job files and the
record store otherwise); changes go through the same code as `kron new` and the control API,
within what kron.toml's `[agents]` allows, and each one is written to the audit log with
`via: mcp`. Every refusal is a KronError whose message says why and what to change.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from kron.config.build import zone_named
from kron.config.discovery import discover, job_id_for
from kron.config.documents import JOB_SUFFIXES, Document, read_document
from kron.config.loader import load_job
from kron.config.new import Draft, check_draft, job_path, next_fires, write_new
from kron.config.settings import load_settings
from kron.engine.audit import AuditLog, count_events
from kron.engine.state import kron_dir
from kron.engine.store import FileRecordStore
from kron.model.clock import Clock, RealClock
from kron.model.errors import DaemonUnreachable, KronError, Problem, SpecError, ValueProblem
from kron.model.run import DeliveryNote, Outcome, RunRecord, RunStarted
from kron.model.schedule import parse_schedule
from kron.model.secrets import Secrets
from kron.model.settings import Settings
from kron.model.times import format_time
from kron.model.units import parse_duration
from kron.service.control import ControlClient, reach

__all__ = ["VIA", "AgentTools", "problem_json"]

VIA = "mcp"
MAX_FIRES = 100
MAX_RUNS = 500
_OUTPUT_FIELDS = ("stdout", "stderr")


def problem_json(p: Problem) -> dict[str, Any]:
    """A Problem as a tool returns it: where, which field, what."""
    return {
        "path": p.path,
        "line": p.line,
        "column": p.column,
        "field": p.field,
        "severity": str(p.severity),
        "message": p.message,
    }


class AgentTools:
    """The operations of `kron mcp` on one jobs directory; each returns plain JSON data."""

    def __init__(
        self, jobs_dir: Path, *, records_dir: Path | None = None, clock: Clock | None = None
    ) -> None:
        self.jobs_dir = jobs_dir
        self._records_dir = records_dir
        self.clock = clock or RealClock()

    # -- where things are --------------------------------------------------------------------

    def settings(self) -> Settings:
        """kron.toml as it is now (an operator may change [agents] while the server runs)."""
        settings, problems = load_settings(self.jobs_dir)
        errors = [p for p in problems if p.is_error]
        if errors:
            raise SpecError(errors)
        return settings

    def records_root(self, settings: Settings) -> Path:
        return self._records_dir or settings.records_dir or self.jobs_dir

    def store(self, settings: Settings) -> FileRecordStore:
        root = self.records_root(settings)
        return FileRecordStore(jobs_dir=root, records_dir=None, clock=self.clock)

    def daemon(self, settings: Settings) -> ControlClient | None:
        """The daemon serving this jobs directory, or None when none answers."""
        try:
            return reach(self.jobs_dir, settings)
        except DaemonUnreachable:
            return None

    def job_file(self, job_id: str) -> Path:
        """The file of a job id (an id that would leave the jobs directory is refused)."""
        base = job_path(job_id, self.jobs_dir, "toml").with_suffix("")
        for suffix in JOB_SUFFIXES:
            candidate = base.with_name(base.name + suffix)
            if candidate.is_file():
                return candidate
        raise KronError(f"no job {job_id!r} in {self.jobs_dir}")

    def job_files(self) -> dict[str, Path]:
        files, _ = discover(self.jobs_dir)
        return {job_id_for(path, self.jobs_dir): path for path in files}

    def file_text(self, path: Path, settings: Settings) -> tuple[Document, str]:
        """A job file and its text with secret values masked (`env` entries marked secret)."""
        doc = read_document(path, max_size=settings.max_file_size)
        return doc, Secrets.in_tables(doc.data, settings.defaults).mask(doc.text)

    # -- reads ---------------------------------------------------------------------------------

    def list_jobs(self, tags: Mapping[str, str] | None = None) -> dict[str, Any]:
        settings = self.settings()
        client = self.daemon(settings)
        wanted = dict(tags or {})
        if client is not None:
            params = {"tag": [f"{k}={v}" for k, v in wanted.items()]} if wanted else {}
            jobs = client.get("/v1/jobs", **params)
            broken = client.get("/v1/status")["invalid_files"]
            return {"daemon": True, "jobs": jobs, "invalid_files": broken}
        # No daemon: what the files say, as `kron validate` loads them.
        from kron.config.catalog import load_dir
        from kron.engine.store import last_outcomes

        result = load_dir(self.jobs_dir)
        chosen = {
            k: j
            for k, j in sorted(result.jobs.items())
            if all(j.tags.get(t) == v for t, v in wanted.items())
        }
        last = last_outcomes(self.records_root(settings), chosen)
        now = self.clock.now()
        jobs = [
            {
                "id": job.id,
                "description": job.description,
                "path": str(job.path),
                "schedule": job.schedule.expr,
                "timezone": job.timezone.key,
                "next_fire": _iso(job.schedule.next_fire(now)),
                "last_outcome": last.get(job.id),
                "enabled": job.enabled,
                "tags": dict(job.tags),
            }
            for job in chosen.values()
        ]
        invalid: dict[str, list[str]] = {}
        for p in result.problems:
            if p.is_error:
                invalid.setdefault(p.path, []).append(str(p))
        return {
            "daemon": False,
            "jobs": jobs,
            "invalid_files": [{"path": k, "errors": v} for k, v in sorted(invalid.items())],
        }

    def describe_job(self, job_id: str, *, runs: int = 5) -> dict[str, Any]:
        settings = self.settings()
        path = self.job_file(job_id)
        doc, text = self.file_text(path, settings)
        body: dict[str, Any] = {
            "id": job_id,
            "path": str(path),
            "format": "yaml" if doc.is_yaml else "toml",
            "text": text,
        }
        try:
            job, warnings = load_job(path, jobs_dir=self.jobs_dir, settings=settings)
        except SpecError as exc:
            body |= {"valid": False, "problems": [problem_json(p) for p in exc.problems]}
        else:
            fires = next_fires(job.schedule, self.clock.now(), 5)
            body |= {
                "valid": True,
                "problems": [problem_json(p) for p in warnings],
                "schedule": job.schedule.expr,
                "timezone": job.timezone.key,
                "next_fires": [_iso(t, job.timezone) for t in fires],
            }
        client = self.daemon(settings)
        if client is not None:
            shown = next((j for j in client.get("/v1/jobs") if j["id"] == job_id), None)
            body["daemon"] = (
                {k: shown[k] for k in ("paused", "running", "enabled", "next_fire")}
                if shown
                else None
            )
        recent = [r for r in self.store(settings).recent(job_id) if isinstance(r, RunRecord)]
        body["last_runs"] = [_brief(r) for r in recent[-runs:][::-1]]
        return body

    def next_fires(
        self,
        *,
        job: str | None = None,
        expr: str | None = None,
        timezone: str | None = None,
        after: str | None = None,
        n: int = 5,
    ) -> dict[str, Any]:
        if (job is None) == (expr is None):
            raise KronError("give `job` (a job id) or `expr` (a schedule expression), not both")
        settings = self.settings()
        try:
            if expr is not None:
                zone = zone_named(timezone) if timezone else settings.timezone
                schedule = parse_schedule(expr, zone)
            else:
                assert job is not None
                loaded, _ = load_job(self.job_file(job), jobs_dir=self.jobs_dir, settings=settings)
                schedule = loaded.schedule
                zone = zone_named(timezone) if timezone else loaded.timezone
        except ValueProblem as exc:
            raise KronError(str(exc)) from None
        start = self.clock.now() if after is None else _parse_after(after, zone)
        fires = next_fires(schedule, start, min(n, MAX_FIRES))
        return {
            "schedule": schedule.expr,
            "timezone": zone.key,
            "fires": [_iso(t, zone) for t in fires],
            "fires_utc": [format_time(t) for t in fires],
        }

    def validate_job(self, text: str, fmt: str, job_id: str | None = None) -> dict[str, Any]:
        """Check a draft's text as the daemon would load it as the file of `job_id`."""
        settings = self.settings()
        size = len(text.encode("utf-8"))
        if size > settings.max_file_size:
            raise KronError(
                f"the draft is {size} bytes, over the {settings.max_file_size}-byte limit "
                "(max_file_size in kron.toml); nothing was parsed"
            )
        name = job_id or "draft"
        path = job_path(name, self.jobs_dir, fmt)
        try:
            job, warnings = check_draft(
                text, path=path, job_id=name, jobs_dir=self.jobs_dir, settings=settings
            )
        except SpecError as exc:
            return {
                "valid": False,
                "errors": [problem_json(p) for p in exc.problems if p.is_error],
                "warnings": [problem_json(p) for p in exc.problems if not p.is_error],
            }
        fires = next_fires(job.schedule, self.clock.now(), 3)
        return {
            "valid": True,
            "errors": [],
            "warnings": [problem_json(p) for p in warnings],
            "timezone": job.timezone.key,
            "next_fires": [_iso(t, job.timezone) for t in fires],
        }

    def job_history(
        self,
        *,
        job: str | None = None,
        outcome: str | None = None,
        since: str | None = None,
        n: int = 20,
    ) -> dict[str, Any]:
        settings = self.settings()
        try:
            wanted = Outcome(outcome) if outcome else None
        except ValueError:
            known = ", ".join(o.value for o in Outcome if o is not Outcome.STARTED)
            raise KronError(f"no outcome {outcome!r}; known: {known}") from None
        if job is not None:
            job_path(job, self.jobs_dir, "toml")  # an id, never a path out of the records
        start = _parse_since(since, self.clock.now()) if since else None
        found = self.store(settings).runs(job=job, outcome=wanted, since=start)[: min(n, MAX_RUNS)]
        return {"runs": [_brief(r) for r in found]}

    def show_run(self, run_id: str) -> dict[str, Any]:
        """One run's record with its output (masked when it was recorded) and deliveries."""
        lines = self.store(self.settings()).find(run_id)
        if not lines:
            raise KronError(f"no run {run_id!r}")
        ids = {line.run_id for line in lines}
        if len(ids) > 1:
            raise KronError(f"{run_id!r} matches {len(ids)} runs; give more of the id")
        runs = [line for line in lines if isinstance(line, RunRecord)]
        record = (runs[-1] if runs else lines[-1]).to_json()
        record["deliveries"] = [
            line.to_json()["delivery"] for line in lines if isinstance(line, DeliveryNote)
        ]
        return record

    # -- changes -----------------------------------------------------------------------------

    def create_job(self, draft: Draft) -> dict[str, Any]:
        """Write a new job file where [agents] allows, within its daily limit; audit it."""
        settings = self.settings()
        agents = settings.agents
        if agents.folder is None:
            raise KronError(
                "create_job is off: kron.toml has no [agents] folder; an operator turns it on "
                'with [agents] folder = "agents" (the folder of the jobs directory it may write)'
            )
        root = self.records_root(settings)
        audit_path = kron_dir(root) / "audit.jsonl"
        with _lock(kron_dir(root) / "agents.lock"):
            now = self.clock.now()
            midnight = datetime.combine(now.astimezone(UTC).date(), time(), tzinfo=UTC)
            today = count_events(audit_path, event="create", via=VIA, since=midnight)
            if today >= agents.max_files_per_day:
                raise KronError(
                    f"create_job: {today} job files were created through MCP today, the limit "
                    f"of kron.toml [agents] max_files_per_day = {agents.max_files_per_day}; "
                    "try again after 00:00 UTC"
                )
            _require_writable(audit_path)
            created = write_new(
                draft,
                jobs_dir=self.jobs_dir,
                settings=settings,
                within=agents.folder,
                spell=str,  # a tool's arguments are named as they are: `http_url`
            )
            AuditLog(audit_path, self.clock, rotate=False).write(
                "create",
                job=created.job.id,
                path=created.path,
                config_sha=created.job.config_sha,
                via=VIA,
            )
        fires = next_fires(created.job.schedule, self.clock.now(), 3)
        return {
            "id": created.job.id,
            "path": str(created.path),
            "format": draft.format,
            "timezone": created.job.timezone.key,
            "next_fires": [_iso(t, created.job.timezone) for t in fires],
            "warnings": [problem_json(p) for p in created.warnings],
            "text": created.text,
            "created_today": today + 1,
            "limit_per_day": agents.max_files_per_day,
        }

    def run_job(self, job_id: str, *, wait: bool) -> dict[str, Any]:
        """Fire a job now through the daemon (or, with none, in this process until it ends)."""
        settings = self.settings()
        if not settings.agents.allow_run:
            raise KronError(
                "run_job is off: kron.toml [agents] allow_run is not true; "
                "an operator turns it on with [agents] allow_run = true"
            )
        client = self.daemon(settings)
        if client is not None:
            params = {"via": VIA, **({"wait": "1"} if wait else {})}
            status, body = client.post(
                f"/v1/jobs/{job_id}/run", timeout=None if wait else 10.0, **params
            )
            if status == 409:
                raise KronError(f"{job_id}: skipped: {body.get('error') or 'a run is still alive'}")
            if status >= 400:
                raise KronError(body.get("error", f"the daemon answered {status}"))
            return {"daemon": True, "waited": wait, "record": body}
        import asyncio

        from kron.service.inprocess import run_once

        path = self.job_file(job_id)
        root = self.records_root(settings)
        AuditLog(kron_dir(root) / "audit.jsonl", self.clock, rotate=False).write(
            "run", job=job_id, path=path, via=VIA
        )
        # A loop of its own: the server calls this from a worker thread, as `kron run` would.
        record = asyncio.run(run_once(path, jobs_dir=self.jobs_dir))
        return {"daemon": False, "waited": True, "record": record}

    def set_paused(self, job_id: str, *, paused: bool) -> dict[str, Any]:
        """Pause or resume a job's schedule through the daemon (kept across restarts)."""
        settings = self.settings()
        verb = "pause" if paused else "resume"
        if not settings.agents.allow_pause:
            raise KronError(
                f"{verb}_job is off: kron.toml [agents] allow_pause is not true; "
                "an operator turns it on with [agents] allow_pause = true"
            )
        client = reach(self.jobs_dir, settings)  # DaemonUnreachable: pauses live in the daemon
        status, body = client.post(f"/v1/jobs/{job_id}/{verb}", via=VIA)
        if status >= 400:
            raise KronError(body.get("error", f"the daemon answered {status}"))
        return dict(body)


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """One creation at a time across every `kron mcp` of this jobs directory, so two agents
    cannot both take the last file of the day."""
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _require_writable(audit_path: Path) -> None:
    """A change that cannot be audited is not made."""
    target = audit_path if audit_path.exists() else audit_path.parent
    if not os.access(target, os.W_OK):
        raise KronError(f"cannot write the audit log {audit_path}; nothing created")


def _iso(when: datetime | None, zone: ZoneInfo | None = None) -> str | None:
    if when is None:
        return None
    return when.astimezone(zone).isoformat() if zone else format_time(when)


def _brief(record: RunRecord) -> dict[str, Any]:
    """A run for a list: its record without the output (show_run has that)."""
    line = record.to_json()
    for name in _OUTPUT_FIELDS:
        line.pop(name, None)
    if isinstance(record, RunStarted):
        line["outcome"] = "running"
    return line


def _parse_after(text: str, zone: ZoneInfo) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise KronError(
            f"after: {text!r} is not an ISO 8601 time (e.g. 2026-03-29T01:00)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=zone)


def _parse_since(text: str, now: datetime) -> datetime:
    try:
        return now - parse_duration(text)
    except ValueProblem:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise KronError(f"since: {text!r} is neither a duration (2h, 7d) nor an ISO time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
