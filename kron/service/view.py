"""What a daemon shows of itself, read-only: its jobs, its live runs, its invalid files, its
stats. The control API, the status page and the metrics read this, never the Daemon; the
control API acts through `Operations`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from kron import __version__
from kron.config.catalog import Catalog
from kron.engine.runs import JobState, Run
from kron.engine.scheduler import Scheduler
from kron.engine.store import RecordStore
from kron.model.clock import Clock
from kron.model.errors import Problem
from kron.model.run import Outcome, RunEnded, RunState, Trigger
from kron.model.schedule import ScheduleKind
from kron.model.times import format_time

if TYPE_CHECKING:
    from kron.engine.cluster.node import ClusterNode

__all__ = ["DaemonView", "JobView", "Operations", "RunView", "Stats"]

_UTC = ZoneInfo("UTC")


def _time(value: datetime | None) -> str | None:
    return format_time(value) if value else None


@dataclass(frozen=True, kw_only=True, slots=True)
class RunView:
    """A live run."""

    run_id: str
    job: str
    slot: datetime
    trigger: Trigger
    attempt: int
    state: RunState
    started_at: datetime | None
    pid: int | None
    config_sha: str
    stuck: str | None = None  # why it is called stuck

    @classmethod
    def of(cls, run: Run) -> RunView:
        return cls(
            run_id=run.run_id,
            job=run.job.id,
            slot=run.slot,
            trigger=run.trigger,
            attempt=run.attempt,
            state=run.state,
            started_at=run.started_at,
            pid=run.pgid,
            config_sha=run.job.config_sha,
            stuck=run.stuck,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "job": self.job,
            "slot": _time(self.slot),
            "trigger": self.trigger.value,
            "attempt": self.attempt,
            "state": self.state.value,
            "started_at": _time(self.started_at),
            "pid": self.pid,
            "config_sha": self.config_sha,
            "stuck": self.stuck,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class JobView:
    """A loaded job and where it stands."""

    id: str
    description: str
    path: Path
    schedule: str
    timezone: ZoneInfo
    next_fire: datetime | None
    last_outcome: Outcome | None
    last_ended_at: datetime | None
    last_success_at: datetime | None
    enabled: bool
    paused: bool
    running: int
    stuck: int  # of its running runs, those called stuck
    tags: Mapping[str, str]
    config_sha: str
    firing: str  # scheduled, or why the schedule never fires it: manual, at boot, done

    @classmethod
    def of(cls, js: JobState) -> JobView:
        job = js.job
        kind = job.schedule.kind
        if kind is ScheduleKind.MANUAL:
            firing = "manual"
        elif kind is ScheduleKind.REBOOT:
            firing = "at boot"
        elif js.fire_at is None and job.enabled and not js.paused:
            firing = "done"  # an @at that has fired
        else:
            firing = "scheduled"
        return cls(
            id=job.id,
            description=job.description,
            path=job.path,
            schedule=job.schedule.expr,
            timezone=job.timezone,
            next_fire=js.fire_at,
            last_outcome=js.last_outcome,
            last_ended_at=js.last_ended_at,
            last_success_at=js.last_success_at,
            enabled=job.enabled,
            paused=js.paused,
            running=len(js.alive),
            stuck=sum(1 for run in js.alive if run.stuck),
            tags=job.tags,
            config_sha=job.config_sha,
            firing=firing,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "path": str(self.path),
            "schedule": self.schedule,
            "timezone": self.timezone.key,
            "next_fire": _time(self.next_fire),
            "last_outcome": self.last_outcome.value if self.last_outcome else None,
            "last_ended_at": _time(self.last_ended_at),
            "last_success_at": _time(self.last_success_at),
            "enabled": self.enabled,
            "paused": self.paused,
            "running": self.running,
            "stuck": self.stuck,
            "tags": dict(self.tags),
            "config_sha": self.config_sha,
            "firing": self.firing,
        }


@dataclass(kw_only=True, slots=True)
class Stats:
    """The daemon's own figures."""

    jobs_dir: Path
    records_root: Path
    started_at: datetime | None = None
    reloads: int = 0  # batches applied since start
    last_reload: set[Path] | None = field(default=None)


class Operations(Protocol):
    """What the control API may do to a daemon."""

    def run_now(self, job_id: str, *, via: str | None = None) -> Run | None:
        """Fire the job now; None when its overlap policy skips the slot. `via` names the
        front end that asked (`mcp`, `web`), for the audit log."""
        ...

    def set_paused(
        self, job_id: str, paused: bool, *, via: str | None = None
    ) -> asyncio.Future[Any] | None:
        """Pause or resume; a future when the pause is being stored (a cluster's database)."""
        ...

    def cancel(self, run_id: str, *, via: str | None = None) -> Run | None: ...


