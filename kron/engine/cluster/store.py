"""The record store of a cluster node: every record to this node's NDJSON files, as on one host,
and to the cluster's `kron_records`, in batches, by a writer that keeps lines while the
database is out of reach.

A terminal record of a run this node held a lease on is judged in the statement that writes
it: if the lease is not this node's any more (a survivor took the run), the line is `late`,
kept but never the run's result. The same statement ends leases (`release`, `finish`), after
the judgement. Reads on the daemon's loop are this node's files (they never wait on the
network); reads from a thread (the status page) or a command are the cluster's.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg

from kron.engine.cluster.database import Database, Unreachable
from kron.engine.cluster.reader import ClusterReader
from kron.engine.store import FileRecordStore, Line, Standing
from kron.model.errors import KronError
from kron.model.job import Retention
from kron.model.run import DeliveryNote, Outcome, RunEnded, RunRecord

__all__ = ["ClusterRecordStore"]

log = logging.getLogger("kron.cluster")
T = TypeVar("T")
MAX_QUEUED = 100_000  # lines kept for the database while it is out of reach; files keep all
# A line waiting for the database: job, run id, outcome, when, its launch's lease key, fields.
_Queued = tuple[str, str, str | None, datetime, str | None, dict[str, Any]]

_WRITE = """
WITH lines AS (
    SELECT * FROM unnest(
        %(n)s::int[], %(job)s::text[], %(run_id)s::text[], %(outcome)s::text[],
        %(at)s::timestamptz[], %(lease)s::text[], %(line)s::jsonb[]
    ) AS t(n, job, run_id, outcome, at, lease, line)
),
ins AS (
    INSERT INTO kron_records (job, run_id, node, outcome, at, late, line)
    SELECT job, run_id, %(node)s, outcome, at,
           coalesce((line->>'late')::boolean, false)
           OR (lease IS NOT NULL AND NOT EXISTS (
               SELECT 1 FROM kron_live l
               WHERE l.job = lines.job AND l.key = lines.lease AND l.node = %(node)s)),
           line
    FROM lines ORDER BY n
    RETURNING id, job, outcome, at, late, line
),
newest AS (
    SELECT DISTINCT ON (job) job, line, at,
           (SELECT max(i.at) FROM ins i
            WHERE i.job = ins.job AND i.outcome = 'succeeded' AND NOT i.late) AS success_at
    FROM ins
    WHERE NOT late AND outcome IS NOT NULL AND outcome <> 'started'
    ORDER BY job, id DESC
),
last AS (
    INSERT INTO kron_last AS k (job, line, ended_at, success_at)
    SELECT job, line, at, success_at FROM newest
    ON CONFLICT (job) DO UPDATE SET
        line = CASE WHEN excluded.ended_at >= k.ended_at THEN excluded.line ELSE k.line END,
        ended_at = greatest(excluded.ended_at, k.ended_at),
        success_at = greatest(excluded.success_at, k.success_at),
        updated_at = clock_timestamp()
),
released AS (
    UPDATE kron_live SET running = false
    WHERE node = %(node)s AND run_id = ANY(%(released)s::text[])
),
finished AS (
    DELETE FROM kron_live WHERE node = %(node)s AND run_id = ANY(%(finished)s::text[])
)
SELECT count(*) FROM ins
"""

_PRUNE = """
DELETE FROM kron_records
WHERE job = %(job)s AND (
    id < coalesce((SELECT id FROM kron_records
                   WHERE job = %(job)s AND outcome IS NOT NULL AND outcome <> 'started'
                   ORDER BY id DESC OFFSET %(keep)s LIMIT 1), 0)
    OR (%(max_age)s::interval IS NOT NULL AND at < now() - %(max_age)s::interval)
)
"""


class ClusterRecordStore:
    """This node's files and the cluster's table (kron.engine.store.RecordStore).

    Args:
        local: this node's NDJSON files.
        db: the cluster's database.
        reader: reads of the cluster's records (from threads and commands).
        node: stamped on every line as `node`.
        lease_of: the key of the launch whose lease a run of this node holds, by run id.
    """

    def __init__(
        self,
        *,
        local: FileRecordStore,
        db: Database,
        reader: ClusterReader,
        node: str,
        lease_of: Callable[[str], str | None],
    ) -> None:
        self.local = local
        self.failures = local.failures
        self._db = db
        self._reader = reader
        self._node = node
        self._lease_of = lease_of
        self._queue: deque[_Queued] = deque()
        self._retention: dict[str, Retention] = {}
        self._since_prune: dict[str, int] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self._released: list[str] = []
        self._finished: list[str] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._dropped = 0
        self._loop_thread = threading.get_ident()
        self.standings: dict[str, Standing] = {}  # the cluster's, read once at start

    # -- writing ----------------------------------------------------------------------------

    def append(self, line: Line) -> None:
        data = line.to_json()
        data["node"] = self._node
        terminal = isinstance(line, RunEnded)
        self.local.write(line.job, data, terminal=terminal)
        if isinstance(line, RunRecord):
            outcome: str | None = line.outcome.value
            at = line.ended_at or line.started_at or line.slot
        else:
            outcome = None
            at = line.at if isinstance(line, DeliveryNote) else datetime.now(UTC)
        lease = self._lease_of(line.run_id) if terminal else None
        data = _without_nul(data)  # jsonb cannot hold U+0000; the files keep it
        if len(self._queue) >= MAX_QUEUED:
            self._queue.popleft()
            self._dropped += 1
        self._queue.append((line.job, line.run_id, outcome, at, lease, data))
        self._wake.set()
        if terminal:
            self._count(line.job)

    def _count(self, job_id: str) -> None:
        """Prune the job's rows now and then, as FileRecordStore prunes its file."""
        count = self._since_prune.get(job_id, 0) + 1
        retention = self._retention.get(job_id, Retention())
        if count < max(10, retention.keep // 10):
            self._since_prune[job_id] = count
            return
        self._since_prune[job_id] = 0
        if self._db.reachable:
            task = asyncio.ensure_future(self._prune_table(job_id, retention))
            self._tasks.add(task)  # keep a reference: the loop holds tasks only weakly
            task.add_done_callback(self._tasks.discard)

    def lease_ended(self, run_id: str, *, finished: bool) -> None:
        (self._finished if finished else self._released).append(run_id)
        self._wake.set()

    def start(self) -> None:
        self._writer = asyncio.ensure_future(self._write_forever())

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every queued line reached the database (a clean stop); False if not."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (self._queue or self._released or self._finished) and loop.time() < deadline:
            if not self._db.reachable:
                return False
            self._wake.set()
            await asyncio.sleep(0.02)
        return not self._queue

    def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._db.reachable:
                await asyncio.sleep(self._db.heartbeat_s)
                self._wake.set()
                continue
            batch = list(self._queue)
            n_released, n_finished = len(self._released), len(self._finished)
            finished = self._finished[:n_finished]
            gone = set(finished)
            released = [r for r in self._released[:n_released] if r not in gone]
            if not batch and not released and not finished:
                continue
            try:
                await self._db.run(functools.partial(self._write, batch, released, finished))
            except Unreachable:
                self._wake.set()
                continue
            except psycopg.Error:
                # One line the database refuses must not cost the others, nor leave leases
                # held: line by line, the refused ones logged and left to this node's files.
                try:
                    await self._write_each(batch, released, finished)
                except Unreachable:
                    self._wake.set()
                    continue
            for _ in batch:
                self._queue.popleft()
            del self._released[:n_released]
            del self._finished[:n_finished]
            if self._dropped:
                log.error(
                    "%d records were not kept for the cluster database (more than %d waited "
                    "while it was out of reach); this node's files have them",
                    self._dropped,
                    MAX_QUEUED,
                )
                self._dropped = 0

    async def _write(
        self,
        batch: list[_Queued],
        released: list[str],
        finished: list[str],
        conn: psycopg.AsyncConnection[Any],
        _: bool,
    ) -> None:
        from psycopg.types.json import Jsonb

        await conn.execute(
            _WRITE,
            {
                "node": self._node,
                "n": list(range(len(batch))),
                "job": [b[0] for b in batch],
                "run_id": [b[1] for b in batch],
                "outcome": [b[2] for b in batch],
                "at": [b[3] for b in batch],
                "lease": [b[4] for b in batch],
                "line": [Jsonb(b[5]) for b in batch],
                "released": released,
                "finished": finished,
            },
        )

    async def _write_each(
        self, batch: list[_Queued], released: list[str], finished: list[str]
    ) -> None:
        await self._db.run(functools.partial(self._write, [], released, finished))
        for queued in batch:
            try:
                await self._db.run(functools.partial(self._write, [queued], [], []))
            except psycopg.Error as exc:
                log.error(
                    "job %s: a record of run %s was refused by the cluster database (%s); this "
                    "node's records file keeps it",
                    queued[0],
                    queued[1],
                    " ".join(str(exc).split())[:200],
                )

    # -- retention --------------------------------------------------------------------------

    def set_retention(self, job_id: str, retention: Retention | None) -> None:
        self.local.set_retention(job_id, retention)
        if retention is None:
            self._retention.pop(job_id, None)
        else:
            self._retention[job_id] = retention

    def prune(self, job_id: str, now: datetime) -> int:
        """This node's file now; the cluster's table in the background (same retention)."""
        removed = self.local.prune(job_id, now)
        retention = self._retention.get(job_id, Retention())
        if self._db.reachable:
            task = asyncio.ensure_future(self._prune_table(job_id, retention))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return removed

    async def _prune_table(self, job_id: str, retention: Retention) -> None:
        try:
            await self._db.run(
                lambda conn, _: conn.execute(
                    _PRUNE,
                    {"job": job_id, "keep": retention.keep - 1, "max_age": retention.max_age},
                )
            )
        except (Unreachable, psycopg.Error) as exc:
            log.warning(
                "job %s: pruning its records in the cluster database failed: %s", job_id, exc
            )

    # -- reading ----------------------------------------------------------------------------

    def _reading(self) -> FileRecordStore | ClusterReader:
        """This node's files on the loop (never wait on the network there), else the
        cluster's table."""
        return self.local if threading.get_ident() == self._loop_thread else self._reader

    def records(self, job_id: str) -> Iterator[Line]:
        return iter(self._read(lambda store: list(store.records(job_id))))

    def recent(self, job_id: str) -> list[Line]:
        return self._read(lambda store: store.recent(job_id))

    def last_terminal(self, job_id: str, outcome: Outcome | None = None) -> RunEnded | None:
        return self._read(lambda store: store.last_terminal(job_id, outcome))

    def _read(self, read: Callable[[FileRecordStore | ClusterReader], T]) -> T:
        """A read of the cluster's table, or of this node's files when it does not answer."""
        store = self._reading()
        try:
            return read(store)
        except KronError as exc:
            if store is self.local:
                raise
            log.warning("%s; reading this node's records instead", exc)
            return read(self.local)

    def standing(self, job_id: str) -> Standing:
        return self.standings.get(job_id) or self.local.standing(job_id)

    def runs(
        self,
        *,
        job: str | None = None,
        outcome: Outcome | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        return self._read(
            lambda store: store.runs(job=job, outcome=outcome, since=since, limit=limit)
        )

    def find(self, run_id: str) -> list[Line]:
        return self._read(lambda store: store.find(run_id))


def _without_nul(data: dict[str, Any]) -> dict[str, Any]:
    """The line with U+0000 in its strings replaced by U+FFFD (PostgreSQL's jsonb refuses it)."""

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("\x00", "\ufffd") if "\x00" in value else value
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return {k: clean(v) for k, v in data.items()}
