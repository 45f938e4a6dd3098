"""Several real `kron daemon` processes as the nodes of one cluster, on one real PostgreSQL.

Each node has its own copy of the same job files (as each host has its own deployed copy of
the repository), its own records folder, control socket and log. Jobs append a line to a side
file shared by all: `job slot node trigger attempt run_id`, the count that does not trust kron.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEADLINE_S = 30.0
# In the jobs' environment: what each run appends to the side file.
SIDE_LINE = 'echo "$KRON_JOB $KRON_SLOT $KRON_NODE $KRON_TRIGGER $KRON_ATTEMPT $KRON_RUN_ID"'
# Debian's libfaketime (package faketime), wherever the architecture puts it.
FAKETIME = next(
    iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))), Path("/nonexistent")
)


def settings(heartbeat: str = "500ms", dead_after: str = "3s", extra: str = "") -> str:
    return f'[cluster]\nheartbeat = "{heartbeat}"\ndead_after = "{dead_after}"\n{extra}'


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = DEADLINE_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


class Node:
    """One `kron daemon` process, node `name`."""

    def __init__(self, name: str, root: Path, repo: Path, url: str, env: dict[str, str]) -> None:
        self.name = name
        self.home = root / name
        self.jobs_dir = self.home / "jobs.d"
        self.records_dir = self.home / "records"
        self.runtime_dir = self.home / "run"
        self.log = self.home / "daemon.log"
        shutil.copytree(repo, self.jobs_dir)
        self.records_dir.mkdir(parents=True)
        self.runtime_dir.mkdir()
        self.env = {
            **os.environ,
            "KRON_DATABASE_URL": url,
            "KRON_NODE": name,
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Node:
        with open(self.log, "ab") as handle:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kron",
                    "daemon",
                    "--jobs-dir",
                    str(self.jobs_dir),
                    "--records-dir",
                    str(self.records_dir),
                ],
                stdout=subprocess.DEVNULL,
                stderr=handle,
                env=self.env,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_started(self, timeout: float = DEADLINE_S) -> None:
        wait_for(
            lambda: "kron daemon started" in self.text() or self.proc.poll() is not None,  # type: ignore[union-attr]
            f"node {self.name} to start",
            timeout,
        )
        assert self.proc is not None
        assert self.proc.poll() is None, self.text()

    def stop(self) -> int:
        """SIGTERM and wait; the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(DEADLINE_S)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(DEADLINE_S)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signum)

    def cli(self, *args: str, timeout: float = DEADLINE_S) -> subprocess.CompletedProcess[str]:
        """A `kron` command as an operator on this node's host runs it."""
        return subprocess.run(
            [sys.executable, "-m", "kron", *args, "--jobs-dir", str(self.jobs_dir)],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )

    def status(self) -> dict[str, Any]:
        done = self.cli("status", "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)  # type: ignore[no-any-return]


class Cluster:
    """Nodes sharing one database and one side file; stops them all at the end."""

    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self.url = url
        self.repo = root / "repo"
        self.repo.mkdir()
        self.side = root / "side.txt"
        self.nodes: dict[str, Node] = {}

    def write(self, name: str, text: str) -> None:
        path = self.repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")

    def node(self, name: str, **env: str) -> Node:
        node = self.nodes[name] = Node(name, self.root, self.repo, self.url, env)
        return node

    def start(self, *names: str, **env: str) -> list[Node]:
        started = [self.node(name, **env).start() for name in names]
        for node in started:
            node.wait_started()
        return started

    def close(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                with _suppress():
                    node.signal(signal.SIGCONT)
                node.kill()
            _kill_groups_left(node)

    # -- what happened --------------------------------------------------------------------

    def side_lines(self) -> list[list[str]]:
        if not self.side.exists():
            return []
        return [line.split() for line in self.side.read_text().splitlines() if line.strip()]

    def side_counts(self) -> collections.Counter[tuple[str, str]]:
        """How many times each (job, slot) ran, by the jobs' own count."""
        return collections.Counter((f[0], f[1]) for f in self.side_lines())

    def rows(self, sql: str, *params: Any) -> list[Any]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql, params or None).fetchall()  # type: ignore[arg-type]

    def results(self) -> dict[tuple[str, str], list[str]]:
        """Each (job, slot)'s terminal records in the cluster's table (late ones left out)."""
        found: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
        for job, slot, outcome in self.rows(
            """SELECT job, line->>'slot', outcome FROM kron_records
               WHERE outcome IS NOT NULL AND outcome <> 'started' AND NOT late
                 AND line->>'trigger' IN ('schedule', 'catchup')"""
        ):
            found[(job, slot)].append(outcome)
        return found


def _kill_groups_left(node: Node) -> None:
    """Jobs a killed node left running (their own sessions): gone with the test."""
    for path in node.records_dir.rglob("*.runs.jsonl"):
        for line in path.read_text(errors="replace").splitlines():
            try:
                pgid = json.loads(line).get("process", {}).get("pgid")
            except ValueError:
                continue
            if isinstance(pgid, int):
                with _suppress():
                    os.killpg(pgid, signal.SIGKILL)


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], OSError)  # type: ignore[arg-type]


def every_second(start: float, end: float) -> list[str]:
    """RFC 3339 slots of a `* * * * * *` job in [start, end] (epoch seconds)."""
    from datetime import UTC, datetime

    first = int(start) + 1
    return [
        datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for t in range(first, int(end) + 1)
    ]
