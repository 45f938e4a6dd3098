"""Nodes: joining the cluster under a name, the heartbeat, and telling a dead node from a live one.

A node is dead when its heartbeat has not changed for `dead_after` while this node watched.
Watching, not comparing clocks: the heartbeat is a time in the database's clock, and what
counts is whether it moves. A node that was not watching (frozen itself, or cut from the
database) starts watching anew, so a database restart or a pause of this node never makes
every other node look dead.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from kron import __version__
from kron.engine.cluster.database import DatabaseError
from kron.engine.coordinator import Peer

__all__ = [
    "Drift",
    "Heartbeat",
    "Liveness",
    "Me",
    "Taken",
    "job_set_digest",
    "publish",
    "register",
    "store_pause",
]


def job_set_digest(jobs: Mapping[str, str]) -> str:
    """A short hash of a job set: each job id with its config_sha."""
    digest = hashlib.sha256()
    for job_id, sha in sorted(jobs.items()):
        digest.update(f"{job_id}\0{sha}\n".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True, kw_only=True, slots=True)
class Drift:
    """How another node's job set differs from this node's."""

    digest: str  # the other node's
    against: str  # this node's
    differ: tuple[str, ...]  # loaded on both, with other definitions
    only_there: tuple[str, ...]
    only_here: tuple[str, ...]

    @classmethod
    def between(
        cls, mine: Mapping[str, str], theirs: Mapping[str, str], digest: str, against: str
    ) -> Drift:
        return cls(
            digest=digest,
            against=against,
            differ=tuple(sorted(j for j in mine.keys() & theirs.keys() if mine[j] != theirs[j])),
            only_there=tuple(sorted(theirs.keys() - mine.keys())),
            only_here=tuple(sorted(mine.keys() - theirs.keys())),
        )


async def jobs_of(conn: psycopg.AsyncConnection[Any], node: str) -> dict[str, str]:
    """The job set a node published: job id -> config_sha."""
    cursor = await conn.execute("SELECT jobs FROM kron_nodes WHERE node = %s", (node,))
    row = await cursor.fetchone()
    jobs = row[0] if row is not None else {}
    return {str(k): str(v) for k, v in jobs.items()} if isinstance(jobs, dict) else {}


@dataclass(frozen=True, kw_only=True, slots=True)
class Me:
    """This daemon, as its node's row says it."""

    node: str
    instance: str  # random, per start: tells this daemon from an earlier one of the node
    host: str
    pid: int
    boot_id: str
    version: str = __version__


async def register(
    conn: psycopg.AsyncConnection[Any],
    me: Me,
    *,
    dead_after_s: float,
    jobs: Mapping[str, str],
) -> None:
    """Take the node's row for this daemon.

    Raises:
        DatabaseError: a live daemon has the name already; both are named.
    """
    for _ in range(3):
        cursor = await conn.execute(
            """SELECT instance, host, pid, boot_id, version, started_at, left_at,
                      extract(epoch FROM now() - heartbeat_at)
               FROM kron_nodes WHERE node = %s""",
            (me.node,),
        )
        row = await cursor.fetchone()
        if row is not None:
            _, host, pid, boot_id, version, started_at, left_at, silent = row
            earlier_self = host == me.host and boot_id == me.boot_id and not _alive(pid, me.pid)
            if left_at is None and float(silent) < dead_after_s and not earlier_self:
                raise DatabaseError(
                    f"node name {me.node!r} is in use: the daemon of pid {pid} on host {host} "
                    f"(kron {version}, up since {started_at:%Y-%m-%d %H:%M:%S}, heartbeat "
                    f"{float(silent):.1f}s ago) has it; this daemon, pid {me.pid} on host "
                    f"{me.host}, will not share it; give each node its own name "
                    "(KRON_NODE, or node in [cluster])"
                )
        params = {
            "node": me.node,
            "instance": me.instance,
            "host": me.host,
            "pid": me.pid,
            "boot_id": me.boot_id,
            "version": me.version,
            "digest": job_set_digest(jobs),
            "jobs": json.dumps(dict(jobs)),
            "old": row[0] if row is not None else None,
        }
        cursor = await conn.execute(
            """INSERT INTO kron_nodes (node, instance, host, pid, boot_id, version, digest, jobs)
               VALUES (%(node)s, %(instance)s, %(host)s, %(pid)s, %(boot_id)s, %(version)s,
                       %(digest)s, %(jobs)s)
               ON CONFLICT (node) DO UPDATE SET
                   instance = excluded.instance, host = excluded.host, pid = excluded.pid,
                   boot_id = excluded.boot_id, version = excluded.version,
                   started_at = now(), heartbeat_at = now(), left_at = NULL,
                   digest = excluded.digest, jobs = excluded.jobs
               WHERE kron_nodes.instance = %(old)s
               RETURNING node""",
            params,
        )
        if await cursor.fetchone() is not None:
            return
    raise DatabaseError(f"node name {me.node!r}: another daemon took it while this one started")


