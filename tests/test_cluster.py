"""Cluster mode's settings, start-up and operations: the URL kept out of kron.toml, the tables
migrated once, a node name used once, a daemon without `[cluster]` that never loads psycopg,
and what status, list, history, show, the status page and /metrics say of a cluster."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kron.config.settings import load_settings
from kron.engine.cluster.database import DatabaseError, database_url, node_name
from kron.model.settings import ClusterSettings
from tests.cluster_rig import SIDE_LINE, Cluster, settings, wait_for
from tests.conftest import CliResult


@pytest.fixture
def cluster(tmp_path: Path, database: str) -> Iterator[Cluster]:
    rig = Cluster(tmp_path, database)
    try:
        yield rig
    finally:
        rig.close()


# -- settings ---------------------------------------------------------------------------------


def test_cluster_settings_take_their_defaults(jobs_dir: Path) -> None:
    (jobs_dir / "kron.toml").write_text("[cluster]\n")
    loaded, problems = load_settings(jobs_dir)
    assert problems == []
    assert loaded.cluster == ClusterSettings()
    assert (loaded.cluster.url_env, loaded.cluster.heartbeat.total_seconds()) == (
        "KRON_DATABASE_URL",
        2.0,
    )
    assert loaded.cluster.dead_after.total_seconds() == 10.0


def test_without_a_cluster_table_there_is_no_cluster(jobs_dir: Path) -> None:
    (jobs_dir / "kron.toml").write_text('timezone = "UTC"\n')
    assert load_settings(jobs_dir)[0].cluster is None


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('url = "postgresql://kron:hunter2@db/kron"', "cluster.url"),
        ('dsn = "host=db user=kron password=hunter2"', "cluster.dsn"),
        ('password = "hunter2"', "cluster.password"),
    ],
)
def test_a_database_url_written_in_kron_toml_is_refused_by_validate(
    jobs_dir: Path, cli: object, line: str, field: str
) -> None:
    (jobs_dir / "kron.toml").write_text(f"[cluster]\n{line}\n")
    result: CliResult = cli("validate", "--jobs-dir", jobs_dir)  # type: ignore[operator]
    assert result.code == 1
    assert result.out.splitlines()[0] == (
        f"{jobs_dir}/kron.toml:2:1: {field}: the database URL is a secret and kron.toml is "
        "committed: put it in the environment variable named by `url_env` (default "
        "KRON_DATABASE_URL) or in a file readable by the daemon's user only (mode 0600) named "
        "by `url_file`"
    )
    assert "hunter2" not in result.out + result.err


def test_a_url_given_where_the_variable_name_goes_is_refused_without_repeating_it(
    jobs_dir: Path, cli: object
) -> None:
    (jobs_dir / "kron.toml").write_text('[cluster]\nurl_env = "postgres://kron:pw@db/kron"\n')
    result: CliResult = cli("validate", "--jobs-dir", jobs_dir)  # type: ignore[operator]
    assert result.code == 1
    assert result.out.splitlines()[0].startswith(
        f"{jobs_dir}/kron.toml:2:1: cluster.url_env: this looks like a database URL; `url_env` "
        "names where the URL is, it does not hold it (secrets do not go in the repository)"
    )
    assert "pw@db" not in result.out


def test_dead_after_shorter_than_two_heartbeats_is_refused(jobs_dir: Path) -> None:
    (jobs_dir / "kron.toml").write_text('[cluster]\nheartbeat = "5s"\ndead_after = "8s"\n')
    _, problems = load_settings(jobs_dir)
    assert [str(p) for p in problems] == [
        f"{jobs_dir}/kron.toml:3:1: cluster.dead_after: must be at least two heartbeats (10s); "
        "a node that misses one heartbeat is not dead"
    ]


def test_the_url_comes_from_the_variable_named_by_url_env() -> None:
    found = database_url(ClusterSettings(url_env="DB"), {"DB": " postgresql://x@/k \n"})
    assert found == "postgresql://x@/k"


def test_a_missing_url_variable_is_a_clear_error() -> None:
    with pytest.raises(DatabaseError) as caught:
        database_url(ClusterSettings(), {})
    assert str(caught.value) == (
        "[cluster] needs the database URL: set the environment variable KRON_DATABASE_URL "
        "(url_env), or name a 0600 file holding it with url_file"
    )


def test_a_url_file_others_may_read_is_refused_and_a_0600_one_is_read(tmp_path: Path) -> None:
    path = tmp_path / "db.url"
    path.write_text("postgresql://kron@/kron\n")
    path.chmod(0o644)
    with pytest.raises(DatabaseError) as caught:
        database_url(ClusterSettings(url_file=path), {})
    assert str(caught.value) == (
        f"[cluster] url_file {path}: it holds a secret, and others may read it (mode 0644); "
        f"make it readable by the daemon's user only: chmod 600 {path}"
    )
    path.chmod(0o600)
    assert database_url(ClusterSettings(url_file=path), {}) == "postgresql://kron@/kron"


def test_the_node_name_is_kron_node_then_the_setting_then_the_host_name() -> None:
    import socket

    assert node_name(ClusterSettings(node="n1"), {"KRON_NODE": "n2"}) == "n2"
    assert node_name(ClusterSettings(node="n1"), {}) == "n1"
    assert node_name(ClusterSettings(), {}) == socket.gethostname()
    with pytest.raises(DatabaseError) as caught:
        node_name(ClusterSettings(), {"KRON_NODE": "bad name"})
    assert str(caught.value).startswith("node name 'bad name' (from KRON_NODE) is not a valid")


# -- a daemon without [cluster] ----------------------------------------------------------------

_PROBE = """
import asyncio, sys
from pathlib import Path
from kron.service.daemon import Daemon

