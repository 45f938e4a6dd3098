"""`kron daemon`: one process per jobs directory, from first load to a clean exit."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from kron.actions.agent import AgentBudget
from kron.actions.dispatch import execute
from kron.config.catalog import Catalog, Changes, JobsDirGone
from kron.engine import records
from kron.engine.chain import Chains
from kron.engine.scheduler import Scheduler
from kron.engine.state import State, current_boot_id, kron_dir
from kron.model import job as spec
from kron.model.clock import Clock, RealClock
from kron.model.errors import KronError, Problem
from kron.model.job import Outcome
from kron.model.run import Event, RunEnded, to_record
from kron.model.schedule import ScheduleKind
from kron.notify.deliveries import Deliveries
from kron.notify.healthcheck import Healthchecks
from kron.service.systemd import Notifier, watchdog_loop

if TYPE_CHECKING:
    from kron.service.metrics import Metrics

log = logging.getLogger("kron.daemon")
AUDIT_MAX_BYTES = 16 * 1024 * 1024
DELIVERY_DRAIN_S = 5.0  # at shutdown, after the runs: systemd's TimeoutStopSec allows for it


def use_pidfd_child_watcher() -> None:
    """Python 3.11 waits for each child in a thread of its own; a pidfd costs no thread.

    Call from inside the running loop. Python 3.12 made the pidfd watcher the default.
    """
    if sys.version_info >= (3, 12) or not hasattr(asyncio, "PidfdChildWatcher"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)


class AlreadyRunning(KronError):
    """Another daemon holds this jobs directory."""


def lock_jobs_dir(jobs_dir: Path) -> int:
    """Hold an exclusive flock on the jobs directory itself: works on a read-only mount too."""
    fd = os.open(jobs_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(
            f"another kron daemon is already running on {jobs_dir} (one daemon per jobs directory)"
        ) from None
    return fd


class RecordSink:
    """Writes every event as a run record and applies each job's retention now and then."""

    def __init__(self, *, jobs_dir: Path, records_dir: Path | None, clock: Clock) -> None:
        self.jobs_dir = jobs_dir
        self.records_dir = records_dir
        self._clock = clock
        self._since_prune: dict[str, int] = {}
        self._pruning: set[str] = set()
        self._tasks: set[asyncio.Future[None]] = set()
        self.retention: dict[str, spec.Retention] = {}

    def path(self, job_id: str) -> Path:
        return records.records_path(job_id, jobs_dir=self.jobs_dir, records_dir=self.records_dir)

    def __call__(self, event: Event) -> None:
        path = self.path(event.job)
        try:
            records.append(path, to_record(event))
        except OSError as exc:
            log.error("job %s: cannot write record to %s: %s", event.job, path, exc)
            return
        if isinstance(event, RunEnded):
            count = self._since_prune.get(event.job, 0) + 1
            self._since_prune[event.job] = count
            retention = self.retention.get(event.job, spec.Retention())
            if count >= max(10, retention.keep // 10) and event.job not in self._pruning:
                self._since_prune[event.job] = 0
                self._prune_soon(event.job, path, retention)

    def _prune_soon(self, job_id: str, path: Path, retention: spec.Retention) -> None:
        """Prune in a worker thread: a large file never blocks the loop or a running job."""
        self._pruning.add(job_id)
        now = self._clock.now()

        async def prune() -> None:
            try:
                await asyncio.to_thread(
                    records.prune, path, keep=retention.keep, max_age=retention.max_age, now=now
                )
            except OSError as exc:
                log.warning("job %s: pruning %s failed: %s", job_id, path, exc)
            finally:
                self._pruning.discard(job_id)

        task = asyncio.ensure_future(prune())
        self._tasks.add(task)  # keep a reference: the loop holds tasks only weakly
        task.add_done_callback(self._tasks.discard)


@dataclass(kw_only=True, slots=True)
class Startup:
    """Where a job stands when the daemon (re)starts, from its records and kron's state."""

    cursor: datetime
    abandoned: list[dict[str, object]]
    last: dict[str, object] | None
    last_success: datetime | None = None


def where_it_stands(job: spec.Job, sink: RecordSink, state: State, now: datetime) -> Startup:
    path = sink.path(job.id)
    if not path.exists():
        candidates = [t for t in (state.first_seen.get(job.id), state.cursors.get(job.id)) if t]
        return Startup(cursor=max(candidates) if candidates else now, abandoned=[], last=None)
    last = records.last_slot(path)
    candidates = [t for t in (last, state.first_seen.get(job.id), state.cursors.get(job.id)) if t]
    cursor = max(candidates) if candidates else now
    return Startup(
        cursor=cursor,
        abandoned=records.unfinished_runs(path),
        last=records.last_terminal(path),
        last_success=_ended_at(records.last_terminal(path, outcome="succeeded")),
    )


def _ended_at(record: Mapping[str, object] | None) -> datetime | None:
    value = record.get("ended_at") if record else None
    return records.parse_time(value) if isinstance(value, str) else None


class Daemon:
    """Loads the jobs directory, runs the scheduler, and stops cleanly on a signal."""

    def __init__(
        self,
        jobs_dir: Path,
        *,
        records_dir: Path | None = None,
        clock: Clock | None = None,
        boot_id: str | None = None,
        control: bool = True,
        notifier: Notifier | None = None,
    ) -> None:
        self.jobs_dir = jobs_dir
        self._records_dir_override = records_dir
        self.clock = clock or RealClock()
        self.boot_id = boot_id or current_boot_id()
        self.catalog = Catalog(jobs_dir)
        self.reloads = 0  # batches applied since start (status, tests)
        self.last_reload: set[Path] | None = None
        self.scheduler: Scheduler | None = None
        self.sink: RecordSink | None = None
        self.state: State | None = None
        self.started_at: datetime | None = None
        self._control: asyncio.Server | None = None
        self._metrics: asyncio.Server | None = None
        self.metrics: Metrics | None = None
        self.control = control
        self.notifier = notifier or Notifier.from_environment()
        self._stop = asyncio.Event()
        self._lock_fd: int | None = None

    @property
    def settings(self) -> spec.Settings:
        return self.catalog.settings

    @property
    def records_root(self) -> Path:
        return self._records_dir_override or self.settings.records_dir or self.jobs_dir

    def load(self) -> Changes:
        """First load; kron.toml errors are fatal, a bad job file is reported and skipped."""
        changes = self.catalog.scan()
        settings_errors = [p for p in changes.settings_problems if p.severity == "error"]
        if settings_errors:
            raise KronError("invalid kron.toml:\n" + "\n".join(str(p) for p in settings_errors))
        _log_problems(self.catalog.problems)
        return changes

    async def start(self) -> None:
        """Lock, load, recover from the last stop, and arm every job."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            # From the very start: a stop requested while loading is honoured once serving.
            loop.add_signal_handler(signum, self.request_stop)
        self._lock_fd = lock_jobs_dir(self.jobs_dir)
        try:
            self.load()
        except BaseException:
            self.close()
            raise
        settings = self.settings
        root = self.records_root
        self.state = State.load(kron_dir(root) / "state.json")
        self.sink = RecordSink(
            jobs_dir=self.jobs_dir,
            records_dir=self._records_dir_override or settings.records_dir,
            clock=self.clock,
        )
        # One agent budget for the daemon: kron.toml's daily limits, counted from the records.
        self.budget = AgentBudget.from_settings(settings, records_root=root, now=self.clock.now)
        self.scheduler = Scheduler(
            clock=self.clock,
            max_concurrent=settings.max_concurrent,
            policy=settings.policy,
            execute_action=functools.partial(execute, budget=self.budget),
        )
        self.scheduler.subscribe(self.sink)
        # After the record writer: a delivery or a trigger always follows a written record.
        self.chains = Chains()
        self.chains.attach(self.scheduler)
        self.deliveries = Deliveries(records_path=self.sink.path, clock=self.clock)
        self.deliveries.attach(self.scheduler)
        self.healthchecks = Healthchecks()
        self.healthchecks.attach(self.scheduler)
        if settings.metrics:
            from kron.service.metrics import Metrics

            # Subscribed before the first load, so slots recorded missed at start-up count.
            self.metrics = Metrics(self)
            self.scheduler.subscribe(self.metrics)
        now = self.clock.now()
        self.started_at = now
        first_boot = self.state.boot_id != self.boot_id
        self.audit = AuditLog(kron_dir(root) / "audit.jsonl", self.clock)
        jobs = self.catalog.active
        self.apply(jobs, now=now, recover=True)
        with self.audit.batch():
            for job in jobs.values():
                self.audit.write("load", job=job.id, path=job.path, config_sha=job.config_sha)
            for path, problems in self.catalog.invalid_files.items():
                self.audit.write(
                    "invalid", path=Path(path), error="; ".join(p.message for p in problems)
                )
        if first_boot:
            self.state.boot_id = self.boot_id
            for job in jobs.values():
                if (
                    job.schedule.kind is ScheduleKind.REBOOT
                    and job.enabled
                    and job.id not in self.state.paused
                ):
                    self.scheduler.fire(job.id, slot=now, trigger=spec.Trigger.REBOOT)
        self._save_state()
        if self.control:
            try:
                await self._start_control()
            except BaseException:
                self.close()
                raise
        try:
            await self._start_metrics()
        except BaseException:
            self.close()
            raise
        log.info(
            "kron daemon started: %d jobs loaded from %s, %d invalid files",
            len(jobs),
            self.jobs_dir,
            len(self.catalog.invalid_files),
        )

    def apply(self, jobs: Mapping[str, spec.Job], *, now: datetime, recover: bool = False) -> None:
        """Bring the scheduler to exactly this job set (first load, reload)."""
        assert self.scheduler is not None
        assert self.sink is not None
        assert self.state is not None
        for job_id in list(self.scheduler.jobs):
            if job_id not in jobs:
                self.scheduler.remove(job_id)
                self.sink.retention.pop(job_id, None)
        for job in jobs.values():
            self.sink_retention(job)
            if job.id in self.scheduler.jobs:
                self.scheduler.update(job)
                continue
            standing = where_it_stands(job, self.sink, self.state, now)
            self.state.first_seen.setdefault(job.id, now)
            if recover:
                for record in standing.abandoned:
                    self._abandon(job, record, now)
            self.scheduler.add(
                job,
                cursor=standing.cursor,
                paused=job.id in self.state.paused,
                now=now,
                last=standing.last,
                last_success=standing.last_success,
            )

    def _abandon(self, job: spec.Job, record: Mapping[str, object], now: datetime) -> None:
        assert self.sink is not None
        started = record.get("started_at")
        self.sink(
            RunEnded(
                run_id=str(record.get("run_id")),
                job=job.id,
                slot=records.parse_time(str(record.get("slot"))),
                trigger=spec.Trigger(str(record.get("trigger", "schedule"))),
                attempt=int(str(record.get("attempt", 1))),
                outcome=Outcome.ABANDONED,
                started_at=records.parse_time(str(started)) if started else None,
                ended_at=now,
                config_sha=str(record.get("config_sha", "")),
                error="the daemon stopped while this run was alive (crash, kill -9 or power loss)",
            )
        )
        log.warning(
            "job %s: run %s was alive when the daemon stopped; recorded abandoned",
            job.id,
            record.get("run_id"),
        )

    def _remember_cursors(self) -> None:
        assert self.scheduler is not None
        assert self.state is not None
        now = self.clock.now()
        for job_id, js in self.scheduler.jobs.items():
            idle = not js.job.enabled or js.paused
            self.state.cursors[job_id] = now if idle else js.cursor

    def _save_state(self) -> None:
        assert self.state is not None
        try:
            self.state.save()
        except OSError as exc:
            log.error("cannot save state to %s: %s", self.state.path, exc)

    def set_paused(self, job_id: str, paused: bool) -> None:
        """Pause or resume a job's schedule; kept in kron's state, so it survives restarts."""
        assert self.scheduler is not None
        assert self.state is not None
        if paused:
            self.state.paused.add(job_id)
        else:
            self.state.paused.discard(job_id)
        self.scheduler.set_paused(job_id, paused)
        self._save_state()
        self.audit.write("pause" if paused else "resume", job=job_id)
        log.info("job %s %s", job_id, "paused" if paused else "resumed")

    @property
    def control_socket(self) -> Path:
        from kron.service.control import default_socket_path

        return self.settings.control_socket or default_socket_path(self.records_root)

    async def _start_control(self) -> None:
        from kron.service.control import ControlAPI
        from kron.service.httpd import serve_unix

        path = self.control_socket
        try:
            self._control = await serve_unix(path, ControlAPI(self))
        except OSError as exc:
            raise KronError(
                f"cannot listen on the control socket {path}: {exc}; "
                "set control_socket in kron.toml (or XDG_RUNTIME_DIR)"
            ) from None
        log.info("control socket: %s", path)

    async def _start_metrics(self) -> None:
        """Serve /metrics and the read-only status page on `metrics` (HOST:PORT), if set."""
        if not self.settings.metrics:
            return
        from kron.service.httpd import serve_tcp
        from kron.service.web import StatusSite, listen_address

        assert self.scheduler is not None
        host, port = listen_address(self.settings.metrics)
        shown = f"[{host}]" if ":" in host else host
        assert self.metrics is not None
        try:
            self._metrics = await serve_tcp(host, port, StatusSite(self, self.metrics))
        except OSError as exc:
            raise KronError(f"cannot listen on metrics = {shown}:{port}: {exc}") from None
        bound_port = self._metrics.sockets[0].getsockname()[1]
        log.info("metrics and status page: http://%s:%d/", shown, bound_port)

    def request_stop(self) -> None:
        self._stop.set()

    def reload(self, paths: set[Path] | None = None) -> Changes:
        """Apply changed files (or, with None, re-read everything, as on SIGHUP)."""
        assert self.scheduler is not None
        assert self.state is not None
        started = time.perf_counter()
        self.notifier.reloading()
        try:
            changes = self.catalog.scan() if paths is None else self.catalog.apply(paths)
            self.reloads += 1
            self.last_reload = paths
            self._apply(changes, started)
        finally:
            self.notifier.ready(self.status_line())
        return changes

    def status_line(self) -> str:
        """The daemon in one line, for `systemctl status`."""
        running = len(self.scheduler.running()) if self.scheduler else 0
        return (
            f"{len(self.catalog.active)} jobs, {len(self.catalog.invalid_files)} invalid files, "
            f"{running} running"
        )

    def _apply(self, changes: Changes, started: float | None = None) -> None:
        """Bring the scheduler, the audit log and the state in line with a catalog change."""
        assert self.scheduler is not None
        assert self.state is not None
        started = started or time.perf_counter()
        now = self.clock.now()
        with self.audit.batch():  # a `git checkout` of 10,000 files: one write
            if changes.settings_changed:
                self.scheduler.policy = self.settings.policy
                self.scheduler.set_max_concurrent(self.settings.max_concurrent)
                self.budget.max_runs_per_day = self.settings.max_runs_per_day
                self.budget.max_tokens_per_day = self.settings.max_tokens_per_day
                self.audit.write("settings", path=self.settings.path)
            for problem in changes.settings_problems:
                (log.error if problem.severity == "error" else log.warning)(
                    "%s (kept the last good settings)", problem
                )
            for entry in changes.invalid:
                _log_problems(entry.problems)
                kept = " (its last good version stays scheduled)" if entry.job is not None else ""
                log.error("%s: invalid%s", entry.path, kept)
                self.audit.write(
                    "invalid",
                    job=entry.job_id,
                    path=entry.path,
                    error="; ".join(p.message for p in entry.errors),
                )
            for entry in changes.fixed:
                log.info("%s: valid again", entry.path)
            for job in changes.added:
                self.state.first_seen.setdefault(job.id, now)
                self.sink_retention(job)
                self.scheduler.add(job, cursor=now, paused=job.id in self.state.paused, now=now)
                self.audit.write("add", job=job.id, path=job.path, config_sha=job.config_sha)
            for job in changes.updated:
                self.sink_retention(job)
                self.scheduler.update(job)
                self.audit.write("change", job=job.id, path=job.path, config_sha=job.config_sha)
            for job_id in changes.removed:
                self.scheduler.remove(job_id)
                self.audit.write("remove", job=job_id)
        if changes.added:
            self._save_state()
        if changes:
            log.info(
                "reloaded in %.1f ms: %d added, %d changed, %d removed, %d invalid",
                (time.perf_counter() - started) * 1000,
                len(changes.added),
                len(changes.updated),
                len(changes.removed),
                len(changes.invalid),
            )

    def sink_retention(self, job: spec.Job) -> None:
        assert self.sink is not None
        self.sink.retention[job.id] = job.records

    async def _follow(self) -> None:
        """Apply changes from the jobs directory as they come; a failure never stops the daemon."""
        from kron.config.watch import watch

        failing = False  # said once per streak, not every 5 s (a jobs directory moved away)

        def ready() -> None:
            nonlocal failing
            failing = False
            # Files changed between the first load and now were not seen by the watcher.
            try:
                self._apply(self.catalog.refresh())
            except JobsDirGone as exc:
                log.error("%s", exc)
            except Exception:
                log.exception("re-checking %s failed", self.jobs_dir)

        while not self._stop.is_set():
            try:
                async for paths in watch(self.jobs_dir, self._stop, on_ready=ready):
                    self._reload_logged(paths)
            except OSError as exc:
                if not failing:
                    log.error("cannot watch %s: %s; retrying every 5 s", self.jobs_dir, exc)
                failing = True
            except Exception:
                log.exception(
                    "watching %s failed; retrying in 5 s (SIGHUP reloads meanwhile)", self.jobs_dir
                )
            if not self._stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 5)

    def _reload_logged(self, paths: set[Path] | None) -> None:
        """reload(), with a failure logged: the jobs stay as they were."""
        try:
            self.reload(paths)
        except JobsDirGone as exc:
            log.error("%s", exc)
        except Exception:
            log.exception("reload failed; the jobs stay as they were")

    def _on_sighup(self) -> None:
        log.info("SIGHUP: re-reading %s", self.jobs_dir)
        self._reload_logged(None)

    async def serve(self, *, watch: bool = True) -> None:
        """Run until SIGTERM/SIGINT, then shut down within shutdown_grace."""
        assert self.scheduler is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        runner = asyncio.ensure_future(self.scheduler.run_forever())
        follower = asyncio.ensure_future(self._follow()) if watch else None
        stopper = asyncio.ensure_future(self._stop.wait())
        watchdog = asyncio.ensure_future(watchdog_loop(self.notifier, self._stop))
        # READY only now: the SIGHUP handler is in place, so `systemctl reload` is safe.
        self.notifier.ready(self.status_line())
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if runner.done() and runner.exception():
            log.error("scheduler stopped unexpectedly", exc_info=runner.exception())
        self.notifier.stopping(f"stopping: {len(self.scheduler.running())} runs to end")
        log.info("stopping: no new runs")
        self._stop.set()
        await self.scheduler.shutdown(self.settings.shutdown_grace)
        # Messages about the runs just stopped get a short while to leave.
        await asyncio.gather(
            self.deliveries.drain(DELIVERY_DRAIN_S), self.healthchecks.drain(DELIVERY_DRAIN_S)
        )
        self._remember_cursors()
        for task in (runner, follower, watchdog):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._save_state()
        self.close()
        log.info("kron daemon stopped")

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
        if self._control is not None:
            self._control.close()
            with contextlib.suppress(OSError):
                self.control_socket.unlink()
            self._control = None
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        self.notifier.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _log_problems(problems: list[Problem]) -> None:
    for problem in problems:
        (log.error if problem.severity == "error" else log.warning)("%s", problem)


class AuditLog:
    """Every load, change, removal and invalid file, as one JSON line each.

    The file is capped: past AUDIT_MAX_BYTES at start-up it becomes `audit.jsonl.1` (the one
    before that is dropped), so a daemon restarted daily with 10,000 jobs keeps a bounded log.
    """

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self._clock = clock
        self._pending: list[dict[str, str | None]] | None = None
        try:
            if path.stat().st_size > AUDIT_MAX_BYTES:
                path.replace(path.with_name(path.name + ".1"))
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot rotate the audit log %s: %s", path, exc)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Write every line logged inside the block at its end, with one `write`."""
        self._pending = []
        try:
            yield
        finally:
            pending, self._pending = self._pending, None
            self._append(pending)

    def write(
        self,
        event: str,
        *,
        job: str | None = None,
        path: Path | None = None,
        config_sha: str | None = None,
        error: str | None = None,
    ) -> None:
        line = {
            "time": records.format_time(self._clock.now()),
            "event": event,
            "job": job,
            "path": str(path) if path else None,
            "config_sha": config_sha,
            "error": error,
        }
        if self._pending is not None:
            self._pending.append(line)
        else:
            self._append([line])

    def _append(self, lines: list[dict[str, str | None]]) -> None:
        try:
            records.append_many(self.path, lines)
        except OSError as exc:
            log.error("cannot write the audit log %s: %s", self.path, exc)