def _alive(pid: int, own: int) -> bool:
    """Whether `pid` on this host is another live process (an earlier self is not)."""
    if pid == own:
        return False  # this pid is this daemon: the row is from an earlier start (a container)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True, kw_only=True, slots=True)
class Taken:
    """A live launch of a dead node, deleted from `kron_live` by this node (so only this node
    records it)."""

    job: str
    key: str
    node: str
    run_id: str
    attempt: int
    slot: datetime
    trigger: str
    upstream: str | None
    config_sha: str
    running: bool  # False: between two attempts
    since: datetime


@dataclass(kw_only=True, slots=True)
class Heartbeat:
    """What one heartbeat read: the node's own row still its own, every node, this node's live
    launches, the paused jobs, and the newest terminal records since the last one."""

    still_mine: bool
    peers: list[Peer] = field(default_factory=list)
    heartbeats: dict[str, datetime] = field(default_factory=dict)  # node -> its heartbeat
    left: set[str] = field(default_factory=set)  # nodes that stopped cleanly
    live: dict[tuple[str, str], tuple[str, str | None]] = field(default_factory=dict)
    paused: set[str] = field(default_factory=set)
    last: list[tuple[dict[str, Any], datetime | None]] = field(default_factory=list)
    watermark: datetime | None = None


async def beat(
    conn: psycopg.AsyncConnection[Any], me: Me, since: datetime | None, running: int
) -> Heartbeat:
    """One heartbeat: five statements in one round trip (a pipeline)."""
    async with conn.pipeline():
        renew = await conn.execute(
            """UPDATE kron_nodes SET heartbeat_at = now()
               WHERE node = %s AND instance = %s RETURNING 1""",
            (me.node, me.instance),
        )
        nodes = await conn.execute(
            """SELECT n.node, n.version, n.pid, n.started_at, n.host, n.heartbeat_at,
                      extract(epoch FROM now() - n.heartbeat_at), n.left_at, n.digest,
                      (SELECT count(*) FROM kron_live l WHERE l.node = n.node AND l.running)
               FROM kron_nodes n ORDER BY n.node"""
        )
        live = await conn.execute(
            "SELECT job, key, run_id, stop FROM kron_live WHERE node = %s", (me.node,)
        )
        paused = await conn.execute("SELECT job FROM kron_paused")
        last = await conn.execute(
            """SELECT line, success_at, updated_at FROM kron_last
               WHERE updated_at > coalesce(%s, '-infinity'::timestamptz)
               ORDER BY updated_at""",
            (since,),
        )
    found = Heartbeat(still_mine=await renew.fetchone() is not None)
    for (
        node,
        version,
        pid,
        started,
        host,
        at,
        silent,
        left_at,
        digest,
        count,
    ) in await nodes.fetchall():
        found.heartbeats[node] = at
        if left_at is not None:
            found.left.add(node)
        found.peers.append(
            Peer(
                node=node,
                version=version,
                pid=pid,
                started_at=started,
                host=host,
                heartbeat_at=at,
                silent_s=float(silent),
                running=running if node == me.node else int(count),
                digest=digest,
                alive=left_at is None,
            )
        )
    found.live = {(job, key): (run_id, stop) for job, key, run_id, stop in await live.fetchall()}
    found.paused = {job for (job,) in await paused.fetchall()}
    for line, success_at, updated in await last.fetchall():
        found.last.append((line, success_at))
        found.watermark = updated
    found.watermark = found.watermark or since
    return found


