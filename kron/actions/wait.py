"""Waiting for a condition before the action fires: probe, back off from dead targets, poll.

The wait's deadline is real monotonic time, not the scheduler's clock: its probes are real I/O
that a fake clock cannot speed up. Tests inject `clock` and `sleep` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from kron.actions.base import Interrupted, connection_reason, until_stopped, working_dir
from kron.actions.process import run_process
from kron.model.conditions import (
    AllOf,
    AnyOf,
    CmdProbe,
    Condition,
    DockerProbe,
    FileProbe,
    HttpProbe,
    KubeProbe,
    Not,
    Probe,
    TcpProbe,
    parse_condition,
)
from kron.model.job import Job, WaitSpec
from kron.model.units import format_duration

__all__ = ["BREAKERS", "Breakers", "WaitResult", "wait_until"]

log = logging.getLogger("kron.wait")

_MIN_EVERY_S = 0.01  # `every = "0s"` must not spin the loop
_PROBE_KILL_GRACE = timedelta(seconds=1)


# -- the circuit breaker ------------------------------------------------------------------


@dataclass(kw_only=True, slots=True)
class _Trips:
    failures: int = 0
    open_until: float = 0.0


class Breakers:
    """A circuit breaker per target, so that a dead service is not hammered.

    After `threshold` probes in a row that could not reach a target (refused, no answer, engine
    down) the target is not probed for a cool-down: `base`, doubling with each further failure,
    at most `cap`. Then one probe is let through; reaching the target closes the breaker. A
    target that answers "not yet" (HTTP 503, a container still starting) is reachable and polled
    at the wait's own pace. One instance is shared by every wait in the process.
    """

    def __init__(
        self,
        *,
        threshold: int = 3,
        base: timedelta = timedelta(seconds=5),
        cap: timedelta = timedelta(minutes=1),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.base_s = base.total_seconds()
        self.cap_s = cap.total_seconds()
        self._clock = clock
        self._targets: dict[str, _Trips] = {}

    def blocked_for(self, target: str) -> float:
        """Seconds until `target` may be probed again; 0 when it may be probed now."""
        trips = self._targets.get(target)
        return 0.0 if trips is None else max(0.0, trips.open_until - self._clock())

    def failures(self, target: str) -> int:
        trips = self._targets.get(target)
        return 0 if trips is None else trips.failures

    def record(self, target: str, *, reachable: bool) -> None:
        """Count a probe of `target`: a reachable one closes its breaker."""
        if reachable:
            self._targets.pop(target, None)
            return
        trips = self._targets.setdefault(target, _Trips())
        trips.failures += 1
        if trips.failures >= self.threshold:
            cool_down_s = min(self.base_s * 2 ** (trips.failures - self.threshold), self.cap_s)
            trips.open_until = self._clock() + cool_down_s
            log.info(
                "%s unreachable %d times in a row: not probed for %.1fs",
                target,
                trips.failures,
                cool_down_s,
            )


BREAKERS = Breakers()


# -- probing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Found:
    """What one probe found: whether it holds, whether the target answered, and why."""

    holds: bool
    reachable: bool
    reason: str


@dataclass(frozen=True, slots=True)
class _Verdict:
    satisfied: bool
    blocking: str | None = None
    reason: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class _Context:
    job: Job
    wait: WaitSpec
    env: Mapping[str, str]
    probe_timeout: timedelta
    breakers: Breakers
    stop: asyncio.Event


async def _evaluate(condition: Condition, ctx: _Context) -> _Verdict:
    """Evaluate left to right, stopping at the first part that decides."""
    if isinstance(condition, AllOf):
        for item in condition.items:
            verdict = await _evaluate(item, ctx)
            if not verdict.satisfied:
                return verdict
        return _Verdict(True)
    if isinstance(condition, AnyOf):
        reasons = []
        for item in condition.items:
            verdict = await _evaluate(item, ctx)
            if verdict.satisfied:
                return verdict
            reasons.append(f"{verdict.blocking}: {verdict.reason}")
        return _Verdict(False, condition.text, "none holds: " + "; ".join(reasons))
    if isinstance(condition, Not):
        verdict = await _evaluate(condition.item, ctx)
        if verdict.satisfied:
            return _Verdict(False, condition.text, f"{condition.item.text} holds")
        return _Verdict(True)
    if isinstance(condition, KubeProbe):
        return await _kube(condition, ctx)
    guarded = isinstance(condition, HttpProbe | TcpProbe | DockerProbe)
    if guarded and (blocked := _blocked(condition, condition.text, ctx)):
        return blocked
    found = await _probe_once(condition, ctx)
    if guarded:
        ctx.breakers.record(condition.text, reachable=found.reachable)
    return _Verdict(True) if found.holds else _Verdict(False, condition.text, found.reason)


def _blocked(probe: Probe, target: str, ctx: _Context) -> _Verdict | None:
    """A verdict without probing while `target`'s breaker is open; None when it may be probed."""
    left_s = ctx.breakers.blocked_for(target)
    if not left_s:
        return None
    failures = ctx.breakers.failures(target)
    return _Verdict(
        False,
        probe.text,
        f"not probed: unreachable {failures} times in a row; next probe in {left_s:.1f}s",
    )


