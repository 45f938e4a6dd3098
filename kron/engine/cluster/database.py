"""The cluster's database: where its URL comes from, the connection pool, and whether it is in
reach right now.

Every statement goes through `Database.run`, which times it, retries it once on a fresh
connection when the first one was cut (`pg_terminate_backend`, a restart), and otherwise says
`Unreachable`. Once unreachable, the pool is closed and a probe connects every heartbeat; when
it gets through, a new pool opens and the owner is told (`on_up`). psycopg's own pool backs off
up to minutes between reconnections; a scheduler wants to know within a heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import psycopg_pool

from kron.engine.cluster.stats import ClusterStats
from kron.model.errors import KronError
from kron.model.settings import ClusterSettings

__all__ = ["Database", "DatabaseError", "Unreachable", "database_url", "node_name"]

log = logging.getLogger("kron.cluster")
# psycopg and its pool log every cut connection and failed reconnection, unformatted; kron
# says once that the database is out of reach, and once that it is back.
logging.getLogger("psycopg").setLevel(logging.CRITICAL)
T = TypeVar("T")
Work = Callable[[psycopg.AsyncConnection[Any], bool], Awaitable[T]]

NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_ROLLBACK_TRIES = 3  # a statement that loses a deadlock this many times in a row is an error
# SQLSTATE classes that waiting does not cure: bad credentials, no such database or role.
_FATAL_STATES = ("28", "3D")


class DatabaseError(KronError):
    """The cluster cannot start: no URL, a credentials file others can read, bad credentials,
    a schema newer than this kron, a node name in use."""


class Unreachable(Exception):
    """The database does not answer now (down, restarting, cut off)."""


def database_url(cluster: ClusterSettings, environ: Mapping[str, str] | None = None) -> str:
    """The PostgreSQL URL: from `url_file` (mode 0600) when set, else from `url_env`.

    Raises:
        DatabaseError: naming the variable or the file, never the URL.
    """
    environ = os.environ if environ is None else environ
    if cluster.url_file is not None:
        return _read_url_file(cluster.url_file)
    url = environ.get(cluster.url_env, "").strip()
    if not url:
        raise DatabaseError(
            f"[cluster] needs the database URL: set the environment variable {cluster.url_env} "
            "(url_env), or name a 0600 file holding it with url_file"
        )
    return url


def _read_url_file(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise DatabaseError(
            f"[cluster] url_file {path}: cannot read it: {exc.strerror or exc}"
        ) from None
    if mode & 0o077:
        raise DatabaseError(
            f"[cluster] url_file {path}: it holds a secret, and others may read it (mode "
            f"{mode & 0o777:04o}); make it readable by the daemon's user only: chmod 600 {path}"
        )
    if not text:
        raise DatabaseError(f"[cluster] url_file {path}: the file is empty")
    return text


def node_name(cluster: ClusterSettings, environ: Mapping[str, str] | None = None) -> str:
    """This node's name: $KRON_NODE, else `node` in [cluster], else the host name."""
    environ = os.environ if environ is None else environ
    name = environ.get("KRON_NODE") or cluster.node or socket.gethostname()
    if not NODE_NAME.fullmatch(name):
        source = "KRON_NODE" if environ.get("KRON_NODE") else "the host name"
        raise DatabaseError(
            f"node name {name!r} (from {source}) is not a valid name: letters, digits, `.`, `_` "
            "and `-`, at most 63; set KRON_NODE"
        )
    return name


def fatal(exc: psycopg.Error) -> bool:
    """Whether a connection error will not go away by waiting (credentials, database name)."""
    state = getattr(exc, "sqlstate", None) or ""
    text = str(exc)
    return state.startswith(_FATAL_STATES) or any(
        words in text
        for words in ("password authentication failed", "does not exist", "no password supplied")
    )


