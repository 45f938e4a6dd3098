"""kron's tables in the cluster's database, and their migrations.

Each migration is a version number and its statements. `migrate` applies the missing ones in
one transaction, under an advisory lock, so nodes starting at the same moment apply each once
(the others wait, then find nothing to do). A database whose schema is newer than this kron
knows is refused with both versions: an older node must not write rows it does not understand.

The tables (docs/cluster.md lists the grants they need):

- `kron_schema`: the migrations applied.
- `kron_nodes`: one row per node name: its daemon (instance, host, pid), version, job-set
  digest and jobs, its heartbeat in the database's time, and when it left (a clean stop).
- `kron_claims`: one row per launch and attempt: who won it. The primary key is the natural
  key of a launch (job, key, attempt), so `INSERT ... ON CONFLICT DO NOTHING` lets exactly one
  node win it.
- `kron_live`: one row per live launch (running or waiting to retry), held by its node; for
  `forbid` and `replace` jobs a unique index allows one such row per job.
- `kron_records`: the cluster's copy of every record line; `late` marks a line written by a
  node that had lost the run's lease.
- `kron_last`: each job's newest terminal record and last success (status and list).
- `kron_paused`: paused jobs.
"""

from __future__ import annotations

from typing import Any

import psycopg

from kron import __version__
from kron.engine.cluster.database import DatabaseError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

# The advisory lock key of kron's migrations: any bigint, the same for every node.
MIGRATION_LOCK = 0x6B726F6E  # "kron"

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE kron_nodes (
                node text PRIMARY KEY,
                instance text NOT NULL,
                host text NOT NULL,
                pid integer NOT NULL,
                boot_id text NOT NULL,
                version text NOT NULL,
                started_at timestamptz NOT NULL DEFAULT now(),
                heartbeat_at timestamptz NOT NULL DEFAULT now(),
                left_at timestamptz,
                digest text NOT NULL DEFAULT '',
                jobs jsonb NOT NULL DEFAULT '{}'
            )""",
            """CREATE TABLE kron_claims (
                job text NOT NULL,
                key text NOT NULL,
                attempt integer NOT NULL,
                trigger text NOT NULL,
                slot timestamptz NOT NULL,
                node text NOT NULL,
                run_id text NOT NULL,
                claimed_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (job, key, attempt)
            )""",
            "CREATE INDEX kron_claims_slot ON kron_claims (job, slot)",
            "CREATE INDEX kron_claims_claimed_at ON kron_claims (claimed_at)",
            """CREATE TABLE kron_live (
                job text NOT NULL,
                key text NOT NULL,
                node text NOT NULL,
                run_id text NOT NULL,
                attempt integer NOT NULL,
                slot timestamptz NOT NULL,
                trigger text NOT NULL,
                upstream text,
                config_sha text NOT NULL,
                exclusive boolean NOT NULL,
                running boolean NOT NULL DEFAULT true,
                since timestamptz NOT NULL DEFAULT now(),
                stop text,
                PRIMARY KEY (job, key)
            )""",
            "CREATE UNIQUE INDEX kron_live_exclusive ON kron_live (job) WHERE exclusive",
            "CREATE INDEX kron_live_node ON kron_live (node)",
            "CREATE INDEX kron_live_run ON kron_live (run_id)",
            """CREATE TABLE kron_records (
                id bigserial PRIMARY KEY,
                job text NOT NULL,
                run_id text NOT NULL,
                node text NOT NULL,
                outcome text,
                at timestamptz NOT NULL,
                late boolean NOT NULL DEFAULT false,
                line jsonb NOT NULL
            )""",
            "CREATE INDEX kron_records_job ON kron_records (job, id)",
            "CREATE INDEX kron_records_run ON kron_records (run_id text_pattern_ops)",
            "CREATE INDEX kron_records_at ON kron_records (at)",
            """CREATE TABLE kron_last (
                job text PRIMARY KEY,
                line jsonb NOT NULL,
                ended_at timestamptz NOT NULL,
                success_at timestamptz,
                updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
            )""",
            "CREATE INDEX kron_last_updated ON kron_last (updated_at)",
            """CREATE TABLE kron_paused (
                job text PRIMARY KEY,
                node text NOT NULL,
                at timestamptz NOT NULL DEFAULT now()
            )""",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


async def migrate(conn: psycopg.AsyncConnection[Any]) -> list[int]:
    """Bring kron's tables to SCHEMA_VERSION; return the versions applied (none: up to date).

    Raises:
        DatabaseError: the database holds a newer schema than this kron knows.
    """
    async with conn.transaction():
        # Held to the end of the transaction: a node starting beside this one waits here.
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        cursor = await conn.execute("SELECT to_regclass('kron_schema') IS NOT NULL")
        found = await cursor.fetchone()
        if not (found and found[0]):
            # Only when missing: CREATE ... IF NOT EXISTS asks for the CREATE grant regardless,
            # and a node's role need not have it (docs/cluster.md, grants).
            await conn.execute(
                """CREATE TABLE kron_schema (
                    version integer PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT now(),
                    kron_version text NOT NULL
                )"""
            )
        cursor = await conn.execute("SELECT coalesce(max(version), 0) FROM kron_schema")
        row = await cursor.fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            cursor = await conn.execute(
                "SELECT kron_version FROM kron_schema WHERE version = %s", (current,)
            )
            by = await cursor.fetchone()
            raise DatabaseError(
                f"the cluster database's kron schema is version {current} (written by kron "
                f"{by[0] if by else '?'}), newer than this kron {__version__} knows (version "
                f"{SCHEMA_VERSION}); upgrade kron on this node (docs/cluster.md, upgrading)"
            )
        applied = []
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO kron_schema (version, kron_version) VALUES (%s, %s)",
                (version, __version__),
            )
            applied.append(version)
        return applied