async def _kube(probe: KubeProbe, ctx: _Context) -> _Verdict:
    """Read a Kubernetes object's condition; the breaker is per API server, not per object."""
    # Imported on first use (start-up, memory): only daemons with k8s: waits load lightkube.
    from kron.actions import kube

    try:
        cluster = await kube.locate(ctx.wait, env=ctx.env, probe_timeout=ctx.probe_timeout)
    except kube.NoCluster as exc:
        return _Verdict(False, probe.text, f"k8s: {exc}")
    if blocked := _blocked(probe, cluster.server, ctx):
        return blocked
    found = await kube.read_condition(cluster, probe, probe_timeout=ctx.probe_timeout)
    if found.reached is not None:
        ctx.breakers.record(cluster.server, reachable=found.reached)
    return _Verdict(True) if found.holds else _Verdict(False, probe.text, found.reason)


async def _probe_once(probe: Probe, ctx: _Context) -> _Found:
    limit_s = ctx.probe_timeout.total_seconds()
    within = format_duration(ctx.probe_timeout)
    if isinstance(probe, CmdProbe):
        return await _cmd(probe, ctx)
    try:
        if isinstance(probe, TcpProbe):
            return await asyncio.wait_for(_tcp(probe), limit_s)
        if isinstance(probe, HttpProbe):
            return await _http(probe, limit_s)
        if isinstance(probe, FileProbe):
            path = working_dir(ctx.job) / probe.path  # an absolute path stays as it is
            # In a thread: a stat on a hung network mount must not stall the daemon.
            exists = await asyncio.wait_for(asyncio.to_thread(os.path.exists, path), limit_s)
            return _Found(exists, True, "exists" if exists else "does not exist")
        assert isinstance(probe, DockerProbe)  # k8s: probes go through _kube
        # The SDK's own timeout ends the thread; the margin lets it report that first.
        return await asyncio.wait_for(asyncio.to_thread(_docker_state, probe, limit_s), limit_s + 1)
    except TimeoutError:
        return _Found(False, False, f"no answer within {within}")


async def _tcp(probe: TcpProbe) -> _Found:
    try:
        _, writer = await asyncio.open_connection(probe.host, probe.port)
    except socket.gaierror:
        return _Found(False, False, f"cannot resolve {probe.host}")
    except ConnectionRefusedError:
        return _Found(False, False, "connection refused")
    except OSError as exc:
        return _Found(False, False, exc.strerror or str(exc))
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return _Found(True, True, "connected")


async def _http(probe: HttpProbe, limit_s: float) -> _Found:
    # Imported on first use, as the other probes' libraries: a wait on a file, a port or a
    # command never loads httpx or the docker SDK.
    import httpx

    from kron.actions.httpclient import client

    try:
        # Streamed: the status is enough, the body is never read.
        async with client(limit_s) as http, http.stream("GET", probe.url) as response:
            code = response.status_code
    except httpx.TimeoutException:
        within = format_duration(timedelta(seconds=limit_s))
        return _Found(False, False, f"no answer within {within}")
    except httpx.HTTPError as exc:
        return _Found(False, False, connection_reason(exc))
    if probe.expects(code):
        return _Found(True, True, f"status {code}")
    return _Found(False, True, f"status {code}, expected {probe.status}")


def _docker_state(probe: DockerProbe, limit_s: float) -> _Found:
    """Inspect the container (blocking): is it running, is its health check passing?"""
    from docker.errors import DockerException, NotFound
    from requests import RequestException

    from kron.actions.docker_client import EngineUnreachable, connect

    try:
        client = connect(limit_s)
    except EngineUnreachable as exc:
        return _Found(False, False, str(exc))
    try:
        state = client.api.inspect_container(probe.container).get("State") or {}
    except NotFound:
        return _Found(False, True, f"no container named {probe.container}")
    except (DockerException, RequestException) as exc:
        return _Found(False, False, f"docker engine: {connection_reason(exc)}")
    finally:
        client.close()
    status = state.get("Status", "unknown")
    if probe.state == "running":
        return _Found(status == "running", True, f"container is {status}")
    health = state.get("Health")
    if not health:
        return _Found(False, True, f"container is {status} and has no health check")
    condition = health.get("Status", "unknown")
    if condition == "healthy":
        return _Found(True, True, "container is healthy")
    # `unhealthy` is not final: a check that starts passing turns the container healthy again.
    streak = health.get("FailingStreak") or 0
    return _Found(
        False,
        True,
        f"container is {condition}" + (f" ({streak} failed checks in a row)" if streak else ""),
    )


