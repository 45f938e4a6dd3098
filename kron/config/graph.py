"""The trigger graph: its checks (known targets, no cycle) and `kron tree`'s drawing of it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from kron.model.errors import Problem, did_you_mean
from kron.model.job import Job

__all__ = ["check_graph", "render_tree", "roots"]

_TEE, _ELBOW, _PIPE, _GAP = "├── ", "└── ", "│   ", "    "
NEVER_RAN = "no runs yet"


def roots(jobs: Mapping[str, Job]) -> list[str]:
    """Jobs that trigger something and that nothing triggers, sorted by id."""
    triggered = {target for job in jobs.values() for target in job.triggers}
    return sorted(
        job_id for job_id, job in jobs.items() if job.triggers and job_id not in triggered
    )


def render_tree(
    jobs: Mapping[str, Job], last_outcomes: Mapping[str, str], root: str | None = None
) -> str:
    """Draw the jobs reachable through `triggers`, from every root or from one job.

    A job reached a second time (two paths meet, or a cycle that validation would refuse) is
    drawn again marked "(see above)" and not expanded twice.

    Args:
        jobs: the loaded jobs by id.
        last_outcomes: the newest terminal outcome of each job that has one.
        root: draw only the tree below this job; None draws every chain.

    Returns:
        The tree, one job per line, ending with a newline; "" when no job triggers another.

    Raises:
        KeyError: `root` is not a loaded job.
    """
    if root is not None and root not in jobs:
        raise KeyError(root)
    starts = [root] if root is not None else roots(jobs)
    lines: list[str] = []
    shown: set[str] = set()

    def draw(job_id: str, lead: str, branch: str) -> None:
        job = jobs.get(job_id)
        label = f"{job_id}  {_state(job, last_outcomes.get(job_id))}"
        if job_id in shown:
            lines.append(f"{lead}{branch}{label}  (see above)")
            return
        lines.append(f"{lead}{branch}{label}")
        shown.add(job_id)
        children = job.triggers if job is not None else ()
        below = lead + ("" if not branch else _GAP if branch == _ELBOW else _PIPE)
        for index, child in enumerate(children):
            draw(child, below, _ELBOW if index == len(children) - 1 else _TEE)

    for start in starts:
        draw(start, "", "")
    return "".join(line + "\n" for line in lines)


def _state(job: Job | None, outcome: str | None) -> str:
    if job is None:
        return "(unknown job)"
    text = outcome or NEVER_RAN
    return text if job.enabled else f"{text}, disabled"


class _Linked(Protocol):
    """What the trigger graph needs of a job (a Job, or validate's summary of one)."""

    @property
    def path(self) -> Path: ...
    @property
    def triggers(self) -> tuple[str, ...]: ...


def check_graph(jobs: Mapping[str, _Linked], *, files_by_id: Mapping[str, Path]) -> list[Problem]:
    """Triggers must name known jobs and form no cycle; an unscheduled job must be triggered."""
    problems = []
    triggered: set[str] = set()
    for job in jobs.values():
        for index, target in enumerate(job.triggers):
            triggered.add(target)
            if target not in files_by_id:
                extra = did_you_mean(target, files_by_id)
                problems.append(
                    Problem(
                        path=str(job.path),
                        pointer=f"/triggers/{index}",
                        message=f"unknown job {target!r}{extra}",
                    )
                )
    # Depth-first search for cycles, reported once per cycle on its first member.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in jobs[node].triggers if node in jobs else ():
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                problems.append(
                    Problem(
                        path=str(jobs[nxt].path),
                        pointer="/triggers",
                        message="trigger cycle: " + " -> ".join(cycle),
                    )
                )
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(k for k, job in jobs.items() if job.triggers):  # others end no cycle
        if node not in state:
            visit(node)
    return problems
