"""Several real `kron daemon` nodes on one real PostgreSQL: every slot runs exactly once in the
cluster, whatever happens to a node, to the database or to a clock.

The jobs count for themselves: each run appends a line to a side file shared by all nodes
(tests/cluster_rig.py), and the cluster's records are read from its table.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster_rig import (
    FAKETIME,
    SIDE_LINE,
    Cluster,
    Node,
    every_second,
    settings,
    wait_for,
)
from tests.pg import TempPostgres


@pytest.fixture
def cluster(tmp_path: Path, database: str) -> Iterator[Cluster]:
    rig = Cluster(tmp_path, database)
    try:
        yield rig
    finally:
        rig.close()


def _tick_jobs(rig: Cluster, count: int, *, prefix: str = "tick", extra: str = "") -> list[str]:
    """`count` jobs firing every second, each writing a side line per run."""
    names = [f"{prefix}-{i:02d}" for i in range(count)]
    for name in names:
        rig.write(
            f"{name}.toml",
            f"""
            schedule = "* * * * * *"
            timezone = "UTC"
            shell = '{SIDE_LINE} >> {rig.side}'
            {extra}
            """,
        )
    return names


def _exactly_once(rig: Cluster, jobs: list[str], slots: list[str]) -> None:
    """Every slot of every job: one run by the side file, one result in the table."""
    counts = rig.side_counts()
    results = rig.results()
    doubled = {key: n for key, n in counts.items() if n > 1}
    assert doubled == {}
    missing = [(j, s) for j in jobs for s in slots if counts[(j, s)] != 1]
    assert missing == []
    wrong = {(j, s): results.get((j, s)) for j in jobs for s in slots}
    assert {k: v for k, v in wrong.items() if v != ["succeeded"]} == {}


@pytest.mark.timeout(240)
def test_three_nodes_run_each_second_of_fifty_jobs_exactly_once_for_a_minute(
    cluster: Cluster,
) -> None:
    cluster.write("kron.toml", settings())
    jobs = _tick_jobs(cluster, 50)
    cluster.start("a", "b", "c")
    begin = time.time()
    time.sleep(60)
    end = time.time()
    for node in cluster.nodes.values():
        assert node.stop() == 0, node.text()
    slots = every_second(begin + 1, end - 2)
    assert len(slots) >= 55
    _exactly_once(cluster, jobs, slots)
    by_node = collections.Counter(fields[2] for fields in cluster.side_lines())
    # The work is shared: each node ran a good part of it (rendezvous ranks: about a third).
    assert sorted(by_node) == ["a", "b", "c"]
    assert min(by_node.values()) > len(jobs) * len(slots) / 10
    assert cluster.rows("SELECT count(*) FROM kron_live") == [(0,)]
    assert sorted(cluster.rows("SELECT node, left_at IS NOT NULL FROM kron_nodes")) == [
        ("a", True),
        ("b", True),
        ("c", True),
    ]
    for node in cluster.nodes.values():
        assert "Traceback" not in node.text()


def _slot_records(rig: Cluster, jobs: list[str], slots: list[str]) -> dict[str, list[str]]:
    """Slots that do not have exactly one result, with what they have."""
    results = rig.results()
    return {
        f"{j} {s}": results.get((j, s), [])
        for j in jobs
        for s in slots
        if len(results.get((j, s), [])) != 1
    }


def _record_of(rig: Cluster, run_id: str, outcome: str) -> list[dict[str, object]]:
    return [
        line
        for (line,) in rig.rows(
            "SELECT line FROM kron_records WHERE run_id = %s AND outcome = %s AND NOT late",
            run_id,
            outcome,
        )
    ]


@pytest.mark.timeout(180)
def test_a_node_killed_mid_run_is_recorded_abandoned_by_a_survivor_who_runs_the_next_attempt(
    cluster: Cluster,
) -> None:
    cluster.write("kron.toml", settings())
    jobs = _tick_jobs(cluster, 10)
    cluster.write(
        "long.toml",
        f"""
        schedule = "@manual"
        shell = '{SIDE_LINE} >> {cluster.side}; exec sleep 60'
        retry = {{ attempts = 2, delay = "1s" }}
        """,
    )
    a, b, c = cluster.start("a", "b", "c")
    begin = time.time()
    ran = b.cli("run", "long", "--json")
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]
    wait_for(
        lambda: any(f[0] == "long" and f[2] == "b" for f in cluster.side_lines()),
        "the long run to start on b",
    )
    time.sleep(2)
    killed = time.monotonic()
    b.kill()
    abandoned = wait_for(lambda: _record_of(cluster, run_id, "abandoned"), "the abandoned record")
    took = time.monotonic() - killed
    # dead_after (3 s) + heartbeat (0.5 s), and room for a loaded machine.
    assert took < 3.5 + 2.0
    record = abandoned[0]
    assert record["dead_node"] == "b"
    assert record["node"] in ("a", "c")
    assert "node b died" in str(record["error"])
    second = wait_for(
        lambda: [f for f in cluster.side_lines() if f[0] == "long" and f[4] == "2"],
        "the next attempt on a survivor",
    )
    assert [(f[2] in ("a", "c"), f[3]) for f in second] == [(True, "manual")]
    time.sleep(6)
    end = time.time()
    for node in (a, c):
        assert node.stop() == 0, node.text()
    slots = every_second(begin + 1, end - 2)
    assert _slot_records(cluster, jobs, slots) == {}
    counts = cluster.side_counts()
    assert {k: n for k, n in counts.items() if n > 1 and k[0] != "long"} == {}
    results = cluster.results()
    assert [
        (j, s)
        for j in jobs
        for s in slots
        if results[(j, s)] == ["succeeded"] and counts[(j, s)] != 1
    ] == []
    # Two launches of `long` in the side file: attempt 1 on b, attempt 2 on a survivor.
    assert sorted(f[4] for f in cluster.side_lines() if f[0] == "long") == ["1", "2"]


def _listed(node: Node) -> dict[str, dict[str, object]]:
    done = node.cli("list", "--json")
    assert done.returncode == 0, done.stderr
    return {job["id"]: job for job in json.loads(done.stdout)}


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.timeout(180)
def test_a_frozen_node_that_wakes_after_losing_its_lease_stops_its_run_and_its_record_is_late(
    cluster: Cluster, tmp_path: Path
) -> None:
    pid_file = tmp_path / "long.pid"
    cluster.write("kron.toml", settings())
    jobs = _tick_jobs(cluster, 10)
    cluster.write(
        "long.toml",
        f"""
        schedule = "@manual"
        shell = 'echo $$ > {pid_file}; {SIDE_LINE} >> {cluster.side}; exec sleep 60'
        """,
    )
    a, b, c = cluster.start("a", "b", "c")
    begin = time.time()
    ran = b.cli("run", "long", "--json")
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), "the long run's pid")
    child = int(pid_file.read_text())
    b.signal(signal.SIGSTOP)
    abandoned = wait_for(lambda: _record_of(cluster, run_id, "abandoned"), "the abandoned record")
    assert abandoned[0]["dead_node"] == "b"
    time.sleep(3)  # slots go on without b, claimed by a and c
    assert _pid_alive(child)  # its processes are not frozen with it
    b.signal(signal.SIGCONT)
    wait_for(lambda: not _pid_alive(child), "b to stop the run it lost", timeout=15)
    late = wait_for(
        lambda: cluster.rows(
            "SELECT node, outcome, line FROM kron_records WHERE run_id = %s AND late", run_id
        ),
        "b's late record",
    )
    assert [(node, outcome) for node, outcome, _ in late] == [("b", "abandoned")]
    assert late[0][2]["late"] is True
    assert "lost the run's lease" in late[0][2]["lease_lost"]
    # The run's result stays the survivor's record, read from any node.
    shown = a.cli("show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    shown_record = json.loads(shown.stdout)
    assert (shown_record["outcome"], shown_record["node"]) == ("abandoned", abandoned[0]["node"])
    time.sleep(4)  # b fires again: only slots it wins
    end = time.time()
    for node in (a, b, c):
        assert node.stop() == 0, node.text()
    slots = every_second(begin + 1, end - 2)
    assert _slot_records(cluster, jobs, slots) == {}
    counts = cluster.side_counts()
    assert {k: n for k, n in counts.items() if n > 1} == {}
    assert "lost the run's lease" in b.text()


def _ended_here(records_dir: Path, job: str) -> int:
    """How many runs of `job` this node's own records file holds an end for."""
    path = records_dir / f"{job}.runs.jsonl"
    if not path.exists():
        return 0
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return sum(1 for line in lines if line.get("outcome") not in (None, "started"))


