"""Claims: one `INSERT ... ON CONFLICT DO NOTHING` on a launch's natural key decides which node
runs it, batched so that the claims of one instant cost one round trip.

A launch's key: a scheduled or catch-up slot is its time (the two share it: a slot is run once,
on time or caught up); a manual run is `manual` and its second; a triggered run is `after` and
the upstream run; `@reboot` is the node and its start. An attempt is the key and its number.

The same statement takes the launch's lease (a `kron_live` row). For `forbid` and `replace`
jobs a unique index lets one live launch per job exist: a node that wins the slot but not the
lease found another run alive, wherever it runs, and learns which.

Work is shared by rank. Each slot orders the live nodes by a hash of the slot and the node
(rendezvous hashing): the first claims it at once, the second a step later, and so on. Nodes
agree on the order without talking, so a 500-job instant splits three ways; a node that is
slow or dead loses nothing but a step of its share's latency.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from kron.engine.coordinator import Claim, Grant
from kron.model.run import Trigger
from kron.model.times import format_time

__all__ = [
    "SHARE_STEP_S",
    "Pending",
    "claim_batch",
    "launch_key",
    "rank",
    "still_held",
    "sweep",
    "take_or_wait",
]

SHARE_STEP_S = 0.25  # how long a slot waits for the node before this one in its order
_SLOTS = (Trigger.SCHEDULE, Trigger.CATCHUP)


def launch_key(claim: Claim, node: str) -> str:
    """The natural key of a launch, within its job."""
    trigger = claim.trigger
    if trigger in _SLOTS:
        return format_time(claim.slot)
    if trigger is Trigger.MANUAL:
        return f"manual {format_time(claim.slot)}"
    if trigger is Trigger.DEPENDENCY:
        return f"after {claim.upstream}"
    return f"reboot {node} {format_time(claim.slot)}"  # once per boot of each node


def rank(claim: Claim, key: str, node: str, nodes: Sequence[str]) -> int:
    """Where this node comes in the slot's order of the live nodes (0: first). Only slots
    are shared; a manual run, a trigger or a retry is claimed at once by the node that has it."""
    if claim.trigger not in _SLOTS or claim.attempt != 1 or len(nodes) < 2:
        return 0
    mine = _weight(claim.job, key, node)
    return sum(1 for other in nodes if other != node and _weight(claim.job, key, other) > mine)


def _weight(job: str, key: str, node: str) -> bytes:
    return hashlib.blake2b(f"{job}\0{key}\0{node}".encode(), digest_size=8).digest()


@dataclass(eq=False, slots=True)
class Pending:
    """A claim waiting for its batch's statement, and what it will be told."""

    claim: Claim
    key: str
    answer: asyncio.Future[Grant]


_FRESH = """
WITH input AS (
    SELECT * FROM unnest(
        %(i)s::int[], %(job)s::text[], %(key)s::text[], %(attempt)s::int[], %(trigger)s::text[],
        %(slot)s::timestamptz[], %(run_id)s::text[], %(upstream)s::text[], %(sha)s::text[],
        %(lease)s::bool[], %(exclusive)s::bool[], %(pausable)s::bool[]
    ) AS t(i, job, key, attempt, trigger, slot, run_id, upstream, sha, lease, exclusive, pausable)
),
won AS (
    INSERT INTO kron_claims (job, key, attempt, trigger, slot, node, run_id)
    SELECT job, key, attempt, trigger, slot, %(node)s, run_id FROM input
    WHERE NOT (pausable AND EXISTS (SELECT 1 FROM kron_paused p WHERE p.job = input.job))
    ORDER BY job, key, attempt
    ON CONFLICT DO NOTHING
    RETURNING job, key, attempt
),
live AS (
    INSERT INTO kron_live (job, key, node, run_id, attempt, slot, trigger, upstream, config_sha,
                           exclusive)
    SELECT i.job, i.key, %(node)s, i.run_id, i.attempt, i.slot, i.trigger, i.upstream, i.sha,
           i.exclusive
    FROM input i JOIN won USING (job, key, attempt)
    WHERE i.lease
    ORDER BY i.job, i.key
    ON CONFLICT DO NOTHING
    RETURNING job, key
)
SELECT input.i, won.job IS NOT NULL, live.job IS NOT NULL,
       input.pausable AND EXISTS (SELECT 1 FROM kron_paused p WHERE p.job = input.job),
       h.run_id, h.node
FROM input
LEFT JOIN won USING (job, key, attempt)
LEFT JOIN live USING (job, key)
LEFT JOIN LATERAL (
    SELECT l.run_id, l.node FROM kron_live l
    WHERE input.exclusive AND input.lease AND l.job = input.job AND l.exclusive
    LIMIT 1
) h ON true
"""

