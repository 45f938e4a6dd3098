"""The control API: JSON over HTTP on the daemon's unix socket, and the CLI's client for it.

Endpoints (all under /v1; job ids keep their slashes):

    GET  /v1/status                     daemon, jobs loaded, invalid files, running runs
    GET  /v1/jobs[?tag=k=v]             every job: schedule, zone, next fire, last outcome, paused
    POST /v1/jobs/<id>/run[?wait=1]     fire now (trigger manual); with wait, the final record
    POST /v1/jobs/<id>/pause            stop firing by schedule (persisted, survives restarts)
    POST /v1/jobs/<id>/resume
        (these three take `via=mcp` from a front end other than the CLI, for the audit log)
    POST /v1/runs/<run_id>/cancel       stop the run's process tree; recorded `cancelled`
    POST /v1/pause?tag=k=v              pause (resume, cancel) every job with these tags
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kron.model.digests import sha256
from kron.model.errors import DaemonUnreachable, KronError, UsageError, did_you_mean
from kron.model.settings import Settings
from kron.service.httpd import Request, Response
from kron.service.view import DaemonView, Operations, RunView

_VIA = re.compile(r"[a-z][a-z0-9-]{0,15}")


def default_socket_path(jobs_dir: Path, records_root: Path) -> Path:
    """The control socket of the daemon serving `jobs_dir`, one per jobs directory.

    `$XDG_RUNTIME_DIR/kron-<folder>-<hash>.sock`; else, for root, the same name in `/run/kron`
    (the unit's RuntimeDirectory); else `<records location>/.kron/kron.sock`, where kron can
    always write. The name comes from the jobs directory's real path, so two daemons on two
    directories never meet, and the CLI finds the one serving the directory it is given.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR") or ("/run/kron" if os.geteuid() == 0 else None)
    if runtime is None:
        return records_root / ".kron" / "kron.sock"
    real = os.path.realpath(jobs_dir)
    tag = sha256(real.encode()).hexdigest()[:8]
    # A unix socket's path must fit in 108 bytes: the folder's name is cut short.
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", os.path.basename(real))[:24] or "root"
    return Path(runtime) / f"kron-{name}-{tag}.sock"


def parse_tags(values: Iterable[str]) -> dict[str, str]:
    """`["team=ops", "tier=1"]` -> {"team": "ops", "tier": "1"}; raises UsageError on `team`."""
    tags = {}
    for value in values:
        key, sep, wanted = value.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag wants KEY=VALUE, got {value!r}")
        tags[key] = wanted
    return tags


class ControlAPI:
    """Routes requests to a daemon's view and operations; every answer is JSON."""

    def __init__(self, view: DaemonView, ops: Operations) -> None:
        self.view = view
        self.ops = ops

    async def __call__(self, request: Request) -> Response:
        try:
            return await self._route(request)
        except UsageError as exc:
            return Response.error(400, str(exc))

    async def _route(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        if parts[:1] != ["v1"]:
            return Response.error(404, f"no such endpoint: {request.path}")
        parts = parts[1:]
        get, post = request.method in ("GET", "HEAD"), request.method == "POST"
        if get and parts == ["status"]:
            return Response.json(self.view.status())
        if get and parts == ["jobs"]:
            tags = parse_tags(request.query.get("tag", []))
            return Response.json([job.to_json() for job in self.view.jobs(tags)])
        if post and len(parts) == 1 and parts[0] in ("pause", "resume", "cancel"):
            tags = parse_tags(request.query.get("tag", []))
            if not tags:
                return Response.error(400, f"bulk {parts[0]} needs at least one tag=KEY=VALUE")
            try:
                return Response.json(await self.bulk(parts[0], tags))
            except KronError as exc:  # a cluster node without its database
                return Response.error(503, str(exc))
        if (
            post
            and len(parts) >= 3
            and parts[0] == "jobs"
            and parts[-1] in ("run", "pause", "resume")
        ):
            job_id = "/".join(parts[1:-1])
            if self.view.job(job_id) is None:
                return Response.error(404, self._unknown(job_id))
            via = request.arg("via")
            if via is not None and not _VIA.fullmatch(via):
                return Response.error(400, f"via names a front end (such as mcp), not {via!r}")
            if parts[-1] == "run":
                return await self.run(job_id, wait=request.arg("wait") in ("1", "true"), via=via)
            try:
                stored = self.ops.set_paused(job_id, parts[-1] == "pause", via=via)
            except KronError as exc:  # a cluster node without its database
                return Response.error(503, str(exc))
            if stored is not None:
                await stored  # a cluster's database has it: every node will follow
            shown = self.view.job(job_id)
            assert shown is not None  # checked above; nothing awaited since
            return Response.json(shown.to_json())
        if post and len(parts) == 3 and parts[0] == "runs" and parts[2] == "cancel":
            run = self.ops.cancel(parts[1])
            if run is None:
                return Response.error(404, f"no running run {parts[1]!r}")
            return Response.json(RunView.of(run).to_json())
        return Response.error(404, f"no such endpoint: {request.method} {request.path}")

    def _unknown(self, job_id: str) -> str:
        return f"no job {job_id!r}{did_you_mean(job_id, self.view.job_ids())}"

    async def run(self, job_id: str, *, wait: bool, via: str | None = None) -> Response:
        try:
            run = self.ops.run_now(job_id, via=via)
        except KronError as exc:  # a cluster node without its database fires nothing
            return Response.error(503, str(exc))
        if run is None or run.task is None:
            last = self.view.last_record(job_id)
            return Response.json({"outcome": "skipped", **(last.to_json() if last else {})}, 409)
        if not wait:
            return Response.json(RunView.of(run).to_json(), 202)
        ended = await run.task
        return Response.json(ended.to_json() if ended else RunView.of(run).to_json())

    async def bulk(self, action: str, tags: Mapping[str, str]) -> dict[str, Any]:
        chosen = [job.id for job in self.view.jobs(tags)]
        if action == "cancel":
            runs = [r for r in self.view.running() if r.job in chosen]
            for run in runs:
                self.ops.cancel(run.run_id)
            return {"cancelled": [r.run_id for r in runs]}
        stored = [self.ops.set_paused(job_id, action == "pause") for job_id in chosen]
        await asyncio.gather(*(s for s in stored if s is not None))
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
                f"the kron daemon on {self.socket_path} did not answer in time", absent=False
            ) from None
        return response.status_code, response.json()

    def _probe(self) -> None:
        """Connect once by hand: httpx leaks its socket when a unix connect fails."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(2.0)
            try:
                probe.connect(str(self.socket_path))
            except PermissionError:
                raise DaemonUnreachable(
                    f"not allowed to use the control socket {self.socket_path} (it is the "
                    "daemon's user's); run as that user or root",
                    absent=False,
                ) from None
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


def reach(jobs_dir: Path, settings: Settings) -> ControlClient:
    """A client for the daemon serving jobs_dir; DaemonUnreachable if none does."""
    records_root = settings.records_dir or jobs_dir
    client = ControlClient(settings.control_socket or default_socket_path(jobs_dir, records_root))
    status = client.get("/v1/status")
    if jobs_dir.is_dir() and Path(status["jobs_dir"]) != jobs_dir.resolve():
        serves, wanted = status["jobs_dir"], jobs_dir.resolve()
        raise DaemonUnreachable(
            f"the kron daemon on {client.socket_path} serves {serves}, not {wanted}"
        )
    return client