@pytest.mark.timeout(240)
def test_cut_connections_and_a_database_restart_never_double_a_slot_and_catch_up_once(
    cluster: Cluster, postgres: TempPostgres
) -> None:
    cluster.write("kron.toml", settings())
    skip = _tick_jobs(cluster, 5, prefix="none")  # catchup none: outage slots recorded missed
    redo = _tick_jobs(cluster, 5, prefix="all", extra='catchup = "all"\ncatchup_max = 60')
    a, b, c = cluster.start("a", "b", "c")
    begin = time.time()
    time.sleep(3)
    for _ in range(3):
        cut = cluster.rows(
            """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
               WHERE application_name LIKE 'kron %'"""
        )
        assert cut
        time.sleep(1)
    time.sleep(2)
    down = time.time()
    postgres.stop("fast")
    try:
        wait_for(
            lambda: all(not n.status()["cluster"]["database"]["reachable"] for n in (a, b, c)),
            "every node to say the database is out of reach",
        )
        refused = a.cli("pause", "none-00")
        assert refused.returncode == 1
        assert refused.stderr == (
            "kron: the cluster database is out of reach: a pause or resume cannot be stored "
            "now (kron status)\n"
        )
        # Which slots node a won is the luck of three nodes racing: ask of a job it ran.
        ran_here = {job: _ended_here(a.records_dir, job) for job in skip}
        job, ended = max(ran_here.items(), key=lambda item: item[1])
        assert ended > 0, ran_here  # 5 jobs every second for 8 s: node a ran some of them
        local = a.cli("history", job, "-n", "2", "--records-dir", str(a.records_dir))
        assert local.returncode == 0
        assert local.stderr.startswith("note: the cluster database is out of reach (")
        # This node's own records are still read: the header, then its newest runs.
        assert len(local.stdout.splitlines()) == 1 + min(2, ended)
        time.sleep(max(0.0, down + 20 - time.time()))
    finally:
        postgres.start()
    up = time.time()
    wait_for(
        lambda: all(n.status()["cluster"]["database"]["reachable"] for n in (a, b, c)),
        "every node to reach the database again",
    )
    wait_for(
        lambda: any(f[1] >= every_second(up + 3, up + 4)[0] for f in cluster.side_lines()),
        "slots to run again",
    )
    time.sleep(4)
    end = time.time()
    for node in (a, b, c):
        assert node.stop() == 0, node.text()
    slots = every_second(begin + 1, end - 2)
    counts = cluster.side_counts()
    assert {k: n for k, n in counts.items() if n > 1} == {}
    assert _slot_records(cluster, skip + redo, slots) == {}
    outage = every_second(down + 2, up - 2)
    results = cluster.results()
    assert {results[(j, s)][0] for j in skip for s in outage} == {"missed"}
    # catchup = "all": every slot of the outage ran once, caught up when the database was back
    # (a slot that came while those ran was skipped, as on one host: concurrency = forbid).
    assert [(j, s) for j in redo for s in outage if counts[(j, s)] != 1] == []
    assert {results[(j, s)][0] for j in redo for s in outage} == {"succeeded"}
    caught = {f[3] for f in cluster.side_lines() if f[0] in redo and f[1] in outage}
    assert caught == {"catchup"}
    said = a.text()
    assert said.count("the cluster database is out of reach (") >= 1
    assert "Traceback" not in said + b.text() + c.text()


