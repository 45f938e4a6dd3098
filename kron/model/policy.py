"""`[policy]` in kron.toml: command patterns a job may (allow) or may not (deny) run.

Checked when a file loads, so a denied job is an invalid file, and again when a run fires, so
a policy tightened since the load still holds.
"""

from __future__ import annotations

import fnmatch
import shlex
from dataclasses import dataclass

from kron.model.job import Action, AgentAction, CommandAction, DockerAction, ShellAction

__all__ = ["Policy", "command_line", "policy_violation"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Policy:
    deny: tuple[str, ...] = ()
    allow: tuple[str, ...] | None = None


def command_line(action: Action) -> str | None:
    """The command line a [policy] pattern is matched against, or None for http."""
    if isinstance(action, CommandAction):
        return shlex.join(action.argv)
    if isinstance(action, ShellAction):
        return action.script
    if isinstance(action, DockerAction):
        cmd = action.command
        shown = cmd if isinstance(cmd, str) else shlex.join(cmd or ())
        return f"docker:{action.image} {shown}".rstrip()
    if isinstance(action, AgentAction) and action.command:
        return shlex.join(action.command)
    return None


def policy_violation(action: Action, policy: Policy) -> str | None:
    """Why [policy] refuses this action, or None when it may run."""
    line = command_line(action)
    if line is None:
        return None
    for pattern in policy.deny:
        if fnmatch.fnmatchcase(line, pattern):
            return f"command {line!r} is denied by policy pattern {pattern!r}"
    if policy.allow is not None and not any(fnmatch.fnmatchcase(line, p) for p in policy.allow):
        return f"command {line!r} matches no policy allow pattern"
    return None
