"""The coordinator: who may fire what. The scheduler asks it before every launch.

`Coordinator` is the seam. On one host (`LocalCoordinator`) the jobs directory's lock makes this
daemon the only one, so every claim is granted, a lease needs no renewing, and pauses are kept
in kron's state file. A cluster's coordinator (kron.engine.cluster) answers the same questions
from its database: a claim is won by one node, overlap (`forbid`, `replace`) is decided across
nodes at the claim, and a run's lease can be lost to a node that found this one dead.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from kron import __version__
from kron.engine.state import State
from kron.model.errors import KronError
from kron.model.run import HOST, RunEnded, Trigger

__all__ = [
    "GRANTED",
    "AlreadyRunning",
    "Claim",
    "Coordinator",
    "Grant",
    "JobsDirLock",
    "LocalCoordinator",
    "Peer",
]


class AlreadyRunning(KronError):
    """Another daemon holds this jobs directory."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Claim:
    """The natural key of one launch: a job's slot, how it was triggered, and the attempt."""

    job: str
    slot: datetime
    trigger: Trigger
    attempt: int = 1
    upstream: str | None = None  # the run that triggered it, for a `dependency` launch
    run_id: str = ""  # the run that carries it
    config_sha: str = ""
    lease: bool = True  # a live run follows; False: the record of a slot that does not run
    exclusive: bool = False  # concurrency forbid or replace: one live run of the job at a time
    continues: bool = False  # a later attempt of a run that holds its lease already


@dataclass(frozen=True, kw_only=True, slots=True)
class Grant:
    """The answer to a claim."""

    won: bool
    # A live run of the job that keeps an exclusive claim (forbid, replace) from starting: the
    # claim is won (the slot is this daemon's to decide), the run is not started.
    holder: str | None = None
    holder_node: str | None = None
    why: str | None = None  # why it was not won: another node's, or no database


GRANTED = Grant(won=True)


@dataclass(frozen=True, kw_only=True, slots=True)
class Peer:
    """A daemon serving the job set: this one, or another node of a cluster."""

    node: str
    version: str
    pid: int
    started_at: datetime | None = None
    host: str = ""
    heartbeat_at: datetime | None = None  # its last heartbeat, in the database's time
    silent_s: float = 0.0  # seconds since that heartbeat, as the database counts them
    alive: bool = True
    running: int = 0  # its live runs
    digest: str = ""  # of its job set: job ids and config_sha


class Coordinator(Protocol):
    """Decides, with whoever else serves the same jobs, which launches are this daemon's."""

    @property
    def node(self) -> str:
        """This daemon's name among its peers."""
        ...

    @property
    def cluster_wide(self) -> bool:
        """Whether other daemons serve the same jobs: then overlap (`forbid`, `replace`) is
        decided at the claim, and slots that did not run are recorded only once claimed."""
        ...

    async def claim(self, claim: Claim) -> Grant:
        """Whether this daemon may launch `claim` (exactly one daemon is told yes)."""
        ...

    async def take_turn(
        self, claim: Claim, grant: Grant, stop: asyncio.Event, *, replace: bool
    ) -> bool:
        """Wait for the run holding the job (`grant.holder`, on any daemon) to end, asking it to
        stop when `replace`; then take its place. False when `stop` was set first."""
        ...

    async def confirm(self, run_id: str) -> str | None:
        """None while this daemon still holds the run's lease; else how it lost it (its record
        is then late, never the run's result)."""
        ...

    def finish(self, run_id: str) -> None:
        """The run made its last attempt: its lease goes."""
        ...

    def record_once(self, ended: RunEnded, write: Callable[[RunEnded], None]) -> None:
        """`write(ended)`, the record of a slot or an attempt that did not run (missed), once
        this daemon may: in a cluster, once it claimed it, so that it is recorded once."""
        ...

    def hold(self, run_id: str) -> None:
        """A run of this daemon started: keep it leased to this daemon while it lives."""
        ...

    def release(self, run_id: str) -> None:
        """The run ended: its lease goes."""
        ...

    def is_paused(self, job_id: str) -> bool: ...

    def set_paused(self, job_id: str, paused: bool) -> None:
        """Pause or resume a job's schedule, everywhere and across restarts."""
        ...

    def peers(self) -> list[Peer]:
        """The daemons serving the job set now, this one first."""
        ...

    def close(self) -> None: ...


class JobsDirLock:
    """An exclusive flock on the jobs directory itself: one daemon per jobs directory (it works
    on a read-only mount too)."""

    def __init__(self, jobs_dir: Path) -> None:
        fd = os.open(jobs_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(
                f"another kron daemon is already running on {jobs_dir} "
                "(one daemon per jobs directory)"
            ) from None
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class LocalCoordinator:
    """One host: this daemon holds the jobs directory's lock, so every claim is its own.

    Pauses are kept in kron's state file. Without a lock (`kron run` with no daemon) the claims
    are granted all the same: that run is the operator's own doing.
    """

    def __init__(
        self, state: State, *, lock: JobsDirLock | None = None, started_at: datetime | None = None
    ) -> None:
        self.state = state
        self.started_at = started_at
        self._lock = lock

    @property
    def node(self) -> str:
        return HOST

    @property
    def cluster_wide(self) -> bool:
        return False

    async def claim(self, claim: Claim) -> Grant:
        return GRANTED

    async def take_turn(
        self, claim: Claim, grant: Grant, stop: asyncio.Event, *, replace: bool
    ) -> bool:
        return True  # never asked: on one host the scheduler decides overlap itself

    async def confirm(self, run_id: str) -> str | None:
        return None

    def finish(self, run_id: str) -> None:
        pass

    def record_once(self, ended: RunEnded, write: Callable[[RunEnded], None]) -> None:
        write(ended)

    def hold(self, run_id: str) -> None:
        pass

    def release(self, run_id: str) -> None:
        pass

    def is_paused(self, job_id: str) -> bool:
        return job_id in self.state.paused

    def set_paused(self, job_id: str, paused: bool) -> None:
        if paused:
            self.state.paused.add(job_id)
        else:
            self.state.paused.discard(job_id)
        self.state.save_logged()

    def peers(self) -> list[Peer]:
        return [
            Peer(node=self.node, version=__version__, pid=os.getpid(), started_at=self.started_at)
        ]

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