def _faketime() -> dict[str, str]:
    """libfaketime (Debian's faketime) puts a node's wall clock 2 s ahead; its monotonic clock
    stays true, as NTP's slew would leave it."""
    if not FAKETIME.exists():
        message = f"{FAKETIME} is missing (apt-get install faketime)"
        if os.environ.get("KRON_REQUIRE_POSTGRES") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return {
        "LD_PRELOAD": str(FAKETIME),
        "FAKETIME": "+2s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_NO_CACHE": "1",
    }


@pytest.mark.timeout(180)
def test_a_node_whose_clock_is_two_seconds_ahead_never_doubles_a_slot(cluster: Cluster) -> None:
    cluster.write("kron.toml", settings())
    jobs = _tick_jobs(cluster, 10)
    a, b = cluster.start("a", "b")
    ahead = cluster.node("c", **_faketime()).start()
    ahead.wait_started()
    begin = time.time()
    time.sleep(15)
    end = time.time()
    for node in (a, b, ahead):
        assert node.stop() == 0, node.text()
    slots = every_second(begin + 3, end - 3)
    _exactly_once(cluster, jobs, slots)
    ran_on = collections.Counter(f[2] for f in cluster.side_lines())
    assert ran_on["c"] > 0  # the node ahead ran slots too, and none twice


