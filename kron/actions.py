"""How a job's action runs: the process actions here; each returns an ActionResult."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kron import spec
from kron.process import run_process

_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


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
    """Parse `KEY=value` lines (`export`, quotes and `#` comments allowed)."""
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
        try:
            found.extend(v for v in read_env_file(job.env_file).values() if v)
        except (OSError, ValueError):
            pass
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


async def execute(
    job: spec.Job,
    *,
    run_env: Mapping[str, str],
    stop: asyncio.Event,
    on_spawn: Callable[[int], None] | None = None,
) -> ActionResult:
    """Run the job's action once; never raises for a failure of the job itself."""
    action = job.action
    if isinstance(action, spec.CommandAction | spec.ShellAction):
        try:
            env = build_env(job, run_env)
        except (OSError, ValueError) as exc:
            return ActionResult(error=f"env_file: {exc}")
        result = await run_process(
            action.argv,
            cwd=str(job.cwd or job.path.parent),
            env=env,
            umask=job.umask,
            user=job.user,
            group=job.group,
            timeout=job.timeout,
            kill_grace=job.kill_grace,
            max_output=job.max_output,
            stop=stop,
            on_spawn=on_spawn,
        )
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
        )
    kind = type(action).__name__.removesuffix("Action").lower()
    return ActionResult(error=f"the {kind} action is not available in this version of kron")
