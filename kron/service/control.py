"""The control API: JSON over HTTP on the daemon's unix socket, and the CLI's client for it.

Endpoints (all under /v1; job ids keep their slashes):

    GET  /v1/status                     daemon, jobs loaded, invalid files, running runs
    GET  /v1/jobs[?tag=k=v]             every job: schedule, zone, next fire, last outcome, paused
    POST /v1/jobs/<id>/run[?wait=1]     fire now (trigger manual); with wait, the final record
    POST /v1/jobs/<id>/pause            stop firing by schedule (persisted, survives restarts)
    POST /v1/jobs/<id>/resume
    POST /v1/runs/<run_id>/cancel       stop the run's process tree; recorded `cancelled`
    POST /v1/pause?tag=k=v              pause (resume, cancel) every job with these tags
"""

from __future__ import annotations

import difflib
import os
import socket
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kron import __version__
from kron.engine import records
from kron.model import job as spec
from kron.model.errors import DaemonUnreachable, KronError
from kron.model.run import to_record
from kron.service.httpd import Request, Response

if TYPE_CHECKING:
    from kron.engine.scheduler import JobState, Run
    from kron.service.daemon import Daemon


def default_socket_path(records_root: Path) -> Path:
    """`$XDG_RUNTIME_DIR/kron.sock`; else, for root, `/run/kron/kron.sock` (the unit's
    RuntimeDirectory); else `<records location>/.kron/kron.sock`, where kron can always write."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "kron.sock"
    if os.geteuid() == 0:
        return Path("/run/kron/kron.sock")
    return records_root / ".kron" / "kron.sock"


def parse_tags(values: Iterable[str]) -> dict[str, str]:
    """`["team=ops", "tier=1"]` -> {"team": "ops", "tier": "1"}; raises KronError on `team`."""
    tags = {}
    for value in values:
        key, sep, wanted = value.partition("=")
        if not sep or not key:
            raise KronError(f"--tag wants KEY=VALUE, got {value!r}")
        tags[key] = wanted
    return tags


def matches(job: spec.Job, tags: Mapping[str, str]) -> bool:
    return all(job.tags.get(k) == v for k, v in tags.items())


def _time(value: datetime | None) -> str | None:
    return records.format_time(value) if value else None


def run_view(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "job": run.job.id,
        "slot": _time(run.slot),
        "trigger": run.trigger.value,
        "attempt": run.attempt,
        "state": run.state,
        "started_at": _time(run.started_at),
        "pid": run.pgid,
        "config_sha": run.job.config_sha,
    }


def job_view(js: JobState) -> dict[str, Any]:
    job = js.job
    return {
        "id": job.id,
        "description": job.description,
        "path": str(job.path),
        "schedule": job.schedule.expr,
        "timezone": job.timezone.key,
        "next_fire": _time(js.fire_at),
        "last_outcome": js.last_outcome,
        "last_ended_at": _time(js.last_ended_at),
        "last_success_at": _time(js.last_success_at),
        "enabled": job.enabled,
        "paused": js.paused,
        "running": len(js.alive),
        "tags": dict(job.tags),
        "config_sha": job.config_sha,
    }


class ControlAPI:
    """Routes requests to the daemon; every answer is JSON."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    async def __call__(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        if parts[:1] != ["v1"]:
            return Response.error(404, f"no such endpoint: {request.path}")
        parts = parts[1:]
        get, post = request.method in ("GET", "HEAD"), request.method == "POST"
        if get and parts == ["status"]:
            return Response.json(self.status())
        if get and parts == ["jobs"]:
            tags = parse_tags(request.query.get("tag", []))
            return Response.json(self.jobs(tags))
        if post and len(parts) == 1 and parts[0] in ("pause", "resume", "cancel"):
            tags = parse_tags(request.query.get("tag", []))
            if not tags:
                return Response.error(400, f"bulk {parts[0]} needs at least one tag=KEY=VALUE")
            return Response.json(self.bulk(parts[0], tags))
        if (
            post
            and len(parts) >= 3
            and parts[0] == "jobs"
            and parts[-1] in ("run", "pause", "resume")
        ):
            job_id = "/".join(parts[1:-1])
            if job_id not in self._scheduler.jobs:
                return Response.error(404, self._unknown(job_id))
            if parts[-1] == "run":
                return await self.run(job_id, wait=request.arg("wait") in ("1", "true"))
            self.daemon.set_paused(job_id, parts[-1] == "pause")
            return Response.json(job_view(self._scheduler.jobs[job_id]))
        if post and len(parts) == 3 and parts[0] == "runs" and parts[2] == "cancel":
            run = self._scheduler.cancel(parts[1])
            if run is None:
                return Response.error(404, f"no running run {parts[1]!r}")
            return Response.json(run_view(run))
        return Response.error(404, f"no such endpoint: {request.method} {request.path}")

    @property
    def _scheduler(self) -> Any:
        assert self.daemon.scheduler is not None
        return self.daemon.scheduler

    def _unknown(self, job_id: str) -> str:
        hint = difflib.get_close_matches(job_id, list(self._scheduler.jobs), n=1)
        return f"no job {job_id!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")

    def status(self) -> dict[str, Any]:
        daemon = self.daemon
        invalid = [
            {"path": path, "errors": [str(p) for p in problems]}
            for path, problems in sorted(daemon.catalog.invalid_files.items())
        ]
        return {
            "version": __version__,
            "pid": os.getpid(),
            "started_at": _time(daemon.started_at),
            "jobs_dir": str(daemon.jobs_dir.resolve()),
            "records_dir": str(daemon.records_root),
            "jobs_loaded": len(self._scheduler.jobs),
            "paused": sorted(j for j, js in self._scheduler.jobs.items() if js.paused),
            "invalid_files": invalid,
            "running": [run_view(r) for r in self._scheduler.running()],
            "reloads": daemon.reloads,
        }

    def jobs(self, tags: Mapping[str, str]) -> list[dict[str, Any]]:
        return [
            job_view(js) for _, js in sorted(self._scheduler.jobs.items()) if matches(js.job, tags)
        ]

    async def run(self, job_id: str, *, wait: bool) -> Response:
        scheduler = self._scheduler
        now = self.daemon.clock.now().replace(microsecond=0)
        run = scheduler.fire(job_id, slot=now, trigger=spec.Trigger.MANUAL)
        if run is None or run.task is None:
            last = scheduler.jobs[job_id].last_record
            return Response.json({"outcome": "skipped", **(last or {})}, 409)
        if not wait:
            return Response.json(run_view(run), 202)
        ended = await run.task
        return Response.json(to_record(ended) if ended else run_view(run))

    def bulk(self, action: str, tags: Mapping[str, str]) -> dict[str, Any]:
        chosen = [j for j, js in sorted(self._scheduler.jobs.items()) if matches(js.job, tags)]
        if action == "cancel":
            runs = [r for r in self._scheduler.running() if r.job.id in chosen]
            for run in runs:
                self._scheduler.cancel(run.run_id)
            return {"cancelled": [r.run_id for r in runs]}
        for job_id in chosen:
            self.daemon.set_paused(job_id, action == "pause")
        return {"paused" if action == "pause" else "resumed": chosen}