@pytest.mark.timeout(180)
def test_forbid_holds_across_nodes_and_a_pause_on_one_node_stops_the_job_on_all(
    cluster: Cluster, tmp_path: Path
) -> None:
    spans = tmp_path / "spans.txt"
    cluster.write("kron.toml", settings())
    cluster.write(
        "hold.toml",
        f"""
        schedule = "* * * * * *"
        timezone = "UTC"
        shell = 'echo "start $(date +%s.%N) $KRON_RUN_ID" >> {spans}; sleep 2.5; echo "end $(date +%s.%N) $KRON_RUN_ID" >> {spans}'
        """,
    )
    jobs = _tick_jobs(cluster, 3)
    a, b, c = cluster.start("a", "b", "c")
    begin = time.time()
    time.sleep(12)
    paused = a.cli("pause", "tick-00")
    assert paused.returncode == 0, paused.stderr
    pause_done = time.time()
    wait_for(lambda: _listed(b)["tick-00"]["paused"], "node b to list tick-00 paused")
    time.sleep(4)
    resumed = c.cli("resume", "tick-00")
    assert resumed.returncode == 0, resumed.stderr
    resume_done = time.time()
    time.sleep(4)
    end = time.time()
    for node in (a, b, c):
        assert node.stop() == 0, node.text()
    # forbid: the runs of `hold`, on whichever node, never overlap. A run still sleeping when
    # the nodes stop one after another is stopped without its "end" line, and the next node
    # may start another meanwhile: the runs that began 3 s before the stops all ended.
    runs: dict[str, dict[str, float]] = collections.defaultdict(dict)
    for what, at, run_id in (line.split() for line in spans.read_text().splitlines()):
        runs[run_id][what] = float(at)
    spans_before = sorted((r["start"], r.get("end")) for r in runs.values() if r["start"] < end - 3)
    assert len(spans_before) >= 3
    assert [e for _, e in spans_before if e is None] == []
    assert all(e1 <= s2 for (_, e1), (s2, _) in itertools.pairwise(spans_before)), spans_before
    last_end = max(e for _, e in spans_before if e is not None)
    assert all(r["start"] >= last_end for r in runs.values() if r["start"] >= end - 3)
    slots = every_second(begin + 1, end - 4)
    assert len(slots) >= 15
    assert _slot_records(cluster, ["hold"], slots) == {}
    skipped = cluster.rows(
        """SELECT node, line->>'error' FROM kron_records
           WHERE job = 'hold' AND outcome = 'skipped'"""
    )
    # Skipped on one node because of a run on another: the claim sees every node's runs.
    assert any(f"on node {node}" not in error for node, error in skipped)
    # pause: no slot of tick-00 after the pause was stored, until the resume.
    ran = sorted(f[1] for f in cluster.side_lines() if f[0] == "tick-00")
    quiet = every_second(pause_done, resume_done - 1)
    assert [s for s in ran if s in quiet] == []
    assert any(s > every_second(resume_done + 1, resume_done + 2)[0] for s in ran)
    assert _slot_records(cluster, jobs[1:], every_second(begin + 1, end - 2)) == {}


