"""After a crash: finding the runs of the previous daemon whose processes still live, and
stopping them before anything fires, so that `forbid` and `replace` hold across the crash.

A run's processes are in a process group of their own; its ProcessNote names the group, the
leader's start time and the boot. The rule: a group that still lives is stopped as on timeout
(SIGTERM, then SIGKILL after the job's kill_grace) and its run recorded `abandoned` when it has
gone. Adopting it instead would leave a run nobody supervises: its output pipes went with the
old daemon, and its exit status can no longer be known.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import time
from datetime import timedelta

from kron.engine.state import current_boot_id
from kron.model.run import ProcessNote

__all__ = ["find_by_environment", "group_alive", "note_for", "start_ticks", "stop_group"]

log = logging.getLogger("kron.daemon")
_AFTER_KILL_WAIT_S = 5.0


def start_ticks(pid: int) -> int | None:
    """When a process started, in clock ticks since boot (/proc/PID/stat, field 22)."""
    try:  # os.open rather than open(): read once per run started, in a burst 500 times
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            fields = os.read(fd, 4096).rsplit(b")", 1)[1].split()
        finally:
            os.close(fd)
    except (OSError, IndexError):
        return None
    try:
        return int(fields[19])  # field 22; the split starts at field 3 (state)
    except (IndexError, ValueError):
        return None


@functools.cache
def _boot_id() -> str:
    return current_boot_id()


def note_for(run_id: str, job: str, pgid: int) -> ProcessNote:
    """The note that finds a run's process group again."""
    return ProcessNote(
        run_id=run_id, job=job, pgid=pgid, start_ticks=start_ticks(pgid), boot_id=_boot_id()
    )


def find_by_environment(runs: dict[str, str]) -> dict[str, ProcessNote]:
    """Notes for runs whose processes started but whose note was never written (the daemon
    died between the two), found by the KRON_RUN_ID every run's processes inherit.

    Args:
        runs: job id of each run id to look for.
    """
    wanted = {f"KRON_RUN_ID={run_id}".encode(): run_id for run_id in runs}
    found: dict[str, ProcessNote] = {}
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return found
    own_group = os.getpgid(0)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                variables = f.read().split(b"\0")
            pgid = os.getpgid(pid)
        except OSError:
            continue  # gone, or not ours to read
        if pgid == own_group:
            continue  # never this daemon's own group
        for variable in variables:
            run_id = wanted.get(variable)
            if run_id is not None and run_id not in found:
                found[run_id] = note_for(run_id, runs[run_id], pgid)
    return found


def group_alive(note: ProcessNote) -> bool:
    """Whether the group a note names still has processes, and is the same group.

    A different boot means none. While the leader lives, its start time must match (its pid
    could have been given to another process). Without the leader, a group that still answers
    is the old one: Linux gives no pid away while a group of that number exists.
    """
    if note.boot_id != _boot_id():
        return False
    leader = start_ticks(note.pgid)
    if leader is not None and note.start_ticks is not None and leader != note.start_ticks:
        return False
    try:
        os.killpg(note.pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a member changed its user; it still exists
    return True


async def stop_group(note: ProcessNote, kill_grace: timedelta) -> str:
    """SIGTERM the group, SIGKILL it after `kill_grace`; return which signal ended it."""
    sent = "SIGTERM"
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(note.pgid, signal.SIGTERM)
    if not await _gone(note, kill_grace.total_seconds()):
        sent = "SIGKILL"
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(note.pgid, signal.SIGKILL)
        if not await _gone(note, _AFTER_KILL_WAIT_S):
            log.error("process group %d of run %s outlived SIGKILL", note.pgid, note.run_id)
    return sent


async def _gone(note: ProcessNote, within_s: float) -> bool:
    """Wait for the group to empty; these are not our children, so poll (5 ms, up to 100 ms)."""
    deadline = time.monotonic() + within_s
    delay_s = 0.005
    while group_alive(note):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(delay_s)
        delay_s = min(delay_s * 2, 0.1)
    return True
