"""How a job's action runs: the wait first, then the action; each returns an ActionResult.

The process actions (`command`, `shell`) live here. `http`, `docker` and `agent` live in their
own modules, imported on first use so that `kron validate` never loads httpx or the docker SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import re
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from kron.actions.process import ProcessResult, run_process
from kron.model import job as spec
from kron.model.trust import refusals

if TYPE_CHECKING:
    from kron.actions.agent import AgentBudget

__all__ = [
    "ActionResult",
    "Interrupted",
    "build_env",
    "connection_reason",
    "execute",
    "from_process",
    "mask",
    "read_env_file",
    "secret_values",
    "until_stopped",
    "without_secrets",
    "working_dir",
]

_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True, slots=True)
class ActionResult:
    """What an action produced, before the runner turns it into an outcome."""

    exit_code: int | None = None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False
    error: str | None = None
    timed_out: bool = False
    stopped: bool = False
    pid: int | None = None
    ok: bool | None = None  # set by non-process actions; process actions use success_codes
    outcome: spec.Outcome | None = None  # decided before the action ran (a wait that timed out)
    extra: Mapping[str, Any] = field(default_factory=dict)  # more record fields (status, tokens)


def read_env_file(path: Path) -> dict[str, str]:
    """Parse `KEY=value` lines (`export`, quotes and `#` comments allowed).

    The file is trusted again here, at fire time: it may have changed since the job loaded.
    """
    if refused := refusals(path):
        raise ValueError("; ".join(refused))
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if not match:
            raise ValueError(f"{path}:{number}: not a KEY=value line")
        value = match.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[match.group(1)] = value
    return values


def secret_values(job: spec.Job) -> list[str]:
    """Every value that must be masked in what kron writes: secret env entries and env_file."""
    found = [job.env[name] for name in job.secret_env if job.env.get(name)]
    if job.env_file is not None:
        with contextlib.suppress(OSError, ValueError):
            found.extend(v for v in read_env_file(job.env_file).values() if v)
    # Longest first, so a secret containing another is masked whole.
    return sorted(set(found), key=len, reverse=True)


def mask(text: str, secrets: list[str]) -> str:
    for value in secrets:
        if value in text:
            text = text.replace(value, "***")
    return text


def build_env(job: spec.Job, run_env: Mapping[str, str]) -> dict[str, str]:
    """The daemon's environment, then env_file, then `env`, then KRON_* for this run."""
    env = dict(os.environ)
    if job.env_file is not None:
        env.update(read_env_file(job.env_file))
    env.update(job.env)
    env.update(run_env)
    return env


def working_dir(job: spec.Job) -> Path:
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


async def run_job_process(
    job: spec.Job,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    stop: asyncio.Event,
    on_spawn: Callable[[int], None] | None = None,
    stdin_data: bytes | None = None,
) -> ProcessResult:
    """Run argv as the job's process: its folder, umask, user, timeout, grace and output bound."""
    return await run_process(
        argv,
        cwd=str(working_dir(job)),
        env=env,
        umask=job.umask,
        user=job.user,
        group=job.group,
        timeout=job.timeout,
        kill_grace=job.kill_grace,
        max_output=job.max_output,
        stop=stop,
        on_spawn=on_spawn,
        stdin_data=stdin_data,
    )


def from_process(result: ProcessResult, **extra: Any) -> ActionResult:
    """An ActionResult carrying what a child process did."""
    return ActionResult(
        exit_code=result.exit_code,
        signal=result.signal,
        stdout=result.stdout,
        stderr=result.stderr,
        truncated=result.truncated,
        error=result.error,
        timed_out=result.timed_out,
        stopped=result.stopped,
        pid=result.pid,
        extra=extra,
    )


async def execute(
    job: spec.Job,
    *,
    run_env: Mapping[str, str],
    stop: asyncio.Event,
    on_spawn: Callable[[int], None] | None = None,
    budget: AgentBudget | None = None,
) -> ActionResult:
    """Wait for the job's `wait` condition, then run its action once.

    Never raises for a failure of the job itself: that is a result.

    Args:
        job: the job to run.
        run_env: the KRON_* variables of this run.
        stop: set by the runner to stop the run (cancel, replace, shutdown).
        on_spawn: called with the pid of a child process as soon as it starts.
        budget: the agent budgets in force, global ones from kron.toml included (the daemon
            passes one); None keeps only per-job budgets, in a ledger per jobs directory.

    Returns:
        What the wait and the action did, secrets masked; the runner decides the outcome.
    """
    result = await _execute(job, run_env=run_env, stop=stop, on_spawn=on_spawn, budget=budget)
    return without_secrets(result, secret_values(job))


def without_secrets(result: ActionResult, secrets: list[str]) -> ActionResult:
    """Mask secrets in all a result carries to a record: output, error, extra (a wait's probe)."""
    if not secrets:
        return result
    return replace(
        result,
        stdout=mask(result.stdout, secrets),
        stderr=mask(result.stderr, secrets),
        error=mask(result.error, secrets) if result.error else result.error,
        extra=_mask_deep(result.extra, secrets),
    )


def _mask_deep(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return mask(value, secrets)
    if isinstance(value, Mapping):
        return {key: _mask_deep(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_deep(item, secrets) for item in value]
    return value


async def _execute(
    job: spec.Job,
    *,
    run_env: Mapping[str, str],
    stop: asyncio.Event,
    on_spawn: Callable[[int], None] | None,
    budget: AgentBudget | None,
) -> ActionResult:
    try:
        env = build_env(job, run_env)
    except (OSError, ValueError) as exc:
        return ActionResult(error=f"env_file: {exc}")
    wait_record: dict[str, Any] = {}
    if job.wait is not None:
        from kron.actions.wait import wait_until

        waited = await wait_until(job.wait, job=job, env=env, stop=stop)
        wait_record = {"wait": waited.record()}
        if waited.stopped:
            return ActionResult(
                stopped=True, error=f"stopped while waiting for {job.wait.until}", extra=wait_record
            )
        if not waited.satisfied and job.wait.on_timeout is not spec.WaitTimeoutAction.RUN:
            skip = job.wait.on_timeout is spec.WaitTimeoutAction.SKIP
            return ActionResult(
                outcome=spec.Outcome.SKIPPED if skip else spec.Outcome.WAIT_TIMEOUT,
                error=waited.describe(),
                extra=wait_record,
            )
    result = await _run_action(
        job, env=env, run_env=run_env, stop=stop, on_spawn=on_spawn, budget=budget
    )
    if wait_record:
        result = replace(result, extra={**wait_record, **result.extra})
    return result


async def _run_action(
    job: spec.Job,
    *,
    env: dict[str, str],
    run_env: Mapping[str, str],
    stop: asyncio.Event,
    on_spawn: Callable[[int], None] | None,
    budget: AgentBudget | None,
) -> ActionResult:
    action = job.action
    if isinstance(action, spec.CommandAction | spec.ShellAction):
        result = await run_job_process(job, action.argv, env=env, stop=stop, on_spawn=on_spawn)
        return from_process(result)
    if isinstance(action, spec.HttpAction):
        from kron.actions.http_request import run_http

        return await run_http(job, action, stop=stop)
    if isinstance(action, spec.DockerAction):
        from kron.actions.container import run_docker

        return await run_docker(job, action, run_env=run_env, stop=stop)
    from kron.actions.agent import run_agent

    return await run_agent(job, action, env=env, stop=stop, on_spawn=on_spawn, budget=budget)