class DaemonView:
    """A read-only view of a running daemon."""

    def __init__(
        self,
        *,
        scheduler: Scheduler,
        store: RecordStore,
        clock: Clock,
        stats: Stats,
        catalog: Catalog,
        cluster: ClusterNode | None = None,
    ) -> None:
        self._scheduler = scheduler
        self.store = store
        self._clock = clock
        self.stats = stats
        self._catalog = catalog
        self.cluster = cluster

    def now(self) -> datetime:
        return self._clock.now()

    def job_ids(self) -> list[str]:
        return sorted(self._scheduler.jobs)

    def jobs(self, tags: Mapping[str, str] | None = None) -> list[JobView]:
        """Every loaded job with all these tags, by id."""
        wanted = tags or {}
        return [
            JobView.of(js)
            for _, js in sorted(self._scheduler.jobs.items())
            if all(js.job.tags.get(k) == v for k, v in wanted.items())
        ]

    def job(self, job_id: str) -> JobView | None:
        js = self._scheduler.jobs.get(job_id)
        return JobView.of(js) if js is not None else None

    def zone(self, job_id: str) -> ZoneInfo:
        """The job's zone, for its times; UTC for a job no longer loaded."""
        js = self._scheduler.jobs.get(job_id)
        return js.job.timezone if js is not None else _UTC

    def running(self) -> list[RunView]:
        return [RunView.of(run) for run in self._scheduler.running()]

    def last_record(self, job_id: str) -> RunEnded | None:
        """The job's newest terminal record (from memory: no file is read)."""
        js = self._scheduler.jobs.get(job_id)
        return js.last if js is not None else None

    def invalid_files(self) -> dict[str, list[Problem]]:
        """Files with errors now."""
        return self._catalog.invalid_files

    def kept(self, path: str) -> bool:
        """Whether an invalid file's last good version still runs (a new file has none)."""
        return self._catalog.kept(path)

    def status(self) -> dict[str, Any]:
        """The daemon in one answer (`kron status`)."""
        stats = self.stats
        invalid = [
            {"path": path, "errors": [str(p) for p in problems], "kept": self.kept(path)}
            for path, problems in sorted(self.invalid_files().items())
        ]
        return {
            "version": __version__,
            "pid": os.getpid(),
            "started_at": _time(stats.started_at),
            "jobs_dir": str(stats.jobs_dir.resolve()),
            "records_dir": str(stats.records_root.resolve()),
            "jobs_loaded": len(self._scheduler.jobs),
            "paused": sorted(j for j, js in self._scheduler.jobs.items() if js.paused),
            "invalid_files": invalid,
            "running": [run.to_json() for run in self.running()],
            "reloads": stats.reloads,
            "records_failing": [
                {
                    "path": str(path),
                    "error": failing.error,
                    "since": format_time(datetime.fromtimestamp(failing.since, UTC)),
                    "failed_writes": failing.count,
                }
                for path, failing in sorted(self.store.failures.failing.items())
            ],
            **({"cluster": self.cluster_status()} if self.cluster is not None else {}),
        }

    def cluster_status(self) -> dict[str, Any]:
        """This node, the database, and every node of the cluster with its drift."""
        cluster = self.cluster
        assert cluster is not None
        stats, coordinator = cluster.stats, cluster.coordinator
        nodes = []
        for peer in coordinator.peers():
            state = "left" if not peer.alive else "alive"
            if peer.node != cluster.node and coordinator.dead(peer.node):
                state = "dead"
            drift = coordinator.drift.get(peer.node)
            nodes.append(
                {
                    "node": peer.node,
                    "state": state,
                    "version": peer.version,
                    "host": peer.host,
                    "pid": peer.pid,
                    "started_at": _time(peer.started_at),
                    "heartbeat_at": _time(peer.heartbeat_at),
                    "silent_s": round(peer.silent_s, 3),
                    "running": peer.running,
                    "digest": peer.digest,
                    "drift": None
                    if drift is None
                    else {
                        "differ": list(drift.differ),
                        "only_there": list(drift.only_there),
                        "only_here": list(drift.only_here),
                    },
                }
            )
        return {
            "node": cluster.node,
            "digest": coordinator.digest,
            "database": {
                "reachable": stats.up,
                "down_since": format_time(datetime.fromtimestamp(stats.down_since, UTC))
                if stats.down_since is not None
                else None,
                "error": None if stats.up else stats.last_error,
            },
            "claims": {"won": stats.claims_won, "lost": stats.claims_lost},
            "nodes": nodes,
        }