# A later attempt of a run whose node holds the launch's lease: claimed only while it still
# holds it. The update locks the live row, so a survivor reaping it waits for this statement.
_CONTINUED = """
WITH input AS (
    SELECT * FROM unnest(
        %(i)s::int[], %(job)s::text[], %(key)s::text[], %(attempt)s::int[], %(trigger)s::text[],
        %(slot)s::timestamptz[], %(run_id)s::text[]
    ) AS t(i, job, key, attempt, trigger, slot, run_id)
),
held AS (
    UPDATE kron_live l SET run_id = input.run_id, attempt = input.attempt, running = true
    FROM input
    WHERE l.job = input.job AND l.key = input.key AND l.node = %(node)s
    RETURNING l.job, l.key
),
won AS (
    INSERT INTO kron_claims (job, key, attempt, trigger, slot, node, run_id)
    SELECT input.job, input.key, input.attempt, input.trigger, input.slot, %(node)s,
           input.run_id
    FROM input JOIN held USING (job, key)
    ORDER BY input.job, input.key, input.attempt
    ON CONFLICT DO NOTHING
    RETURNING job, key, attempt
)
SELECT input.i, won.job IS NOT NULL, held.job IS NOT NULL
FROM input
LEFT JOIN won USING (job, key, attempt)
LEFT JOIN held USING (job, key)
"""

# After a retried statement: which of the claims not won were won by this node's first try.
_MINE = """
SELECT job, key, attempt FROM kron_claims
WHERE (job, key, attempt) IN (SELECT * FROM unnest(%s::text[], %s::text[], %s::int[]))
  AND node = %s AND run_id = ANY(%s)
"""

_HOLDER = """
SELECT run_id, node FROM kron_live WHERE job = %s AND exclusive AND NOT (job = %s AND key = %s)
"""


async def claim_batch(
    conn: psycopg.AsyncConnection[Any], batch: Sequence[Pending], node: str, retried: bool
) -> list[Grant]:
    """Claim every launch of `batch` in one statement (two when some continue a run); a grant
    per claim, in order."""
    grants: list[Grant | None] = [None] * len(batch)
    fresh = [(i, p) for i, p in enumerate(batch) if not p.claim.continues]
    continued = [(i, p) for i, p in enumerate(batch) if p.claim.continues]
    if fresh:
        params = _columns(fresh, node)
        params |= {
            "upstream": [p.claim.upstream for _, p in fresh],
            "sha": [p.claim.config_sha for _, p in fresh],
            "lease": [p.claim.lease for _, p in fresh],
            "exclusive": [p.claim.exclusive for _, p in fresh],
            "pausable": [p.claim.trigger in _SLOTS for _, p in fresh],
        }
        rows = await (await conn.execute(_FRESH, params)).fetchall()
        lost = []
        for i, won, leased, paused, holder, holder_node in rows:
            claim = batch[i].claim
            if not won:
                why = "the job is paused" if paused else "another node's"
                grants[i] = Grant(won=False, why=why)
                lost.append(i)
            elif not claim.lease or leased:
                grants[i] = Grant(won=True)
            elif holder is not None and holder != claim.run_id:
                grants[i] = Grant(won=True, holder=holder, holder_node=holder_node)
            else:
                grants[i] = await _after_race(conn, batch[i], node)
        if retried and lost:
            await _mine_after_all(conn, [batch[i] for i in lost], node, grants, lost)
    if continued:
        params = _columns(continued, node)
        rows = await (await conn.execute(_CONTINUED, params)).fetchall()
        for i, won, held in rows:
            if won:
                grants[i] = Grant(won=True)
            else:
                grants[i] = Grant(
                    won=False, why="another node's" if held else "its lease was taken"
                )
    return [g if g is not None else Grant(won=False, why="not decided") for g in grants]


def _columns(items: Sequence[tuple[int, Pending]], node: str) -> dict[str, Any]:
    return {
        "node": node,
        "i": [i for i, _ in items],
        "job": [p.claim.job for _, p in items],
        "key": [p.key for _, p in items],
        "attempt": [p.claim.attempt for _, p in items],
        "trigger": [p.claim.trigger.value for _, p in items],
        "slot": [p.claim.slot for _, p in items],
        "run_id": [p.claim.run_id for _, p in items],
    }


