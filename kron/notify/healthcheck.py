"""Dead-man's-switch pings in the healthchecks.io convention, sent in the background.

`GET <url>/start` when an attempt starts, then, once the run's final outcome is known (after its
retries), `GET <url>` for success or `GET <url>/fail` for failure:

- `succeeded` pings success.
- `skipped` (a wait with `on_timeout = "skip"`, a spent agent budget) pings success too: the job
  checked in on time and chose, by its own rule, not to act. The switch watches for silence.
- `failed`, `timeout`, `wait_timeout`, `cancelled` and `abandoned` ping `/fail` (kron.chain's
  failures for good): the work did not get done, whether it broke, hung or was stopped.
- `replaced` pings nothing: the run that replaced it sends its own `/start` and outcome.

Every attempt pings `/start`, so a long series of retries keeps the check's timer fresh. The pings
of one job go out one after another, in order, so a slow `/start` never lands after the outcome.
A ping has a short timeout and a few tries; a failure is logged, and never delays a job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

from kron import __version__
from kron.actions.base import connection_reason
from kron.model.job import Job
from kron.model.run import FAILED_FOR_GOOD, Event, Outcome, RunEnded, RunStarted
from kron.notify.deliveries import backoff_s
from kron.notify.sender import Sender

__all__ = ["MAX_BACKLOG", "Healthchecks", "ping_for", "ping_url"]

log = logging.getLogger("kron.healthcheck")

# Pings waiting per job behind one that hangs; beyond this, new ones are dropped (and logged)
# rather than piling up while a fast job keeps running against a dead endpoint.
MAX_BACKLOG = 10
START, SUCCESS, FAIL = "start", "", "fail"


def ping_for(outcome: Outcome) -> str | None:
    """The ping a run's final outcome sends: "" (success), "fail", or None for none."""
    if outcome in (Outcome.SUCCEEDED, Outcome.SKIPPED):
        return SUCCESS
    if outcome in FAILED_FOR_GOOD:
        return FAIL
    return None


def ping_url(url: str, kind: str) -> str:
    """`<url>/<kind>`, keeping any query string; `kind` "" is the URL itself."""
    if not kind:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{kind}"))


class Healthchecks(Sender):
    """Pings each job's `healthcheck` URL as its runs start and end."""

    late_message = "dropped %d healthcheck ping(s) still in flight at shutdown"

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        attempts: int = 3,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Args:
        timeout_s: limit of one ping.
        attempts: tries of one ping when the endpoint cannot be reached or answers 5xx.
        sleep: waits between tries (tests pass one that returns at once).
        """
        super().__init__(log)
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._sleep = sleep
        self._last: dict[str, asyncio.Task[None]] = {}  # the newest ping of each job
        self._backlog: dict[str, int] = {}

    def event(self, event: Event) -> None:
        """Ping `/start` for an attempt that starts."""
        if not isinstance(event, RunStarted) or self._scheduler is None:
            return
        js = self._scheduler.jobs.get(event.job)
        if js is not None and js.job.healthcheck:
            self._ping(event.job, js.job.healthcheck, START)

    def run_ended(self, job: Job, ended: RunEnded) -> None:
        """Ping success or `/fail` for a run's final outcome."""
        kind = ping_for(ended.outcome)
        if job.healthcheck and kind is not None:
            self._ping(job.id, job.healthcheck, kind)

    def _ping(self, job_id: str, url: str, kind: str) -> None:
        waiting = self._backlog.get(job_id, 0)
        if waiting >= MAX_BACKLOG:
            log.warning(
                "job %s: %d healthcheck pings already waiting; dropped the %s ping",
                job_id,
                waiting,
                _name(kind),
            )
            return
        self._backlog[job_id] = waiting + 1
        self._last[job_id] = self._start(
            self._send_after(self._last.get(job_id), job_id, url, kind),
            on_done=lambda done: self._done(job_id, done),
        )

    def _done(self, job_id: str, task: asyncio.Task[None]) -> None:
        left = self._backlog.pop(job_id, 1) - 1
        if left > 0:
            self._backlog[job_id] = left
        if self._last.get(job_id) is task:
            del self._last[job_id]

    async def _send_after(
        self, previous: asyncio.Task[None] | None, job_id: str, url: str, kind: str
    ) -> None:
        if previous is not None:
            await asyncio.wait({previous})  # in order; a failed ping does not stop the next
        import httpx  # lazy: a daemon with no healthcheck never loads httpx

        target = ping_url(url, kind)
        error = ""
        for attempt in range(1, self._attempts + 1):
            try:
                response = await self._http().get(
                    target, headers={"User-Agent": f"kron/{__version__}"}, timeout=self._timeout_s
                )
            except httpx.TimeoutException:
                error, retry = f"no answer within {self._timeout_s:g}s", True
            except httpx.HTTPError as exc:
                error, retry = connection_reason(exc), True
            else:
                if response.is_success:
                    log.debug("job %s: healthcheck %s ping sent", job_id, _name(kind))
                    return
                error = f"HTTP {response.status_code}"
                retry = response.status_code in (408, 429) or response.status_code >= 500
            if not retry or attempt == self._attempts:
                break
            await self._sleep(backoff_s(attempt))
        # The URL is a capability (anyone holding it can ping): name its host only.
        log.warning(
            "job %s: healthcheck %s ping to %s failed after %d attempt(s): %s",
            job_id,
            _name(kind),
            urlsplit(url).hostname,
            attempt,
            error,
        )


def _name(kind: str) -> str:
    return kind or "success"
