"""Cluster mode, measured: what a claim costs per fire, and a 500-job burst on 1 node and on 3.

python bench/cluster.py [--jobs 500] [--nodes 3] [--rounds 20]

Runs with the interpreter that starts it, which needs kron installed with its `cluster` extra
(the repository's own venv: `pip install -e '.[dev]'`), and Debian's PostgreSQL (a throwaway
server in a temporary folder, as the tests start one: tests/pg.py). Nodes are real `kron
daemon` processes on this host, each with its own copy of the job files (tests/cluster_rig.py).
Prints one table; progress goes to stderr.

- claim overhead: one instant's claims, made together as the scheduler makes them, in one
  node's process against the database: wall time per batch of N (and per fire), and one claim
  alone; beside LocalCoordinator's, which grants everything in memory.
- burst: N jobs on the same second, `echo $(date +%s.%N) ...` each; latency of each start
  after the slot by the jobs' own clock: p50, p99, and when the last one started; on 1 node
  and on `--nodes` nodes, each on a fresh database.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO))

from harness import percentile, say  # noqa: E402

from tests.cluster_rig import Cluster, settings, wait_for  # noqa: E402
from tests.pg import TempPostgres, find_bin  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500, help="jobs per burst (default 500)")
    parser.add_argument("--nodes", type=int, default=3, help="nodes of the second burst")
    parser.add_argument("--rounds", type=int, default=20, help="claim batches measured")
    return parser.parse_args(argv)


# -- claim overhead ----------------------------------------------------------------------------


async def claim_overhead(url: str, jobs: int, rounds: int) -> dict[str, float]:
    """Milliseconds: a batch of `jobs` claims of one instant, per fire, one claim alone; and
    LocalCoordinator's batch for comparison."""
    from kron.engine.cluster.coordinator import ClusterCoordinator
    from kron.engine.cluster.database import Database
    from kron.engine.cluster.nodes import Me
    from kron.engine.cluster.schema import migrate
    from kron.engine.cluster.stats import ClusterStats
    from kron.engine.coordinator import Claim, LocalCoordinator
    from kron.engine.state import State
    from kron.model.clock import RealClock
    from kron.model.run import Trigger, new_run_id

    stats = ClusterStats("bench")
    db = Database(url, node="bench", heartbeat_s=2.0, timeout_s=5.0, stats=stats)
    conn = await db.connect()
    await migrate(conn)
    await conn.close()
    await db.open()
    me = Me(node="bench", instance="bench", host="bench", pid=0, boot_id="bench")
    coordinator = ClusterCoordinator(
        db,
        me,
        heartbeat=timedelta(seconds=2),
        dead_after=timedelta(seconds=10),
        stats=stats,
        clock=RealClock(),
    )
    await coordinator.join({})
    start = datetime(2030, 1, 1, tzinfo=UTC)

    def claims(slot: datetime, count: int) -> list[Claim]:
        return [
            Claim(
                job=f"job-{i:04d}",
                slot=slot,
                trigger=Trigger.SCHEDULE,
                run_id=new_run_id(),
                exclusive=True,
            )
            for i in range(count)
        ]

    async def batch(coordinator: object, slot: datetime, count: int) -> float:
        made = claims(slot, count)
        began = time.perf_counter()
        grants = await asyncio.gather(*(coordinator.claim(c) for c in made))  # type: ignore[attr-defined]
        took = time.perf_counter() - began
        assert all(g.won for g in grants)
        for claim in made:  # the runs end: their leases go, as the record writer ends them
            coordinator.finish(claim.run_id)  # type: ignore[attr-defined]
        return took

    cluster_batches, single, local_batches = [], [], []
    local = LocalCoordinator(State(path=Path(tempfile.mkdtemp()) / "state.json"))
    for i in range(rounds):
        slot = start + timedelta(seconds=i)
        cluster_batches.append(await batch(coordinator, slot, jobs))
        await db.run(lambda conn, _: conn.execute("DELETE FROM kron_live"))
        single.append(await batch(coordinator, slot + timedelta(hours=1), 1))
        await db.run(lambda conn, _: conn.execute("DELETE FROM kron_live"))
        local_batches.append(await batch(local, slot, jobs))
    coordinator.close()
    await db.close()
    batch_ms = statistics.median(cluster_batches) * 1000
    return {
        "batch_ms": batch_ms,
        "per_fire_ms": batch_ms / jobs,
        "single_ms": statistics.median(single) * 1000,
        "local_batch_ms": statistics.median(local_batches) * 1000,
    }


