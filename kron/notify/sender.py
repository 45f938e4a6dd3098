"""What deliveries and healthcheck pings share: they follow the scheduler's runs and send in
the background, each message in a task of its own, so a slow endpoint never delays a job."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from kron.engine.scheduler import Scheduler
from kron.model.job import Job
from kron.model.run import Event, RunEnded

if TYPE_CHECKING:
    import httpx

__all__ = ["Sender"]


class Sender:
    """A listener of a scheduler that sends in background tasks, drained at shutdown."""

    # What drain() logs when it has to stop sends in flight, with their count.
    late_message = "stopped %d message(s) still in flight at shutdown"

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._scheduler: Scheduler | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def attach(self, scheduler: Scheduler) -> None:
        """Follow every run of `scheduler`; attach after the record writer, so that a run's
        record is written before anything is sent about it."""
        self._scheduler = scheduler
        scheduler.subscribe(self.event)
        scheduler.on_run_ended(self.run_ended)

    def event(self, event: Event) -> None:
        """Every record of a run, as it is written."""

    def run_ended(self, job: Job, ended: RunEnded) -> None:
        """A run's final record, after its retries."""

    @property
    def in_flight(self) -> int:
        """How many sends are still going or waiting their turn."""
        return len(self._tasks)

    def _start(
        self,
        work: Coroutine[Any, Any, None],
        on_done: Callable[[asyncio.Task[None]], None] | None = None,
    ) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)  # the loop keeps only a weak reference to tasks
        task.add_done_callback(self._tasks.discard)
        if on_done is not None:
            task.add_done_callback(on_done)
        return task

    def _http(self) -> httpx.AsyncClient:
        """One client for every send (its connections are reused), made on first use."""
        if self._client is None:
            import httpx  # lazy: a daemon that sends nothing never loads httpx

            self._client = httpx.AsyncClient()
        return self._client

    async def drain(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` seconds for sends in flight, then cancel the rest.

        Call at shutdown, after the scheduler's.
        """
        pending = set(self._tasks)
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout_s)
            for task in late:
                task.cancel()
            if late:
                self._log.warning(self.late_message, len(late))
                await asyncio.wait(late)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
