"""The cluster's coordinator: claims batched per instant and shared by rank, leases renewed by
the heartbeat, dead nodes' runs taken over, pauses kept in the database.

It answers the scheduler's questions (kron.engine.coordinator.Coordinator) and, once attached,
acts on it: it holds the scheduler while the database is out of reach, stops runs whose lease
was lost or that another node replaces, records a dead node's runs abandoned and resumes
their next attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from kron.engine.cluster import claims, nodes
from kron.engine.cluster.claims import SHARE_STEP_S, Pending, claim_batch, launch_key, rank
from kron.engine.cluster.database import Database, Unreachable
from kron.engine.cluster.nodes import Drift, Heartbeat, Liveness, Me, Taken
from kron.engine.cluster.stats import ClusterStats
from kron.engine.cluster.takeover import TakeOver
from kron.engine.coordinator import Claim, Grant, Peer
from kron.model.clock import Clock
from kron.model.run import Outcome, RunEnded, Trigger

__all__ = ["ClusterCoordinator", "boottime"]

log = logging.getLogger("kron.cluster")
_SLOTS = (Trigger.SCHEDULE, Trigger.CATCHUP)
# How often a `replace` claim looks whether the run it stops has gone.
_DISPLACE_POLL_S = 0.1
_SWEEP_EVERY_S = 600.0  # old claims are deleted this often (by one node)


def boottime() -> float:
    """Seconds since boot, counting a suspended machine too: a lease's age must include any
    time this process did not run."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class ClusterCoordinator:
    """Decides with the other nodes, through the database, which launches are this node's."""

    def __init__(
        self,
        db: Database,
        me: Me,
        *,
        heartbeat: timedelta,
        dead_after: timedelta,
        stats: ClusterStats,
        clock: Clock,
    ) -> None:
        self.db = db
        self.me = me
        self.stats = stats
        self.heartbeat_s = heartbeat.total_seconds()
        self.dead_after_s = dead_after.total_seconds()
        # A lease this node renewed at `t` is safe until `t + dead_after` (no node can find it
        # dead sooner); past this much, ask the database before writing.
        self._safe_s = max(self.dead_after_s - self.heartbeat_s, self.heartbeat_s)
        self._renewed_at = boottime()
        self._liveness = Liveness(self.dead_after_s)
        self._pending: dict[int, list[Pending]] = {}
        self._held: dict[str, tuple[str, str, float]] = {}  # run_id -> (job, key, since)
        self._lost: dict[str, str] = {}  # run_id -> how its lease was lost
        self._paused: set[str] = set()
        self._peers: list[Peer] = []
        self._unclaimed: dict[str, list[datetime]] = {}  # slots whose claims found no database
        self._up = asyncio.Event()
        self._up.set()
        self._watermark: datetime | None = None
        self.jobs: dict[str, str] = {}  # this node's job set: id -> config_sha
        self.digest = ""
        self.drift: dict[str, Drift] = {}  # nodes whose job set differs from this node's
        self._tasks: set[asyncio.Future[Any]] = set()
        self._beating: asyncio.Task[None] | None = None
        self._closed = False
        self.takeover = TakeOver(me.node, clock)
        db.on_down = self._down
        db.on_up = self._back

    # -- the Coordinator protocol ---------------------------------------------------------

    @property
    def node(self) -> str:
        return self.me.node

    @property
    def cluster_wide(self) -> bool:
        return True

    async def claim(self, claim: Claim) -> Grant:
        if not self.db.reachable:
            return await self._unreachable(claim)
        key = launch_key(claim, self.me.node)
        alive = [p.node for p in self._peers if p.alive and not self._liveness.dead(p.node)]
        step = rank(claim, key, self.me.node, alive or [self.me.node])
        loop = asyncio.get_running_loop()
        pending = Pending(claim=claim, key=key, answer=loop.create_future())
        batch = self._pending.setdefault(step, [])
        batch.append(pending)
        if len(batch) == 1:
            # Every claim made in this turn of the loop (one instant's slots) goes in one
            # statement; a later rank's after its step, unless its owner took them meanwhile.
            loop.call_later(step * SHARE_STEP_S, self._flush, step)
        grant = await pending.answer
        if grant.won and claim.lease and grant.holder is None:
            if claim.continues:  # the launch's lease now carries this attempt's run
                for run_id, (job, held, _) in list(self._held.items()):
                    if job == claim.job and held == key:
                        del self._held[run_id]
            self._held[claim.run_id] = (claim.job, key, time.monotonic())
        elif not grant.won and grant.why == _NO_DATABASE:
            return await self._unreachable(claim)
        if claim.continues and not grant.won and grant.why == "its lease was taken":
            self._lost.setdefault(claim.run_id, "its lease was taken while it waited to retry")
        return grant

    def _flush(self, step: int) -> None:
        batch = self._pending.pop(step, [])
        if batch:
            self._spawn(self._send(batch))

    async def _send(self, batch: list[Pending]) -> None:
        try:
            grants = await self.db.run(
                lambda conn, retried: claim_batch(conn, batch, self.me.node, retried)
            )
        except Unreachable:
            grants = [Grant(won=False, why=_NO_DATABASE)] * len(batch)
        except Exception as exc:  # a bug or a refused statement: no run, and the log says why
            log.exception("claiming %d launches failed", len(batch))
            grants = [Grant(won=False, why=f"the claim failed: {exc}")] * len(batch)
        for pending, grant in zip(batch, grants, strict=True):
            if grant.won:
                self.stats.claims_won += 1
            elif grant.why != _NO_DATABASE:
                self.stats.claims_lost += 1
            if not pending.answer.done():
                pending.answer.set_result(grant)

    async def _unreachable(self, claim: Claim) -> Grant:
        """No database: a slot is skipped now and decided by the catch-up policy when it is
        back; a manual run is refused; a trigger or a retry waits for it."""
        if claim.trigger in _SLOTS and claim.attempt == 1:
            self._unclaimed.setdefault(claim.job, []).append(claim.slot)
            return Grant(won=False, why=_NO_DATABASE)
        if claim.trigger is Trigger.MANUAL or claim.continues:
            return Grant(won=False, why=_NO_DATABASE)
        await self._up.wait()
        if self._closed:
            return Grant(won=False, why="the daemon is stopping")
        return await self.claim(claim)

    async def take_turn(
        self, claim: Claim, grant: Grant, stop: asyncio.Event, *, replace: bool
    ) -> bool:
        """Wait for the job's live run to end, asking it to stop (`replace`, recorded
        `replaced`) or not (a catch-up slot waits its turn), then take the lease."""
        key = launch_key(claim, self.me.node)
        why = f"replaced by run {claim.run_id} on node {self.me.node}" if replace else None
        holder = grant.holder
        while not stop.is_set() and not self._closed:
            if holder is not None and why is not None:
                self.takeover.stop(holder, Outcome.REPLACED, why)  # at once when it is ours
            try:
                holder = await self.db.run(
                    lambda conn, _: claims.take_or_wait(conn, claim, key, self.me.node, why)
                )
            except Unreachable:
                await self._up.wait()
                continue
            if holder is None:
                self._held[claim.run_id] = (claim.job, key, time.monotonic())
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _DISPLACE_POLL_S)
        return False

    async def confirm(self, run_id: str) -> str | None:
        lost = self._lost.get(run_id)
        if lost is not None or run_id not in self._held:
            return lost
        if boottime() - self._renewed_at < self._safe_s:
            return None  # renewed recently enough that no node can have taken it
        job, key, _ = self._held[run_id]
        try:
            mine = await self.db.run(
                lambda conn, _: claims.still_held(conn, job, key, self.me.node)
            )
        except Unreachable:
            return None  # the database decides when the record reaches it (kron_records.late)
        if not mine:
            self._lost[run_id] = self._lost_why()
            return self._lost[run_id]
        return None

    def lease_of(self, run_id: str) -> str | None:
        """The key of the launch whose lease this node holds for the run, if it does."""
        held = self._held.get(run_id)
        return held[1] if held is not None else None

    def record_once(self, ended: RunEnded, write: Callable[[RunEnded], None]) -> None:
        claim = Claim(
            job=ended.job,
            slot=ended.slot,
            trigger=ended.trigger,
            attempt=ended.attempt,
            upstream=ended.upstream,
            run_id=ended.run_id,
            config_sha=ended.config_sha,
            lease=False,
        )

        async def claimed() -> None:
            if (await self.claim(claim)).won:
                write(ended)

        self._spawn(claimed())

    def hold(self, run_id: str) -> None:
        pass  # the lease was taken with the claim

    def release(self, run_id: str) -> None:
        if run_id in self._held:
            self.takeover.released(run_id)

    def finish(self, run_id: str) -> None:
        if self._held.pop(run_id, None) is not None:
            self.takeover.finished(run_id)
        self._lost.pop(run_id, None)

    def is_paused(self, job_id: str) -> bool:
        return job_id in self._paused

    def set_paused(self, job_id: str, paused: bool) -> None:
        (self._paused.add if paused else self._paused.discard)(job_id)
        self.takeover.writing_pause(job_id, self._spawn(self._store_pause(job_id, paused)))

    async def _store_pause(self, job_id: str, paused: bool) -> None:
        while True:
            try:
                await self.db.run(
                    lambda conn, _: nodes.store_pause(conn, job_id, paused, self.me.node)
                )
            except Unreachable:
                await self._up.wait()
                if self._closed:
                    return
                continue
            return

    def peers(self) -> list[Peer]:
        mine = [p for p in self._peers if p.node == self.me.node]
        others = [p for p in self._peers if p.node != self.me.node]
        return mine + others

    def dead(self, node: str) -> bool:
        return self._liveness.dead(node)

    def close(self) -> None:
        self._closed = True
        self._up.set()  # waiters see _closed
        if self._beating is not None:
            self._beating.cancel()

    # -- starting and the heartbeat -------------------------------------------------------

    async def join(self, jobs: Mapping[str, str]) -> list[Taken]:
        """Take the node's name, and the launches an earlier daemon of it left (a crash)."""
        self.jobs, self.digest = dict(jobs), nodes.job_set_digest(jobs)
        await self.db.run(
            lambda conn, _: nodes.register(
                conn, self.me, dead_after_s=self.dead_after_s, jobs=jobs
            ),
            retry=False,
        )
        self._renewed_at = boottime()
        left = await self.db.run(lambda conn, _: nodes.reap_own(conn, self.me.node))
        await self._beat()
        return left

    def start(self) -> None:
        """Beat every heartbeat from now on; the first reads every job's newest outcome."""
        self._watermark = None
        self._beating = asyncio.ensure_future(self._beat_forever())

    async def publish(self, jobs: Mapping[str, str]) -> None:
        """Tell the other nodes this node's job set (after a reload): drift shows in status."""
        digest = nodes.job_set_digest(jobs)
        self.jobs, self.digest = dict(jobs), digest
        with contextlib.suppress(Unreachable):
            await self.db.run(lambda conn, _: nodes.publish(conn, self.me, digest, jobs))

    async def leave(self) -> None:
        """A clean stop: the node left; it is not dead."""
        with contextlib.suppress(Unreachable):
            await self.db.run(lambda conn, _: nodes.leave(conn, self.me), retry=False)

    async def _beat_forever(self) -> None:
        last = time.monotonic()
        swept = last
        while not self._closed:
            await asyncio.sleep(max(0.0, self.heartbeat_s - (time.monotonic() - last)))
            if time.monotonic() - last > 2 * self.heartbeat_s:
                # This node did not run for a while (frozen, a stalled host): it was not
                # watching, so no other node's silence counts from before now.
                self._liveness.watch_anew()
            last = time.monotonic()
            if not self.db.reachable:
                continue
            try:
                await self._beat()
                if time.monotonic() - swept > _SWEEP_EVERY_S:
                    swept = time.monotonic()
                    await self.db.run(lambda conn, _: claims.sweep(conn))
            except Unreachable:
                continue
            except Exception:
                log.exception("the heartbeat failed; trying again in %.3gs", self.heartbeat_s)

    async def _beat(self) -> None:
        sent = boottime()
        sent_mono = time.monotonic()
        running = sum(1 for _ in self._held)
        hb = await self.db.run(lambda conn, _: nodes.beat(conn, self.me, self._watermark, running))
        if not hb.still_mine:
            self.takeover.name_taken(self.me.node)
            return
        self._renewed_at = sent
        self._watermark = hb.watermark
        self._peers = hb.peers
        for peer in hb.peers:
            if peer.node != self.me.node:
                self._liveness.observe(peer.node, hb.heartbeats[peer.node])
        self._check_leases(hb, sent_mono)
        await self._compare(hb.peers)
        writing = self.takeover.writing()
        self._paused = {j for j in hb.paused if j not in writing} | (self._paused & writing)
        self.takeover.sync(self._paused, hb.last)
        for peer in hb.peers:
            node = peer.node
            if node == self.me.node or node in hb.left or not self._liveness.dead(node):
                continue
            taken = await self.db.run(functools.partial(_reap, node, hb.heartbeats[node]))
            if taken:
                self.takeover.dead_node_runs(node, peer.silent_s, taken)

    async def _compare(self, peers: list[Peer]) -> None:
        """Which jobs each node with another job-set digest runs differently (read once per
        digest a node publishes)."""
        drift = {}
        for peer in peers:
            if peer.node == self.me.node or not peer.alive or peer.digest == self.digest:
                continue
            known = self.drift.get(peer.node)
            if known is None or known.digest != peer.digest or known.against != self.digest:
                theirs = await self.db.run(functools.partial(_jobs_of, peer.node))
                known = Drift.between(self.jobs, theirs, peer.digest, self.digest)
            drift[peer.node] = known
        self.drift = drift

    def _check_leases(self, hb: Heartbeat, sent: float) -> None:
        for run_id, (job, key, since) in list(self._held.items()):
            if since >= sent:
                continue  # claimed after the heartbeat read the table
            live = hb.live.get((job, key))
            if live is None:
                why = self._lost_why()
                if run_id not in self._lost:
                    self._lost[run_id] = why
                    self.takeover.stop(run_id, Outcome.ABANDONED, why)
            elif live[1] is not None:
                self.takeover.stop(run_id, Outcome.REPLACED, live[1])

    def _lost_why(self) -> str:
        return (
            f"node {self.me.node} lost the run's lease: it was silent for longer than "
            f"dead_after ({self.dead_after_s:g}s; frozen or cut off) and a surviving node "
            "recorded the run abandoned"
        )

    # -- the database out of reach and back ----------------------------------------------

    def _down(self) -> None:
        self._up.clear()
        self.takeover.hold()

    def _back(self) -> None:
        self._liveness.watch_anew()
        unclaimed, self._unclaimed = self._unclaimed, {}
        self._up.set()
        self.takeover.unhold(unclaimed)

    def _spawn(self, work: Any) -> asyncio.Future[Any]:
        task: asyncio.Future[Any] = asyncio.ensure_future(work)
        self._tasks.add(task)  # keep a reference: the loop holds tasks only weakly
        task.add_done_callback(self._tasks.discard)
        return task


_NO_DATABASE = "the cluster database is out of reach"


async def _reap(node: str, heartbeat_at: datetime, conn: Any, _: bool) -> list[Taken]:
    return await nodes.reap(conn, node, heartbeat_at)


async def _jobs_of(node: str, conn: Any, _: bool) -> dict[str, str]:
    return await nodes.jobs_of(conn, node)