# -- bursts ------------------------------------------------------------------------------------


def burst(server: TempPostgres, nodes: int, jobs: int, name: str) -> dict[str, float]:
    """Start `nodes` nodes with `jobs` jobs on one second about 20 s ahead; the starts."""
    root = Path(tempfile.mkdtemp(prefix=f"kron-bench-{name}-"))
    rig = Cluster(root, server.fresh_database(f"bench_{name}"))
    try:
        rig.write("kron.toml", settings(heartbeat="2s", dead_after="10s"))
        slot = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=20 + 2 * nodes)
        expr = f"{slot.second} {slot.minute} {slot.hour} * * *"
        for i in range(jobs):
            rig.write(
                f"burst/j{i:04d}.toml",
                f'schedule = "{expr}"\ntimezone = "UTC"\n'
                f"shell = 'echo \"$(date +%s.%N) $KRON_JOB $KRON_NODE\" >> {rig.side}'\n",
            )
        say(f"burst on {nodes} node(s): {jobs} jobs at {slot:%H:%M:%S}")
        rig.start(*(f"n{i}" for i in range(nodes)))
        if datetime.now(UTC) > slot - timedelta(seconds=2):
            sys.exit("the nodes took too long to start; the slot passed before they were ready")
        wait_for(
            lambda: len(rig.side_lines()) >= jobs,
            f"{jobs} starts",
            timeout=(slot - datetime.now(UTC)).total_seconds() + 120,
        )
        time.sleep(2)  # a double fire would show now
        lines = rig.side_lines()
        for node in rig.nodes.values():
            node.stop()
        at = slot.timestamp()
        latencies = [float(f[0]) - at for f in lines]
        by_node = collections.Counter(f[2] for f in lines)
        return {
            "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000,
            "all_ms": max(latencies) * 1000,
            "distinct": len({f[1] for f in lines}),
            "starts": len(lines),
            "share": min(by_node.values()) / max(by_node.values()),
        }
    finally:
        rig.close()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    found = find_bin()
    if found is None:
        sys.exit("PostgreSQL is not installed (apt-get install postgresql)")
    server = TempPostgres(found)
    server.start()
    server.wait_ready()
    try:
        say(f"claim overhead: {args.rounds} batches of {args.jobs} claims")
        cost = asyncio.run(
            claim_overhead(server.fresh_database("bench_claims"), args.jobs, args.rounds)
        )
        one = burst(server, 1, args.jobs, "one")
        many = burst(server, args.nodes, args.jobs, "many")
    finally:
        server.destroy()
    print(f"claims of one instant, {args.jobs} jobs (median of {args.rounds}):")
    per_fire = f"({cost['per_fire_ms']:.3f} ms per fire)"
    print(f"  cluster batch          {cost['batch_ms']:9.2f} ms  {per_fire}")
    print(f"  cluster, one claim     {cost['single_ms']:9.2f} ms")
    print(f"  one host (in memory)   {cost['local_batch_ms']:9.2f} ms")
    print()
    print(f"burst of {args.jobs} jobs on one second     1 node   {args.nodes} nodes")
    for key, label in (
        ("p50_ms", "start latency p50 (ms)"),
        ("p99_ms", "start latency p99 (ms)"),
        ("all_ms", "all started after (ms)"),
    ):
        print(f"  {label:<30} {one[key]:8.0f} {many[key]:9.0f}")
    print(
        f"  {'distinct jobs / starts':<30} {one['distinct']:.0f}/{one['starts']:.0f}"
        f" {many['distinct']:>5.0f}/{many['starts']:.0f}"
    )
    print(f"  {'smallest / largest node share':<30} {'-':>8} {many['share']:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
