"""How a job's action runs: its environment read once, the wait first, then the action.

Each action lives in a module of its own, imported on first use, so that a daemon whose jobs
only run commands never loads httpx or the docker SDK (and `kron validate` loads none of them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from kron.actions.base import ActionResult, RunEnvironment
from kron.actions.command import run_command
from kron.model.job import (
    AgentAction,
    CommandAction,
    DockerAction,
    HttpAction,
    Job,
    ShellAction,
    WaitTimeoutAction,
)
from kron.model.policy import Policy, policy_violation
from kron.model.run import Outcome
from kron.model.secrets import Secrets

if TYPE_CHECKING:
    from kron.actions.agent import Ledger

__all__ = ["execute"]


async def execute(
    job: Job,
    *,
    run_env: Mapping[str, str],
    stop: asyncio.Event,
    on_spawn: Callable[[int], None] | None = None,
    budget: Ledger | None = None,
    policy: Policy | None = None,
) -> ActionResult:
    """Wait for the job's `wait` condition, then run its action once.

    Never raises for a failure of the job itself: that is a result.

    Args:
        job: the job to run.
        run_env: the KRON_* variables of this run.
        stop: set by the runner to stop the run (cancel, replace, shutdown).
        on_spawn: called with the pid of a child process as soon as it starts.
        budget: the agent budgets in force, global ones from kron.toml included (the daemon
            passes one); None keeps only per-job budgets, in memory.
        policy: `[policy]` as it stands now, checked again at fire time.

    Returns:
        What the wait and the action did, every secret masked (here, and only here).
    """
    try:
        environment: RunEnvironment | OSError | ValueError = RunEnvironment.read(job)
    except (OSError, ValueError) as exc:
        environment = exc
    secrets = (
        environment.secrets if isinstance(environment, RunEnvironment) else Secrets.of_job(job)
    )
    if policy is not None and (why := policy_violation(job.action, policy)):
        result = ActionResult(outcome=Outcome.FAILED, error=f"refused at fire time: {why}")
    elif not isinstance(environment, RunEnvironment):
        result = ActionResult(error=f"env_file: {environment}")
    else:
        result = await _wait_then_act(
            job, environment, run_env=run_env, stop=stop, on_spawn=on_spawn, budget=budget
        )
    return secrets.mask_output(result)


async def _wait_then_act(
    job: Job,
    environment: RunEnvironment,
    *,
    run_env: Mapping[str, str],
    stop: asyncio.Event,
    on_spawn: Callable[[int], None] | None,
    budget: Ledger | None,
) -> ActionResult:
    env = environment.for_process(run_env)
    wait_record: dict[str, Any] = {}
    if job.wait is not None:
        from kron.actions.wait import wait_until  # lazy: only jobs that wait pay for it

        waited = await wait_until(job.wait, job=job, env=env, stop=stop)
        wait_record = {"wait": waited.record()}
        if waited.stopped:
            return ActionResult(
                stopped=True, error=f"stopped while waiting for {job.wait.until}", extra=wait_record
            )
        if not waited.satisfied and job.wait.on_timeout is not WaitTimeoutAction.RUN:
            skip = job.wait.on_timeout is WaitTimeoutAction.SKIP
            return ActionResult(
                outcome=Outcome.SKIPPED if skip else Outcome.WAIT_TIMEOUT,
                error=waited.describe(),
                extra=wait_record,
            )
    result = await _act(
        job, environment, env=env, run_env=run_env, stop=stop, on_spawn=on_spawn, budget=budget
    )
    if wait_record:
        result = replace(result, extra={**wait_record, **result.extra})
    return result


async def _act(
    job: Job,
    environment: RunEnvironment,
    *,
    env: dict[str, str],
    run_env: Mapping[str, str],
    stop: asyncio.Event,
    on_spawn: Callable[[int], None] | None,
    budget: Ledger | None,
) -> ActionResult:
    action = job.action
    # Output is masked as it is read, before max_output cuts it (kron.actions.process).
    secrets = environment.secrets
    if isinstance(action, CommandAction | ShellAction):
        return await run_command(
            job, action, env=env, stop=stop, on_spawn=on_spawn, secrets=secrets
        )
    # The other actions are imported on first use (start-up speed, memory): see the docstring.
    if isinstance(action, HttpAction):
        from kron.actions.http_request import run_http

        return await run_http(job, action, stop=stop, secrets=secrets)
    if isinstance(action, DockerAction):
        from kron.actions.container import run_docker

        return await run_docker(
            job,
            action,
            env=environment.for_container(action, run_env),
            run_id=run_env.get("KRON_RUN_ID"),
            stop=stop,
            secrets=secrets,
        )
    assert isinstance(action, AgentAction)
    from kron.actions.agent import run_agent

    return await run_agent(
        job, action, env=env, stop=stop, on_spawn=on_spawn, budget=budget, secrets=secrets
    )