@pytest.mark.timeout(120)
def test_replace_stops_the_run_on_another_node_before_the_new_one_starts(
    cluster: Cluster, tmp_path: Path
) -> None:
    spans = tmp_path / "spans.txt"
    cluster.write("kron.toml", settings())
    cluster.write(
        "swap.toml",
        f"""
        schedule = "*/2 * * * * *"
        timezone = "UTC"
        concurrency = "replace"
        kill_grace = "2s"
        shell = '''
        echo "start $(date +%s.%N) $KRON_NODE $KRON_RUN_ID" >> {spans}
        trap 'echo "end $(date +%s.%N) $KRON_NODE $KRON_RUN_ID" >> {spans}; exit 0' TERM
        sleep 30 & wait
        '''
        """,
    )
    nodes = cluster.start("a", "b", "c")
    wait_for(lambda: spans.exists() and spans.read_text().count("start") >= 6, "six runs of swap")
    for node in nodes:
        assert node.stop() == 0, node.text()
    events = [line.split() for line in spans.read_text().splitlines()]
    starts = sorted(float(e[1]) for e in events if e[0] == "start")
    ends = sorted(float(e[1]) for e in events if e[0] == "end")
    assert all(ends[i] <= starts[i + 1] for i in range(len(starts) - 1))
    node_of = {e[3]: e[2] for e in events if e[0] == "start"}
    replaced = cluster.rows(
        """SELECT run_id, line->>'slot' FROM kron_records
           WHERE job = 'swap' AND outcome = 'replaced' AND NOT late ORDER BY line->>'slot'"""
    )
    assert len(replaced) >= 4
    started = dict(
        cluster.rows(
            "SELECT line->>'slot', run_id FROM kron_records WHERE job = 'swap' AND outcome = 'started'"
        )
    )
    # The run that replaced each one ran on a node of its own: at least once another node.
    pairs = []
    for run_id, slot in replaced:
        following = [s for s in started if s > slot]
        if following:
            pairs.append((node_of[run_id], node_of[started[min(following)]]))
    assert any(old != new for old, new in pairs)


@pytest.mark.timeout(120)
def test_a_node_restarted_at_once_after_kill_9_takes_back_its_runs_and_stops_their_processes(
    cluster: Cluster, tmp_path: Path
) -> None:
    pid_file = tmp_path / "long.pid"
    cluster.write("kron.toml", settings(dead_after="30s"))
    cluster.write(
        "long.toml",
        f"""
        schedule = "@manual"
        shell = 'echo $$ > {pid_file}; {SIDE_LINE} >> {cluster.side}; exec sleep 60'
        retry = {{ attempts = 2, delay = "1s" }}
        """,
    )
    (first,) = cluster.start("a")
    ran = first.cli("run", "long", "--json")
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), "the long run's pid")
    child = int(pid_file.read_text())
    first.kill()
    pid_file.unlink()
    # Well within dead_after: no other node would take the run; the node itself does.
    again = first.start()
    again.wait_started()
    wait_for(lambda: not _pid_alive(child), "the orphaned run to be stopped")
    abandoned = wait_for(lambda: _record_of(cluster, run_id, "abandoned"), "the abandoned record")
    assert (abandoned[0]["node"], abandoned[0].get("late")) == ("a", None)
    assert abandoned[0]["dead_node"] == "a"
    wait_for(
        lambda: [f for f in cluster.side_lines() if f[0] == "long" and f[4] == "2"],
        "the next attempt",
    )
    assert again.stop() == 0
    assert cluster.rows("SELECT count(*) FROM kron_live") == [(0,)]