class ControlClient:
    """The CLI's side: one request per call over the unix socket."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = 10.0,
    ) -> tuple[int, Any]:
        import httpx

        self._probe()
        transport = httpx.HTTPTransport(uds=str(self.socket_path))
        try:
            with httpx.Client(
                transport=transport, base_url="http://kron", timeout=timeout
            ) as client:
                response = client.request(method, path, params=params)
        except (httpx.ConnectError, httpx.RemoteProtocolError, FileNotFoundError) as exc:
            why = f"no kron daemon answers on {self.socket_path} ({exc})"
            raise DaemonUnreachable(f"{why}; start one with `kron daemon`") from None
        except httpx.TimeoutException:
            raise DaemonUnreachable(
                f"the kron daemon on {self.socket_path} did not answer in time"
            ) from None
        return response.status_code, response.json()

    def _probe(self) -> None:
        """Connect once by hand: httpx leaks its socket when a unix connect fails."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(2.0)
            try:
                probe.connect(str(self.socket_path))
            except OSError as exc:
                why = f"no kron daemon answers on {self.socket_path} ({exc.strerror or exc})"
                raise DaemonUnreachable(f"{why}; start one with `kron daemon`") from None

    def get(self, path: str, **params: Any) -> Any:
        status, body = self.request("GET", path, params=params or None)
        _raise_for(status, body)
        return body

    def post(self, path: str, *, timeout: float | None = 10.0, **params: Any) -> tuple[int, Any]:
        return self.request("POST", path, params=params or None, timeout=timeout)


def _raise_for(status: int, body: Any) -> None:
    if status >= 400:
        message = body.get("error") if isinstance(body, dict) else str(body)
        raise KronError(message or f"the daemon answered {status}")


def reach(jobs_dir: Path, settings: spec.Settings) -> ControlClient:
    """A client for the daemon serving jobs_dir; DaemonUnreachable if none does."""
    records_root = settings.records_dir or jobs_dir
    client = ControlClient(settings.control_socket or default_socket_path(records_root))
    status = client.get("/v1/status")
    if jobs_dir.is_dir() and Path(status["jobs_dir"]) != jobs_dir.resolve():
        serves, wanted = status["jobs_dir"], jobs_dir.resolve()
        raise DaemonUnreachable(
            f"the kron daemon on {client.socket_path} serves {serves}, not {wanted}"
        )
    return client