async def _cmd(probe: CmdProbe, ctx: _Context) -> _Found:
    job = ctx.job
    running = asyncio.ensure_future(
        run_process(
            ("/bin/sh", "-c", probe.script),
            cwd=str(working_dir(job)),
            env=ctx.env,
            umask=job.umask,
            user=job.user,
            group=job.group,
            timeout=ctx.probe_timeout,
            kill_grace=_PROBE_KILL_GRACE,
            max_output=4096,
            stop=ctx.stop,
        )
    )
    try:
        result = await asyncio.shield(running)
    except asyncio.CancelledError:
        # A stopped run cancels its wait. Cancelling run_process would SIGKILL the probe and
        # return before the child is reaped; given `stop`, it ends the probe's group itself
        # (SIGTERM, then SIGKILL) and reaps it, within probe_timeout plus the grace.
        await asyncio.wait({running})
        raise
    if result.exit_code == 0:
        return _Found(True, True, "exit 0")
    if result.timed_out:
        return _Found(False, True, f"still running after {format_duration(ctx.probe_timeout)}")
    if result.exit_code is None:
        return _Found(False, True, result.error or f"killed by signal {result.signal}")
    last = result.stderr.strip().splitlines()[-1:] or result.stdout.strip().splitlines()[-1:]
    return _Found(False, True, f"exit {result.exit_code}" + (f": {last[0][:200]}" if last else ""))


# -- polling ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class WaitResult:
    """How a wait ended; `record()` is what goes in the run record under `wait`.

    `blocking` and `reason` say what held the run back: at the end of a wait that did not hold,
    at the last probe before it held of one that did (None when it held at once).
    """

    until: str
    timeout: timedelta
    satisfied: bool
    waited_s: float
    blocking: str | None = None
    reason: str | None = None
    stopped: bool = False

    def record(self) -> dict[str, Any]:
        found: dict[str, Any] = {"satisfied": self.satisfied, "waited_s": self.waited_s}
        if self.blocking is not None:
            found |= {"blocking": self.blocking, "reason": self.reason}
        return found

    def describe(self) -> str:
        """One line for the record's `error`: how long, and which probe held it back, why."""
        return (
            f"wait timed out after {format_duration(self.timeout)}: {self.blocking} ({self.reason})"
        )


async def wait_until(
    wait: WaitSpec,
    *,
    job: Job,
    env: Mapping[str, str],
    stop: asyncio.Event,
    breakers: Breakers = BREAKERS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> WaitResult:
    """Probe `wait.until` every `wait.every` until it holds, `wait.timeout` passes, or `stop`.

    A probe is bounded by `wait.probe_timeout`; one evaluation runs at the deadline, so a wait
    may end up to a probe timeout after it.

    Args:
        wait: the job's wait block.
        job: the job, for cmd probes (user, cwd) and relative file paths.
        env: the environment cmd probes run with.
        stop: set by the runner to stop the run.
        breakers: the circuit breakers to consult and feed.
        clock: monotonic seconds; tests inject a fake.
        sleep: waits between polls; tests inject a fake.

    Returns:
        Whether the condition held, how long it took, and what held it back.
    """
    condition = parse_condition(wait.until)
    ctx = _Context(
        job=job, wait=wait, env=env, probe_timeout=wait.probe_timeout, breakers=breakers, stop=stop
    )
    start = clock()
    deadline = start + wait.timeout.total_seconds()
    every_s = max(wait.every.total_seconds(), _MIN_EVERY_S)

    def result(verdict: _Verdict, *, stopped: bool = False) -> WaitResult:
        shown = held if verdict.satisfied else verdict
        return WaitResult(
            until=wait.until,
            timeout=wait.timeout,
            satisfied=verdict.satisfied,
            waited_s=round(clock() - start, 3),
            blocking=shown.blocking if shown else None,
            reason=shown.reason if shown else None,
            stopped=stopped,
        )

    last = _Verdict(False, condition.text, "not probed yet")
    held: _Verdict | None = None  # the last verdict that held the run back
    while True:
        verdict = await until_stopped(_evaluate(condition, ctx), stop=stop)
        if isinstance(verdict, Interrupted):
            return result(last, stopped=True)
        last = verdict
        if verdict.satisfied:
            return result(verdict)
        held = verdict
        left_s = deadline - clock()
        if left_s <= 0:
            return result(verdict)
        if isinstance(await until_stopped(sleep(min(every_s, left_s)), stop=stop), Interrupted):
            return result(last, stopped=True)