async def main():
    daemon = Daemon(Path(sys.argv[1]), control=False)
    await daemon.start()
    runner = asyncio.ensure_future(daemon.scheduler.run_forever())
    await asyncio.sleep(1.5)
    daemon.request_stop()
    daemon.scheduler.stop()
    await runner
    daemon.close()
    print(sorted(m for m in sys.modules if m.split(".")[0] in ("psycopg", "psycopg_pool")
                 or m.startswith("kron.engine.cluster.")))

asyncio.run(main())
"""


def test_a_daemon_without_a_cluster_table_never_imports_psycopg(jobs_dir: Path) -> None:
    (jobs_dir / "kron.toml").write_text('timezone = "UTC"\n')
    (jobs_dir / "tick.toml").write_text('schedule = "* * * * * *"\ncommand = ["true"]\n')
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(jobs_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert len(list(jobs_dir.glob("tick.runs.jsonl"))) == 1  # it did run the job


# -- starting --------------------------------------------------------------------------------


def _daemon(jobs_dir: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kron", "daemon", "--jobs-dir", str(jobs_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def test_a_daemon_without_the_database_url_exits_1_saying_where_to_put_it(jobs_dir: Path) -> None:
    (jobs_dir / "kron.toml").write_text("[cluster]\n")
    env = {k: v for k, v in os.environ.items() if k != "KRON_DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "kron", "daemon", "--jobs-dir", str(jobs_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "kron: [cluster] needs the database URL: set the environment variable KRON_DATABASE_URL "
        "(url_env), or name a 0600 file holding it with url_file"
    )
    assert "Traceback" not in done.stderr


def test_a_daemon_refused_by_the_database_exits_1_and_one_that_finds_none_waits(
    jobs_dir: Path, postgres: object
) -> None:
    (jobs_dir / "kron.toml").write_text('[cluster]\nheartbeat = "500ms"\ndead_after = "2s"\n')
    refused = postgres.url("no_such_database")  # type: ignore[attr-defined]
    done = subprocess.run(
        [sys.executable, "-m", "kron", "daemon", "--jobs-dir", str(jobs_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, "KRON_DATABASE_URL": refused},
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith("kron: the cluster database refused this node: ")
    assert 'database "no_such_database" does not exist' in done.stderr
    # Nothing listens on this socket: the daemon waits for it, says so once, and stops on TERM.
    nowhere = f"postgresql://postgres@/postgres?host={jobs_dir}&port=1"
    with _daemon(jobs_dir, {"KRON_DATABASE_URL": nowhere}) as waiting:
        assert waiting.stderr is not None
        said = waiting.stderr.readline()
        assert "waiting for the cluster database (" in said
        assert "nothing fires until it answers" in said
        time.sleep(1.5)
        waiting.send_signal(signal.SIGTERM)
        assert waiting.wait(30) == 0
        rest = waiting.stderr.read()
        assert "waiting for the cluster database" not in rest  # said once


def test_nodes_starting_together_migrate_the_tables_once(database: str) -> None:
    import asyncio

    import psycopg

    from kron.engine.cluster.schema import SCHEMA_VERSION, migrate

    applied: list[list[int]] = []

    def start() -> None:
        async def one() -> None:
            conn = await psycopg.AsyncConnection.connect(database, autocommit=True)
            try:
                applied.append(await migrate(conn))
            finally:
                await conn.close()

        asyncio.run(one())

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(applied) == [[], [], [], [], [], [SCHEMA_VERSION]]
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT version FROM kron_schema").fetchall()
    assert rows == [(SCHEMA_VERSION,)]


def test_a_database_with_a_newer_schema_is_refused_naming_both_versions(
    jobs_dir: Path, database: str
) -> None:
    import psycopg

    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE kron_schema (version integer PRIMARY KEY, "
            "applied_at timestamptz NOT NULL DEFAULT now(), kron_version text NOT NULL)"
        )
        conn.execute("INSERT INTO kron_schema (version, kron_version) VALUES (99, '9.0.0')")
    (jobs_dir / "kron.toml").write_text("[cluster]\n")
    done = subprocess.run(
        [sys.executable, "-m", "kron", "daemon", "--jobs-dir", str(jobs_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, "KRON_DATABASE_URL": database},
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "kron: the cluster database's kron schema is version 99 (written by kron 9.0.0), newer "
        "than this kron 0.1.0 knows (version 1); upgrade kron on this node (docs/cluster.md, "
        "upgrading)"
    )


def test_a_second_daemon_with_a_node_name_in_use_is_refused_naming_both(cluster: Cluster) -> None:
    cluster.write("kron.toml", settings())
    (first,) = cluster.start("a")
    twin = cluster.node("twin", KRON_NODE="a").start()
    assert twin.proc is not None
    assert twin.proc.wait(30) == 1
    said = twin.text().splitlines()[-1]
    assert re.fullmatch(
        rf"kron: node name 'a' is in use: the daemon of pid {first.pid} on host \S+ \(kron "
        r"0\.1\.0, up since [\d-]+ [\d:]+, heartbeat [\d.]+s ago\) has it; this daemon, pid "
        rf"{twin.pid} on host \S+, will not share it; give each node its own name \(KRON_NODE, "
        r"or node in \[cluster\]\)",
        said,
    ), said
    # The first node goes on; killed, it may start again at once under its name (an earlier
    # self: same host, same boot, its pid gone), without waiting for dead_after.
    first.kill()
    again = cluster.node("again", KRON_NODE="a").start()
    again.wait_started(timeout=20)
    assert again.stop() == 0


# -- status, list, history, show, the status page and /metrics ---------------------------------


def _cluster_doc_metrics() -> set[str]:
    text = (Path(__file__).resolve().parent.parent / "docs" / "cluster.md").read_text()
    return set(re.findall(r"^\| `(kron_cluster_\w+)` \|", text, flags=re.MULTILINE))


@pytest.mark.timeout(120)
def test_status_lists_the_nodes_and_their_drift_and_every_reader_sees_the_clusters_records(
    cluster: Cluster,
) -> None:
    cluster.write("kron.toml", 'metrics = "127.0.0.1:0"\n' + settings())
    for name in ("one", "two", "three"):
        cluster.write(
            f"{name}.toml",
            f"""
            schedule = "* * * * * *"
            timezone = "UTC"
            shell = '{SIDE_LINE} >> {cluster.side}'
            """,
        )
    a = cluster.node("a")
    b = cluster.node("b")
    # Node b's copy of the repository is behind: `two` differs, `three` is not there.
    (b.jobs_dir / "two.toml").write_text(
        f'schedule = "*/2 * * * * *"\ntimezone = "UTC"\nshell = \'{SIDE_LINE} >> {cluster.side}\'\n'
    )
    (b.jobs_dir / "three.toml").unlink()
    a.start().wait_started()
    b.start().wait_started()
    wait_for(
        lambda: {f[2] for f in cluster.side_lines() if f[0] == "one"} == {"a", "b"},
        "both nodes to run `one`",
    )
    status = wait_for(
        lambda: (
            (s := a.status())
            and len(s["cluster"]["nodes"]) == 2
            and s["cluster"]["nodes"][1]["drift"]
            and s
        ),
        "a to see b's drift",
    )
    nodes = status["cluster"]["nodes"]
    assert [(n["node"], n["state"], n["version"]) for n in nodes] == [
        ("a", "alive", "0.1.0"),
        ("b", "alive", "0.1.0"),
    ]
    assert nodes[0]["digest"] == status["cluster"]["digest"]
    assert nodes[1]["drift"] == {"differ": ["two"], "only_there": [], "only_here": ["three"]}
    assert status["cluster"]["database"] == {"reachable": True, "down_since": None, "error": None}
    text = a.cli("status")
    assert text.returncode == 0
    assert "database: reachable" in text.stdout
    assert (
        "drift: node b runs other job definitions: 1 job defined differently: two; "
        "1 job only on a: three"
    ) in text.stdout
    assert re.search(r"^  b +alive +0\.1\.0 ", text.stdout, flags=re.MULTILINE)
    # history and show read the cluster's table: runs of both nodes, from either.
    history = json.loads(b.cli("history", "one", "-n", "40", "--json").stdout)
    assert {r["node"] for r in history} == {"a", "b"}
    run_on_a = next(r for r in history if r["node"] == "a" and r["outcome"] == "succeeded")
    shown = json.loads(b.cli("show", run_on_a["run_id"], "--json").stdout)
    assert (shown["run_id"], shown["node"], shown["outcome"]) == (
        run_on_a["run_id"],
        "a",
        "succeeded",
    )
    # list: the newest outcome of a job wherever it ran.
    listed = {j["id"]: j for j in json.loads(b.cli("list", "--json").stdout)}
    assert listed["one"]["last_outcome"] == "succeeded"
    # the status page and /metrics
    port = int(re.search(r"metrics and status page: http://127\.0\.0\.1:(\d+)/", a.text())[1])  # type: ignore[index]
    page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text
    assert "<h2>Cluster</h2>" in page
    assert "Drift on node b: defined differently: two; only here: three" in page
    job_page = httpx.get(f"http://127.0.0.1:{port}/jobs/one", timeout=10).text
    assert run_on_a["run_id"] in job_page
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    served = set(re.findall(r"^# TYPE (kron_cluster_\w+) \w+$", metrics, flags=re.MULTILINE))
    assert served == _cluster_doc_metrics()
    assert 'kron_cluster_database_up{node="a"} 1.0' in metrics
    assert 'kron_cluster_nodes_live{node="a"} 2.0' in metrics
    won = re.search(r'^kron_cluster_claims_total\{node="a",result="won"\} (\d+)\.0$', metrics, re.M)
    assert won is not None
    assert int(won[1]) > 0
    for node in (a, b):
        assert node.stop() == 0
    assert "Traceback" not in a.text() + b.text()


# -- grants, old claims ------------------------------------------------------------------------


def _doc_grants(role: str, database: str) -> list[str]:
    """The grants docs/cluster.md lists, for this role and database, statement by statement."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "cluster.md").read_text()
    block = re.search(r"```sql\n(CREATE ROLE kron_node.*?)```", text, flags=re.DOTALL)
    assert block is not None
    sql = re.sub(r"\bkron_node\b", role, block[1].replace(" PASSWORD '...'", ""))
    sql = sql.replace("ON DATABASE kron ", f'ON DATABASE "{database}" ')
    return [s.strip() for s in sql.split(";") if s.strip()]


