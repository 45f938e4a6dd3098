"""`kron tree`: the trigger graph drawn as an indented tree, each job with its last outcome."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from kron.engine import records
from kron.model import job as spec

__all__ = ["last_outcomes", "render_tree", "roots"]

_TEE, _ELBOW, _PIPE, _GAP = "├── ", "└── ", "│   ", "    "
NEVER_RAN = "no runs yet"


def roots(jobs: Mapping[str, spec.Job]) -> list[str]:
    """Jobs that trigger something and that nothing triggers, sorted by id."""
    triggered = {target for job in jobs.values() for target in job.triggers}
    return sorted(
        job_id for job_id, job in jobs.items() if job.triggers and job_id not in triggered
    )


def render_tree(
    jobs: Mapping[str, spec.Job], last_outcomes: Mapping[str, str], root: str | None = None
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


def _state(job: spec.Job | None, outcome: str | None) -> str:
    if job is None:
        return "(unknown job)"
    text = outcome or NEVER_RAN
    return text if job.enabled else f"{text}, disabled"


def last_outcomes(records_root: Path, job_ids: Iterable[str]) -> dict[str, str]:
    """Read each job's newest terminal outcome from the tail of its records file.

    Started lines (a run still going) and delivery lines (no `outcome`) are passed over. Jobs
    without a terminal record are left out.

    Args:
        records_root: where records files live (`records_dir`, else the jobs directory).
        job_ids: the jobs to look up.

    Returns:
        Outcome by job id.
    """
    found: dict[str, str] = {}
    for job_id in job_ids:
        path = records.records_path(job_id, jobs_dir=records_root, records_dir=None)
        record = records.last_terminal(path)
        if record is None and path.exists() and path.stat().st_size > records.TAIL_BYTES:
            # The newest terminal line is longer than the tail window (large output).
            record = records.last_terminal(path, max_bytes=path.stat().st_size)
        if record is not None:
            found[job_id] = str(record["outcome"])
    return found
