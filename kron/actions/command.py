"""The process actions: `command` (an argv, no shell) and `shell` (`/bin/sh -c`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from kron.actions.base import ActionResult
from kron.actions.process import run_job_process
from kron.model.job import CommandAction, Job, ShellAction
from kron.model.secrets import NO_SECRETS, Secrets

__all__ = ["run_command"]


async def run_command(
    job: Job,
    action: CommandAction | ShellAction,
    *,
    env: Mapping[str, str],
    stop: asyncio.Event,
    on_spawn: Callable[[int], None] | None = None,
    secrets: Secrets = NO_SECRETS,
) -> ActionResult:
    """Run the job's command in its own process group; the runner judges its exit code."""
    return await run_job_process(
        job, action.argv, env=env, stop=stop, on_spawn=on_spawn, secrets=secrets
    )