@pytest.mark.timeout(90)
def test_a_node_runs_with_only_the_grants_the_docs_list(cluster: Cluster, postgres: object) -> None:
    import asyncio

    import psycopg

    from kron.engine.cluster.schema import migrate

    async def create_tables() -> None:
        conn = await psycopg.AsyncConnection.connect(cluster.url, autocommit=True)
        try:
            await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(create_tables())  # a first start under the owner
    database = cluster.url.split("/")[3].split("?")[0]
    role = f"kron_node_{os.getpid()}"
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        for statement in _doc_grants(role, database):
            conn.execute(statement)  # type: ignore[arg-type]
    cluster.url = postgres.url(database, user=role)  # type: ignore[attr-defined]
    cluster.write("kron.toml", settings())
    cluster.write(
        "tick.toml",
        f"""
        schedule = "* * * * * *"
        timezone = "UTC"
        shell = '{SIDE_LINE} >> {cluster.side}'
        retry = {{ attempts = 2 }}
        """,
    )
    (node,) = cluster.start("a")
    wait_for(lambda: len(cluster.side_lines()) >= 3, "three runs")
    status = node.status()
    assert status["cluster"]["database"]["reachable"] is True
    assert node.stop() == 0
    assert "Traceback" not in node.text()
    assert "permission denied" not in node.text()
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE kron_other (x int)")
        rows = conn.execute(
            "SELECT count(*) FROM kron_records WHERE node = 'a' AND outcome = 'succeeded'"
        ).fetchall()
    assert rows[0][0] >= 3


