"""What every action shares: its result, its environment, and how it is stopped or timed out."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import socket
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from kron.model.job import DockerAction, Job
from kron.model.run import Outcome, Output
from kron.model.secrets import Secrets, read_env_file

__all__ = [
    "ActionResult",
    "Interrupted",
    "RunEnvironment",
    "connection_reason",
    "until_stopped",
    "working_dir",
]

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True, slots=True)
class ActionResult(Output):
    """What an action produced (a process, a request, a container), before the runner turns it
    into an outcome; its `Output` fields go into the run's record as they are."""

    timed_out: bool = False
    stopped: bool = False
    ok: bool | None = None  # set by non-process actions; process actions use success_codes
    outcome: Outcome | None = None  # decided before the action ran (a wait that timed out)


@dataclass(frozen=True, kw_only=True, slots=True)
class RunEnvironment:
    """A run's environment, read once: its env_file's values, and the secrets to mask."""

    job: Job
    file_env: Mapping[str, str]
    secrets: Secrets

    @classmethod
    def read(cls, job: Job) -> RunEnvironment:
        """Read the job's env_file (trusted again: it may have changed since the job loaded).

        Raises:
            OSError: the env_file cannot be read.
            ValueError: it is refused, or a line is not `KEY=value`.
        """
        file_env = read_env_file(job.env_file) if job.env_file is not None else {}
        return cls(job=job, file_env=file_env, secrets=Secrets.of_job(job, file_env))

    def for_process(self, run_env: Mapping[str, str]) -> dict[str, str]:
        """The daemon's environment, then env_file, then `env`, then KRON_* for this run."""
        return {**os.environ, **self.file_env, **self.job.env, **run_env}

    def for_container(self, action: DockerAction, run_env: Mapping[str, str]) -> dict[str, str]:
        """env_file, the job's `env`, KRON_*, then `docker.env`: a container does not inherit
        the daemon's environment."""
        return {**self.file_env, **self.job.env, **run_env, **action.env}


def working_dir(job: Job) -> Path:
    """Where the job's processes (and relative `file:` conditions) start: `cwd`, else its folder."""
    return job.cwd or job.path.parent


class Interrupted(enum.Enum):
    """Why until_stopped gave up on an awaitable."""

    STOPPED = "stopped"
    TIMED_OUT = "timed out"


async def until_stopped(
    awaitable: Awaitable[T],
    *,
    stop: asyncio.Event,
    # Not a cancel scope (ASYNC109): the caller records which of the two ended the wait.
    timeout: timedelta | None = None,  # noqa: ASYNC109
) -> T | Interrupted:
    """Await `awaitable` unless `stop` is set or `timeout` passes first; then cancel it.

    Returns:
        The awaitable's result, or why it was cancelled.
    """
    task = asyncio.ensure_future(awaitable)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait(
            {task, stopper},
            timeout=None if timeout is None else timeout.total_seconds(),
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task in done:
        return task.result()
    return Interrupted.STOPPED if stop.is_set() else Interrupted.TIMED_OUT


def connection_reason(exc: BaseException) -> str:
    """Say in a few words why a connection failed ("connection refused"), from the root cause.

    httpx, requests and urllib3 wrap the OSError that says it in layers of their own.
    """
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "cannot resolve the host name"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror[:1].lower() + cause.strerror[1:]
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__