class Database:
    """A pool of connections to the cluster's database, and whether it answers.

    Args:
        url: the PostgreSQL URL (never logged).
        node: this node's name; connections carry it as their application_name.
        heartbeat_s: how often to try again when it does not answer.
        timeout_s: the longest a statement may take before the database counts as out of reach.
        stats: where round trips and errors are counted.
    """

    def __init__(
        self,
        url: str,
        *,
        node: str,
        heartbeat_s: float,
        timeout_s: float,
        stats: ClusterStats,
    ) -> None:
        self._url = url
        self._kwargs: dict[str, object] = {
            "autocommit": True,
            "application_name": f"kron {node}"[:63],
            "connect_timeout": max(1, round(timeout_s)),
        }
        self.heartbeat_s = heartbeat_s
        self.timeout_s = timeout_s
        self.stats = stats
        self._pool: psycopg_pool.AsyncConnectionPool | None = None
        self._probe: asyncio.Task[None] | None = None
        self._closing: asyncio.Future[None] | None = None  # the pool of the last outage
        self._closed = False
        self.on_down: Callable[[], None] = lambda: None
        self.on_up: Callable[[], None] = lambda: None

    @property
    def reachable(self) -> bool:
        return self._pool is not None

    # -- opening and closing --------------------------------------------------------------

    async def connect(self) -> psycopg.AsyncConnection[Any]:
        """One connection of our own (migrations, the probe).

        Raises:
            DatabaseError: for what waiting does not cure.
            Unreachable: for the rest.
        """
        try:
            return await psycopg.AsyncConnection.connect(self._url, **self._kwargs)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            if fatal(exc):
                raise DatabaseError(
                    f"the cluster database refused this node: {_said(exc)}"
                ) from None
            raise Unreachable(_said(exc)) from None

    async def open(self) -> None:
        """Open the pool; raises Unreachable when the database does not answer."""
        pool = psycopg_pool.AsyncConnectionPool(
            self._url,
            kwargs=self._kwargs,
            min_size=1,
            max_size=8,  # claims of several ranks, the heartbeat, the writer, waits
            open=False,
            timeout=self.timeout_s,
            name="kron",
        )
        try:
            await pool.open(wait=True, timeout=self.timeout_s)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            await pool.close()
            raise Unreachable(_said(exc)) from None
        self._pool = pool
        self.stats.reachable(True)

    async def close(self) -> None:
        self._closed = True
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close(timeout=1.0)

    # -- statements -------------------------------------------------------------------------

    async def run(self, work: Work[T], *, retry: bool = True) -> T:
        """Run `work(connection, retried)`; once more on a fresh connection if the first was
        cut, then raise Unreachable. `retried` tells work that its first try may have been
        committed before the connection went. A statement that lost a deadlock is run again
        (up to three times), and the database is not taken for out of reach."""
        retried = False
        for tries in range(_ROLLBACK_TRIES + 1):
            pool = self._pool
            if pool is None:
                raise Unreachable(self.stats.last_error or "the database is out of reach")
            started = time.perf_counter()
            try:
                async with pool.connection(timeout=self.timeout_s) as conn:
                    result = await asyncio.wait_for(work(conn, retried), self.timeout_s)
            except psycopg.errors.TransactionRollback as exc:
                # A deadlock or a serialization failure: the database answers, the statement
                # lost a race; try it again as it is (nothing of it was committed).
                self.stats.error(_said(exc))
                if tries == _ROLLBACK_TRIES:
                    raise
                continue
            except (psycopg.OperationalError, psycopg_pool.PoolTimeout, TimeoutError) as exc:
                self.stats.error(_said(exc))
                if retried or not retry or isinstance(exc, psycopg_pool.PoolTimeout):
                    self._lost(exc)
                    raise Unreachable(_said(exc)) from None
                # The pool's other idle connections may be cut as well (a restart, an
                # administrator's pg_terminate_backend): drop those before the second try.
                with contextlib.suppress(psycopg.Error, psycopg_pool.PoolTimeout):
                    await pool.check()
                retried = True
                continue
            except psycopg.Error as exc:
                self.stats.error(_said(exc))
                raise
            self.stats.round_trip(time.perf_counter() - started)
            return result
        raise AssertionError("unreachable")  # the loop returns or raises

    def _lost(self, exc: BaseException) -> None:
        """The database stopped answering: close the pool, tell the owner, probe until back."""
        if self._pool is None or self._closed:
            return
        pool, self._pool = self._pool, None
        self.stats.reachable(False, _said(exc))
        log.error(
            "the cluster database is out of reach (%s): nothing fires on this node until it is "
            "back; trying again every %.3gs",
            _said(exc),
            self.heartbeat_s,
        )
        self._closing = asyncio.ensure_future(pool.close(timeout=0.5))
        self.on_down()
        self._probe = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.heartbeat_s)
            down_s = self.stats.down_for()
            try:
                conn = await self.connect()
                await conn.close()
                await self.open()
            except (Unreachable, DatabaseError) as exc:
                self.stats.error(str(exc))
                continue
            log.warning("the cluster database answers again (out of reach for %.1fs)", down_s)
            self._probe = None
            self.on_up()
            return


def _said(exc: BaseException) -> str:
    """An error in one line, without the URL (psycopg does not repeat passwords)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