async def _after_race(conn: psycopg.AsyncConnection[Any], pending: Pending, node: str) -> Grant:
    """Won the slot, not the lease, and the statement saw no holder: the holder committed
    while it ran, or this node's first try (before a cut connection) took the lease already."""
    claim = pending.claim
    cursor = await conn.execute(_HOLDER, (claim.job, claim.job, pending.key))
    row = await cursor.fetchone()
    if row is None:
        cursor = await conn.execute(
            "SELECT run_id FROM kron_live WHERE job = %s AND key = %s AND node = %s",
            (claim.job, pending.key, node),
        )
        if await cursor.fetchone() is not None:
            return Grant(won=True)
        # The holder ended between the two reads: the run may start; take the lease now.
        cursor = await conn.execute(
            _TAKE_LEASE, _lease_row(claim, pending.key, node, exclusive=claim.exclusive)
        )
        if await cursor.fetchone() is not None:
            return Grant(won=True)
        return await _after_race(conn, pending, node)
    holder, holder_node = row
    return Grant(won=True, holder=str(holder), holder_node=str(holder_node))


async def _mine_after_all(
    conn: psycopg.AsyncConnection[Any],
    lost: Sequence[Pending],
    node: str,
    grants: list[Grant | None],
    where: Sequence[int],
) -> None:
    """After a retry: claims the first try won (its answer never came) are this node's."""
    cursor = await conn.execute(
        _MINE,
        (
            [p.claim.job for p in lost],
            [p.key for p in lost],
            [p.claim.attempt for p in lost],
            node,
            [p.claim.run_id for p in lost],
        ),
    )
    mine = {(str(job), str(key), int(attempt)) for job, key, attempt in await cursor.fetchall()}
    for i, pending in zip(where, lost, strict=True):
        if (pending.claim.job, pending.key, pending.claim.attempt) in mine:
            grants[i] = Grant(won=True)


# A run's lease, taken if no run of the job holds one for this key.
_TAKE_LEASE = """
    INSERT INTO kron_live (job, key, node, run_id, attempt, slot, trigger, upstream, config_sha,
                           exclusive)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT DO NOTHING RETURNING job"""


def _lease_row(claim: Claim, key: str, node: str, *, exclusive: bool) -> tuple[Any, ...]:
    return (
        claim.job,
        key,
        node,
        claim.run_id,
        claim.attempt,
        claim.slot,
        claim.trigger.value,
        claim.upstream,
        claim.config_sha,
        exclusive,
    )


async def take_or_wait(conn: Any, claim: Claim, key: str, node: str, why: str | None) -> str | None:
    """Take the job's lease if no run holds it (None); else ask the holder to stop (with
    `why`), and say which run it is."""
    cursor = await conn.execute(_TAKE_LEASE, _lease_row(claim, key, node, exclusive=True))
    if await cursor.fetchone() is not None:
        return None
    if why is None:
        cursor = await conn.execute(
            "SELECT run_id FROM kron_live WHERE job = %s AND exclusive", (claim.job,)
        )
    else:
        cursor = await conn.execute(
            """UPDATE kron_live SET stop = coalesce(stop, %s)
               WHERE job = %s AND exclusive RETURNING run_id""",
            (why, claim.job),
        )
    row = await cursor.fetchone()
    return str(row[0]) if row else ""


async def still_held(conn: Any, job: str, key: str, node: str) -> bool:
    cursor = await conn.execute(
        "SELECT 1 FROM kron_live WHERE job = %s AND key = %s AND node = %s", (job, key, node)
    )
    return await cursor.fetchone() is not None


# A claim is needed while a node may still try the same launch: minutes, for a slot caught up
# after an outage. A day is plenty; each job's newest claim stays, for where it stands.
CLAIMS_KEPT = "1 day"
_SWEEP_LOCK = 0x6B726F6E + 1  # one node sweeps at a time; the others skip


async def sweep(conn: Any) -> int:
    """Delete claims older than CLAIMS_KEPT but each job's newest; return how many went."""
    cursor = await conn.execute(
        f"""WITH turn AS (SELECT pg_try_advisory_xact_lock(%s) AS mine)
            DELETE FROM kron_claims c USING turn
            WHERE turn.mine AND c.claimed_at < now() - interval '{CLAIMS_KEPT}'
              AND c.slot < (SELECT max(m.slot) FROM kron_claims m WHERE m.job = c.job)""",
        (_SWEEP_LOCK,),
    )
    return int(cursor.rowcount)
