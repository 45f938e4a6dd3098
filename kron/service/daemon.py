"""`kron daemon`: one process per jobs directory, from first load to a clean exit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kron.config.cache import CACHE_NAME, JobCache
from kron.config.catalog import Catalog, Changes, JobsDirGone
from kron.config.watch import Watches, early_watches, watch
from kron.engine.coordinator import JobsDirLock
from kron.engine.scheduler import Scheduler
from kron.engine.state import current_boot_id, kron_dir
from kron.model.clock import Clock, RealClock
from kron.model.errors import KronError
from kron.model.settings import Settings
from kron.model.units import plural
from kron.service.control import ControlAPI, default_socket_path
from kron.service.httpd import serve_unix
from kron.service.memory import give_back_memory
from kron.service.reports import log_problems, report_changes
from kron.service.runtime import DELIVERY_DRAIN_S, Runtime
from kron.service.signals import Signals
from kron.service.systemd import Notifier, watchdog_loop
from kron.service.view import DaemonView, Stats

if TYPE_CHECKING:
    from kron.service.site import Site

__all__ = ["Daemon"]

log = logging.getLogger("kron.daemon")

_READ_ATTEMPTS = 3  # a reading made stale by a concurrent `reload()` is read again this often


class Daemon:
    """Loads the jobs directory, runs its jobs, follows its changes, and stops cleanly.

    `start()` locks the directory, loads it and builds the runtime; `serve()` runs until
    SIGTERM or SIGINT.
    """

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
        self._records_dir = records_dir
        self.clock = clock or RealClock()
        self.boot_id = boot_id or current_boot_id()
        # The first load is read by forked workers (this process never parses a file until
        # one changes), or taken from the warm-start cache in kron's folder of the records.
        self.catalog = Catalog(
            jobs_dir, now=self.clock.now, cache=self._job_cache, first_in_workers=True
        )
        self.stats = Stats(jobs_dir=jobs_dir, records_root=records_dir or jobs_dir)
        self.control = control
        self.notifier = notifier or Notifier.from_environment()
        self._runtime: Runtime | None = None  # built by start(), once the jobs are loaded
        self.view: DaemonView | None = None  # built by start(), with the runtime
        self._servers: list[asyncio.Server] = []
        self._site: Site | None = None  # /metrics and the status page, when `metrics` is set
        self._control_socket: Path | None = None
        self._signals: Signals | None = None  # from `start` to `close`
        self._watches: Watches | None = None  # opened before the first load, for the watcher
        self._stop = asyncio.Event()
        self._reloading = asyncio.Lock()  # one reload at a time: each reads what the last left
        self._background: set[asyncio.Task[None]] = set()

    def _job_cache(self, settings: Settings) -> JobCache:
        root = self._records_dir or settings.records_dir or self.jobs_dir
        return JobCache(kron_dir(root) / CACHE_NAME, jobs_dir=self.jobs_dir)

    async def _save_cache(self) -> None:
        """Write the warm-start cache, in a worker thread, if it differs from what is loaded."""
        write = self.catalog.cache_writer()
        if write is None:
            return
        try:
            count = await asyncio.to_thread(write)
        except OSError as exc:
            log.info("cannot write the job cache (%s); the next start reads every file", exc)
        else:
            log.debug("job cache: %d jobs written", count)

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("the daemon has not started: call start() first")
        return self._runtime

    @property
    def settings(self) -> Settings:
        return self.catalog.settings

    @property
    def scheduler(self) -> Scheduler:
        return self.runtime.scheduler

    @property
    def reloads(self) -> int:
        return self.stats.reloads

    @property
    def last_reload(self) -> set[Path] | None:
        return self.stats.last_reload

    def set_paused(self, job_id: str, paused: bool, *, via: str | None = None) -> None:
        self.runtime.set_paused(job_id, paused, via=via)

    # -- starting ---------------------------------------------------------------------------

    def load(self) -> Changes:
        """First load; kron.toml errors are fatal, a bad job file is reported and skipped."""
        changes = self.catalog.scan()
        settings_errors = [p for p in changes.settings_problems if p.is_error]
        if settings_errors:
            raise KronError("invalid kron.toml:\n" + "\n".join(str(p) for p in settings_errors))
        log_problems(self.catalog.problems)
        return changes

    async def start(self) -> None:
        """Lock, load, recover from the last stop, and arm every job."""
        self._signals = Signals(asyncio.get_running_loop())
        for signum in (signal.SIGTERM, signal.SIGINT):
            # From the very start: a stop requested while loading is honoured once serving.
            self._signals.on(signum, self.request_stop)
        lock = JobsDirLock(self.jobs_dir)
        try:
            # Watched from before the first load: a change made while it reads is queued in
            # the kernel, so nothing needs reading again once the watcher starts.
            self._watches = early_watches(self.jobs_dir)
            self.load()
        except BaseException:
            lock.release()
            self.close()
            raise
        settings = self.settings
        try:
            runtime = self._runtime = Runtime(
                self.jobs_dir,
                settings,
                clock=self.clock,
                records_dir=self._records_dir,
                lock=lock,
                cluster=True,
            )
        except BaseException:
            lock.release()
            self.close()
            raise
        if runtime.cluster is not None:
            runtime.cluster.coordinator.takeover.on_fatal = lambda _: self.request_stop()
        self.stats.records_root = runtime.records_root
        view = self.view = DaemonView(
            scheduler=runtime.scheduler,
            store=runtime.store,
            clock=self.clock,
            stats=self.stats,
            catalog=self.catalog,
            cluster=runtime.cluster,
        )
        metrics = None
        if settings.metrics:
            from kron.service.metrics import Metrics  # lazy: prometheus_client only when asked

            # Subscribed before the first load, so slots recorded missed at start-up count.
            metrics = Metrics(view)
            runtime.scheduler.subscribe(metrics)
        now = self.clock.now()
        self.stats.started_at = now
        jobs = self.catalog.active
        try:
            started = await runtime.start(jobs, now=now, boot_id=self.boot_id, stop=self._stop)
        except BaseException:
            self.close()
            raise
        if not started:
            return  # stopped while waiting for the cluster database; serve() exits at once
        audit = runtime.audit
        assert audit is not None  # a daemon's runtime keeps one
        with audit.batch():
            for job in jobs.values():
                audit.write("load", job=job.id, path=job.path, config_sha=job.config_sha)
            for path, problems in self.catalog.invalid_files.items():
                audit.write(
                    "invalid", path=Path(path), error="; ".join(p.message for p in problems)
                )
        try:
            if self.control:
                await self._start_control(view)
            if metrics is not None and settings.metrics:
                from kron.service.site import Site  # lazy, as the metrics

                self._site = Site(
                    view, runtime, metrics, settings=lambda: self.settings, clock=self.clock
                )
                self._servers.append(await self._site.start(settings.metrics))
        except BaseException:
            self.close()
            raise
        cached = self.catalog.from_cache
        log.info(
            "kron daemon started: %d jobs loaded from %s, %d invalid files%s",
            len(jobs),
            self.jobs_dir,
            len(self.catalog.invalid_files),
            f" ({cached} unchanged files taken from the warm-start cache)" if cached else "",
        )

    @property
    def control_socket(self) -> Path:
        return self.settings.control_socket or default_socket_path(
            self.jobs_dir, self.stats.records_root
        )

    async def _start_control(self, view: DaemonView) -> None:
        path = self.control_socket
        try:
            self._servers.append(await serve_unix(path, ControlAPI(view, self.runtime)))
        except OSError as exc:
            said = str(exc) if str(path) in str(exc) else f"cannot listen on {path}: {exc}"
            raise KronError(f"{said}; set control_socket in kron.toml") from None
        self._control_socket = path
        log.info("control socket: %s", path)

    # -- reloading --------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def reload(self, paths: set[Path] | None = None) -> Changes:
        """Apply changed files (or, with None, re-read everything, as on SIGHUP), reading them
        here and now; the serving daemon reads in a worker thread instead (`reload_async`)."""
        started = time.perf_counter()
        self.notifier.reloading()
        try:
            changes = self.catalog.scan() if paths is None else self.catalog.apply(paths)
            self.stats.reloads += 1
            self.stats.last_reload = paths
            self._apply(changes, started)
        finally:
            self.notifier.ready(self.status_line())
        return changes

    async def reload_async(self, paths: set[Path] | None = None) -> Changes:
        """`reload`, with the files read and parsed in a worker thread.

        Only the result is applied on the event loop (a few assignments, then the scheduler's
        changes), so a reload of 500 files, or of one file with 1,000 errors, never holds up
        the slots of other jobs. Reloads run one at a time.
        """
        async with self._reloading:
            started = time.perf_counter()
            self.notifier.reloading()
            status = None
            try:
                changes = await self._read_and_adopt(paths, refresh=False)
                self.stats.reloads += 1
                self.stats.last_reload = paths
                self._put_in_force(changes)
                status = await asyncio.to_thread(self._report_status, changes, started)
            finally:
                self.notifier.ready(status or self.status_line())
            give_back_memory()  # the files read, and on a first edit the schema's code generation
            return changes

    async def _refresh_async(self) -> None:
        """Re-read what changed since the first load (the watcher was not there yet)."""
        async with self._reloading:
            changes = await self._read_and_adopt(None, refresh=True)
            self._put_in_force(changes)
            await asyncio.to_thread(self._report, changes)

    def _report_status(self, changes: Changes, started: float) -> str:
        """`_report`, then the status line: both read every problem, off the event loop."""
        self._report(changes, started)
        return self.status_line()

    async def _read_and_adopt(self, paths: set[Path] | None, *, refresh: bool) -> Changes:
        def how(catalog: Catalog) -> Changes:
            if refresh:
                return catalog.refresh()
            return catalog.scan() if paths is None else catalog.apply(paths)

        for _ in range(_READ_ATTEMPTS):
            reading = await asyncio.to_thread(self.catalog.read, how)
            changes = self.catalog.adopt(reading)
            if changes is not None:
                return changes
            # The catalog changed meanwhile (a `reload()` called on the loop): read again.
        return how(self.catalog)

    def status_line(self) -> str:
        """The daemon in one line, for `systemctl status`."""
        running = len(self._runtime.scheduler.running()) if self._runtime else 0
        return (
            f"{plural(len(self.catalog.active), 'job')}, "
            f"{plural(len(self.catalog.invalid_files), 'invalid file')}, {running} running"
        )

    def _apply(self, changes: Changes, started: float | None = None) -> None:
        """Bring the runtime and the audit log in line with a catalog change."""
        self._put_in_force(changes)
        audit = self.runtime.audit
        assert audit is not None
        with audit.batch():  # a `git checkout` of 10,000 files: one write
            self._report(changes, started)

    def _put_in_force(self, changes: Changes) -> None:
        """Bring the runtime, and the status page's actions, in line with a catalog change."""
        self.runtime.apply(changes, self.settings)
        if changes.settings_changed and self._site is not None:
            self._site.settings_changed()

    def _report(self, changes: Changes, started: float | None = None) -> None:
        """Log a catalog change and write it to the audit log (`reports.report_changes`).

        Safe in a worker thread once the change is in force: it reads only `changes` and the
        catalog, which changes only under the reload lock that its caller holds.
        """
        audit = self.runtime.audit
        assert audit is not None
        report_changes(changes, audit=audit, settings_path=self.settings.path, started=started)

    async def _follow(self) -> None:
        """Apply changes from the jobs directory as they come; a failure never stops the daemon."""

        failing = False  # said once per streak, not every 5 s (a jobs directory moved away)

        def ready() -> None:
            nonlocal failing
            failing = False
            # Files changed between the first load and now were not seen by the watcher.
            self._in_background(self._refresh_async(), f"re-checking {self.jobs_dir}")

        while not self._stop.is_set():
            early, self._watches = self._watches, None
            try:
                async for paths in watch(self.jobs_dir, self._stop, on_ready=ready, watches=early):
                    await self._reload_logged(paths)
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

    async def _reload_logged(self, paths: set[Path] | None) -> None:
        """reload_async(), with a failure logged: the jobs stay as they were."""
        try:
            await self.reload_async(paths)
        except JobsDirGone as exc:
            log.error("%s", exc)
        except Exception:
            log.exception("reload failed; the jobs stay as they were")

    def _in_background(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Run `work` as a task kept until it ends; its failure is logged, never lost."""

        async def logged() -> None:
            try:
                await work
            except JobsDirGone as exc:
                log.error("%s", exc)
            except Exception:
                log.exception("%s failed", what)

        task = asyncio.ensure_future(logged())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_sighup(self) -> None:
        log.info("SIGHUP: re-reading %s", self.jobs_dir)
        self._in_background(self._reload_logged(None), "SIGHUP reload")

    # -- serving and stopping ---------------------------------------------------------------

    async def serve(self, *, watch: bool = True) -> None:
        """Run until SIGTERM/SIGINT, then shut down within shutdown_grace."""
        scheduler = self.runtime.scheduler
        if self._signals is not None:
            self._signals.on(signal.SIGHUP, self._on_sighup)
        runner = asyncio.ensure_future(scheduler.run_forever())
        stuck = asyncio.ensure_future(self.runtime.stuck.run_forever())
        follower = asyncio.ensure_future(self._follow()) if watch else None
        stopper = asyncio.ensure_future(self._stop.wait())
        watchdog = asyncio.ensure_future(watchdog_loop(self.notifier, self._stop))
        # READY only now: the SIGHUP handler is in place, so `systemctl reload` is safe.
        self.notifier.ready(self.status_line())
        self._in_background(self._save_cache(), "writing the job cache")
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if runner.done() and runner.exception():
            log.error("scheduler stopped unexpectedly", exc_info=runner.exception())
        self.notifier.stopping(f"stopping: {plural(len(scheduler.running()), 'run')} to end")
        log.info("stopping: no new runs")
        self._stop.set()
        await scheduler.shutdown(self.settings.shutdown_grace)
        await self.runtime.drain()
        await self.runtime.leave(DELIVERY_DRAIN_S)
        self.runtime.remember_cursors()
        for task in (runner, stuck, follower, watchdog, *self._background):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.runtime.state.save_logged()
        await self._save_cache()  # what reloads changed, for the next start
        self.close()
        log.info("kron daemon stopped")

    def close(self) -> None:
        if self._signals is not None:
            self._signals.close()
            self._signals = None
        for server in self._servers:
            server.close()
        self._servers.clear()
        if self._control_socket is not None:
            with contextlib.suppress(OSError):
                self._control_socket.unlink()
            self._control_socket = None
        self.notifier.close()
        if self._watches is not None:
            self._watches.close()
            self._watches = None
        if self._runtime is not None:
            self._runtime.close()
