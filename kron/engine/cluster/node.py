"""A node of a cluster, assembled: its database, coordinator, record store and counters, and
what it does when it starts (join, take back what an earlier daemon of it left, read where
each job stands in the cluster) and stops (leave).

kron.service.runtime builds one when kron.toml has `[cluster]`; nothing here is imported
otherwise (psycopg is loaded by these modules only).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

import psycopg

from kron import __version__
from kron.engine.cluster.coordinator import ClusterCoordinator
from kron.engine.cluster.database import Database, DatabaseError, Unreachable, database_url
from kron.engine.cluster.database import node_name as resolve_node_name
from kron.engine.cluster.nodes import Me, Taken
from kron.engine.cluster.reader import ClusterReader
from kron.engine.cluster.schema import migrate
from kron.engine.cluster.stats import ClusterStats
from kron.engine.cluster.store import ClusterRecordStore
from kron.engine.scheduler import Scheduler
from kron.engine.state import current_boot_id
from kron.engine.store import FileRecordStore
from kron.model.clock import Clock
from kron.model.job import Job
from kron.model.run import RunEnded, RunRecord, RunStarted, read_line
from kron.model.settings import ClusterSettings

__all__ = ["ClusterNode"]

log = logging.getLogger("kron.cluster")
RECENT_PER_JOB = 50  # records read per job with retries at start, to resume a pending one


class ClusterNode:
    """This daemon as a node of its cluster."""

    def __init__(self, settings: ClusterSettings, *, local: FileRecordStore, clock: Clock) -> None:
        """Raises DatabaseError: no URL, or a node name that is not one."""
        self.settings = settings
        name = resolve_node_name(settings)
        self.url = database_url(settings)
        self.stats = ClusterStats(name)
        heartbeat_s = settings.heartbeat.total_seconds()
        self.db = Database(
            self.url,
            node=name,
            heartbeat_s=heartbeat_s,
            timeout_s=max(heartbeat_s, settings.dead_after.total_seconds() / 2),
            stats=self.stats,
        )
        self.me = Me(
            node=name,
            instance=secrets.token_hex(8),
            host=socket.gethostname(),
            pid=os.getpid(),
            boot_id=current_boot_id(),
        )
        self.coordinator = ClusterCoordinator(
            self.db,
            self.me,
            heartbeat=settings.heartbeat,
            dead_after=settings.dead_after,
            stats=self.stats,
            clock=clock,
        )
        self.reader = ClusterReader(self.url, timeout_s=self.db.timeout_s)
        self.store = ClusterRecordStore(
            local=local,
            db=self.db,
            reader=self.reader,
            node=name,
            lease_of=self.coordinator.lease_of,
        )
        self.left: dict[str, Taken] = {}  # run id -> a launch an earlier daemon of this node left
        self._resume: list[tuple[Taken, str, RunEnded | None]] = []  # once the jobs are armed

    @property
    def node(self) -> str:
        return self.me.node

    # -- starting ---------------------------------------------------------------------------

    async def open(self, jobs: Mapping[str, Job], stop: asyncio.Event) -> bool:
        """Reach the database (waiting for it, said once), bring its tables up to date, take
        the node's name and what an earlier daemon of it left, and read where each job stands
        in the cluster. False when `stop` was set while waiting.

        Raises:
            DatabaseError: what waiting does not cure (credentials, a newer schema, the name
                in use by a live daemon).
        """
        said = False
        while True:
            try:
                conn = await self.db.connect()
                try:
                    applied = await migrate(conn)
                except psycopg.errors.InsufficientPrivilege as exc:
                    raise DatabaseError(
                        f"cannot check or create kron's tables: {exc.diag.message_primary}; "
                        "the first start needs a role that may create them (docs/cluster.md, "
                        "grants)"
                    ) from None
                finally:
                    await conn.close()
                await self.db.open()
                break
            except Unreachable as exc:
                self.stats.reachable(False, str(exc))
                if not said:
                    log.error(
                        "waiting for the cluster database (%s); nothing fires until it answers",
                        exc,
                    )
                    said = True
            try:
                await asyncio.wait_for(stop.wait(), self.db.heartbeat_s)
                return False
            except TimeoutError:
                continue
        if applied:
            log.info("cluster database: kron schema migrated to version %d", applied[-1])
        shas = {job.id: job.config_sha for job in jobs.values()}
        try:
            left = await self.coordinator.join(shas)
            await self._read_standings(jobs)
        except Unreachable as exc:
            raise DatabaseError(f"the cluster database stopped answering at start: {exc}") from None
        except psycopg.Error as exc:  # a grant missing, a table changed by hand
            why = " ".join(str(exc).split())[:300]
            raise DatabaseError(f"the cluster database refused this node's start: {why}") from None
        self.left = {launch.run_id: launch for launch in left}
        log.info(
            "cluster node %s joined (kron %s, %d jobs)%s",
            self.node,
            __version__,
            len(shas),
            f"; {len(left)} launches of its earlier daemon to recover" if left else "",
        )
        return True

    async def _read_standings(self, jobs: Mapping[str, Job]) -> None:
        """Each job's standing: its newest slot anywhere in the cluster, this node's unfinished
        runs (from its files), and the records a pending retry is found in."""
        ids = list(jobs)
        retrying = [job.id for job in jobs.values() if job.retry.attempts > 1]
        found: dict[str, Any] = await self.db.run(lambda conn, _: _standings(conn, ids, retrying))
        skip = {(t.job, t.slot, t.trigger, t.upstream) for t in self.left.values()}
        skip |= found["live"]
        local = self.store.local
        for job_id in ids:
            standing = local.standing(job_id)
            newest = found["slots"].get(job_id)
            if newest is None or (standing.last_slot is not None and newest <= standing.last_slot):
                newest = standing.last_slot
            recent = [*standing.recent, *found["recent"].get(job_id, [])]
            self.store.standings[job_id] = replace(
                standing,
                last_slot=newest,
                recent=[
                    line
                    for line in recent
                    if not (
                        isinstance(line, RunRecord)
                        and (line.job, line.slot, line.trigger.value, line.upstream) in skip
                    )
                ],
            )

    def attach(self, scheduler: Scheduler) -> None:
        self.coordinator.takeover.attach(scheduler, self.store)

    def start(self) -> None:
        """The heartbeat and the record writer run from now on."""
        self.store.standings.clear()
        self.coordinator.start()
        self.store.start()

    # -- what an earlier daemon of this node left ------------------------------------------

    def abandon_own(self, started: RunStarted, at: datetime, how: str) -> None:
        """A run this node's earlier daemon left unfinished (its files say so). Recorded
        abandoned, and its next attempt claimed, if the launch was still this node's; else
        a survivor did that already, and this record is late."""
        takeover = self.coordinator.takeover
        launch = self.left.pop(started.run_id, None)
        if launch is not None:
            launch = replace(launch, since=started.started_at)
            self._resume.append((launch, how, takeover.record(launch, how)))
            return
        late = Taken(
            job=started.job,
            key="",
            node=self.node,
            run_id=started.run_id,
            attempt=started.attempt,
            slot=started.slot,
            trigger=started.trigger.value,
            upstream=started.upstream,
            config_sha=started.config_sha,
            running=True,
            since=started.started_at,
        )
        why = f"{how}; another node had recorded it abandoned already"
        takeover.record(late, why, late=True)

    def take_left(self, how: str) -> None:
        """The rest of what the earlier daemon left (its files did not say: a lost write)."""
        takeover = self.coordinator.takeover
        for launch in self.left.values():
            self._resume.append((launch, how, takeover.record(launch, how)))
        self.left.clear()

    def resume_left(self) -> None:
        """Once the jobs are armed: the next attempts of what the earlier daemon left."""
        for launch, how, record in self._resume:
            self.coordinator.takeover.resume(launch, how, record)
        self._resume.clear()

    # -- stopping ---------------------------------------------------------------------------

    async def stop(self, flush_s: float) -> None:
        """A clean stop: send what waits for the database, say the node left, close."""
        if not await self.store.flush(flush_s):
            log.warning("some records did not reach the cluster database; the files keep them")
        await self.coordinator.leave()
        self.close()
        await self.db.close()

    def close(self) -> None:
        self.coordinator.close()
        self.store.close()


async def _standings(conn: Any, ids: list[str], retrying: list[str]) -> dict[str, Any]:
    cursor = await conn.execute(
        """SELECT job, max(slot) FROM kron_claims
           WHERE job = ANY(%s) AND trigger IN ('schedule', 'catchup') GROUP BY job""",
        (ids,),
    )
    slots = {job: slot for job, slot in await cursor.fetchall()}
    cursor = await conn.execute(
        "SELECT job, slot, trigger, upstream FROM kron_live WHERE job = ANY(%s)", (ids,)
    )
    live = {
        (job, slot, trigger, upstream) for job, slot, trigger, upstream in await cursor.fetchall()
    }
    recent: dict[str, list[Any]] = {}
    if retrying:
        cursor = await conn.execute(
            """SELECT job, line FROM (
                   SELECT job, line, id,
                          row_number() OVER (PARTITION BY job ORDER BY id DESC) AS n
                   FROM kron_records
                   WHERE job = ANY(%s) AND outcome IS NOT NULL AND NOT late) r
               WHERE n <= %s ORDER BY id""",
            (retrying, RECENT_PER_JOB),
        )
        for job, raw in await cursor.fetchall():
            line = read_line(raw)
            if line is not None:
                recent.setdefault(job, []).append(line)
    return {"slots": slots, "live": live, "recent": recent}
