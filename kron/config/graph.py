"""The trigger graph: its checks (known targets, no cycle) and `kron tree`'s drawing of it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from kron.model.errors import Problem, did_you_mean, excerpt
from kron.model.job import Job

__all__ = ["check_graph", "render_tree", "roots"]

_TEE, _ELBOW, _PIPE, _GAP = "├── ", "└── ", "│   ", "    "
NEVER_RAN = "no runs yet"
_HINTED = 20  # unknown trigger targets given a did-you-mean, per check


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
    problems: list[Problem] = []
    triggered: set[str] = set()
    for job in jobs.values():
        for index, target in enumerate(job.triggers):
            triggered.add(target)
            if target not in files_by_id:
                # difflib against every id: only for the first few, or 10,000 ids cost seconds.
                extra = did_you_mean(target, files_by_id) if len(problems) < _HINTED else ""
                problems.append(
                    Problem(
                        path=str(job.path),
                        pointer=f"/triggers/{index}",
                        message=f"unknown job {excerpt(target)}{extra}",
                    )
                )
    # Depth-first search for cycles, reported once per cycle on its first member. Iterative:
    # a chain of a thousand jobs, each triggering the next, is deeper than Python's stack.
    state: dict[str, int] = {}
    for start in sorted(k for k, job in jobs.items() if job.triggers):  # others end no cycle
        if start in state:
            continue
        state[start] = 1
        path = [start]
        pending = [iter(jobs[start].triggers)]
        while pending:
            nxt = next(pending[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                pending.pop()
            elif state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                problems.append(
                    Problem(
                        path=str(jobs[nxt].path),
                        pointer="/triggers",
                        message="trigger cycle: " + " -> ".join(cycle),
                    )
                )
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                pending.append(iter(jobs[nxt].triggers if nxt in jobs else ()))
    return problems