class Liveness:
    """Which nodes are dead: a heartbeat that has not moved for `dead_after` of watching."""

    def __init__(self, dead_after_s: float) -> None:
        self.dead_after_s = dead_after_s
        self._seen: dict[str, tuple[datetime, float]] = {}  # node -> (heartbeat, since when)

    def watch_anew(self) -> None:
        """This node was not watching (frozen, or the database was out of reach)."""
        now = time.monotonic()
        self._seen = {node: (at, now) for node, (at, _) in self._seen.items()}

    def observe(self, node: str, heartbeat_at: datetime) -> float:
        """Note the node's heartbeat; return for how long it has stood still, in seconds."""
        now = time.monotonic()
        seen = self._seen.get(node)
        if seen is None or seen[0] != heartbeat_at:
            self._seen[node] = (heartbeat_at, now)
            return 0.0
        return now - seen[1]

    def dead(self, node: str) -> bool:
        seen = self._seen.get(node)
        return seen is not None and time.monotonic() - seen[1] >= self.dead_after_s


async def reap(
    conn: psycopg.AsyncConnection[Any], node: str, heartbeat_at: datetime
) -> list[Taken]:
    """Take the live launches of a dead node, unless its heartbeat moved meanwhile."""
    cursor = await conn.execute(
        """DELETE FROM kron_live
           WHERE node = %s AND EXISTS (
               SELECT 1 FROM kron_nodes n WHERE n.node = %s AND n.heartbeat_at = %s)
           RETURNING job, key, node, run_id, attempt, slot, trigger, upstream, config_sha,
                     running, since""",
        (node, node, heartbeat_at),
    )
    return [
        Taken(
            job=job,
            key=key,
            node=owner,
            run_id=run_id,
            attempt=attempt,
            slot=slot,
            trigger=trigger,
            upstream=upstream,
            config_sha=sha,
            running=running,
            since=since,
        )
        for job, key, owner, run_id, attempt, slot, trigger, upstream, sha, running, since in (
            await cursor.fetchall()
        )
    ]


async def reap_own(conn: psycopg.AsyncConnection[Any], node: str) -> list[Taken]:
    """At start: the live launches an earlier daemon of this node left (a crash)."""
    cursor = await conn.execute(
        """DELETE FROM kron_live WHERE node = %s
           RETURNING job, key, node, run_id, attempt, slot, trigger, upstream, config_sha,
                     running, since""",
        (node,),
    )
    return [Taken(**dict(zip(_TAKEN_FIELDS, row, strict=True))) for row in await cursor.fetchall()]


_TAKEN_FIELDS = (
    "job",
    "key",
    "node",
    "run_id",
    "attempt",
    "slot",
    "trigger",
    "upstream",
    "config_sha",
    "running",
    "since",
)


async def leave(conn: psycopg.AsyncConnection[Any], me: Me) -> None:
    """A clean stop: the node's runs are recorded and gone; it is not dead, it left."""
    await conn.execute(
        "UPDATE kron_nodes SET left_at = now() WHERE node = %s AND instance = %s",
        (me.node, me.instance),
    )


async def store_pause(
    conn: psycopg.AsyncConnection[Any], job: str, paused: bool, node: str
) -> None:
    """Pause a job for the whole cluster (every node's claims of its slots are refused), or
    resume it."""
    if paused:
        await conn.execute(
            "INSERT INTO kron_paused (job, node) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (job, node),
        )
    else:
        await conn.execute("DELETE FROM kron_paused WHERE job = %s", (job,))


async def publish(
    conn: psycopg.AsyncConnection[Any], me: Me, digest: str, jobs: Mapping[str, str]
) -> None:
    """This node's job set, for the other nodes' drift."""
    await conn.execute(
        "UPDATE kron_nodes SET digest = %s, jobs = %s WHERE node = %s AND instance = %s",
        (digest, json.dumps(dict(jobs)), me.node, me.instance),
    )