def test_claims_older_than_a_day_are_swept_but_each_jobs_newest(database: str) -> None:
    import asyncio

    import psycopg

    from kron.engine.cluster.claims import sweep
    from kron.engine.cluster.schema import migrate

    async def body() -> int:
        conn = await psycopg.AsyncConnection.connect(database, autocommit=True)
        try:
            await migrate(conn)
            await conn.execute(
                """INSERT INTO kron_claims (job, key, attempt, trigger, slot, node, run_id,
                                            claimed_at)
                   VALUES ('a', 's1', 1, 'schedule', now() - interval '3 days', 'n', 'r1',
                           now() - interval '3 days'),
                          ('a', 's2', 1, 'schedule', now() - interval '2 days', 'n', 'r2',
                           now() - interval '2 days'),
                          ('a', 's3', 1, 'schedule', now() - interval '1 hour', 'n', 'r3',
                           now() - interval '1 hour'),
                          ('b', 's1', 1, 'schedule', now() - interval '3 days', 'n', 'r4',
                           now() - interval '3 days')"""
            )
            return await sweep(conn)
        finally:
            await conn.close()

    assert asyncio.run(body()) == 2
    with psycopg.connect(database) as conn:
        left = conn.execute("SELECT run_id FROM kron_claims ORDER BY run_id").fetchall()
    assert left == [("r3",), ("r4",)]


@pytest.mark.timeout(90)
def test_output_with_nul_bytes_reaches_the_clusters_table_and_frees_the_lease(
    cluster: Cluster,
) -> None:
    cluster.write("kron.toml", settings())
    cluster.write(
        "nul.toml",
        """
        schedule = "* * * * * *"
        timezone = "UTC"
        shell = "printf 'a\\\\000b'"
        """,
    )
    (node,) = cluster.start("a")
    rows = wait_for(
        lambda: (
            len(
                found := cluster.rows(
                    "SELECT line->>'stdout' FROM kron_records WHERE job = 'nul' AND outcome = 'succeeded'"
                )
            )
            >= 3
            and found
        ),
        "three runs in the table",
    )
    assert {stdout for (stdout,) in rows} == {"a\ufffdb"}
    # forbid: the next slots still ran, so each run's lease went with its record.
    skipped = cluster.rows("SELECT count(*) FROM kron_records WHERE outcome = 'skipped'")
    assert skipped == [(0,)]
    assert node.stop() == 0
    local = (node.records_dir / "nul.runs.jsonl").read_text()
    assert '"stdout":"a\\u0000b"' in local
