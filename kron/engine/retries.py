"""Retries between a run's attempts, driven by tenacity: back-off as a policy computed from data.

Imported by the first job that retries (and by start-up when a retry was pending at the last
stop): a daemon whose jobs never retry does not load tenacity.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import tenacity

from kron.engine.runs import Run
from kron.model.job import Backoff, RetryPolicy

__all__ = ["retry_timeline", "retry_wait", "retrying"]

log = logging.getLogger("kron.runner")


def retrying(
    run: Run,
    policy: RetryPolicy,
    *,
    first: int,
    left: int,
    sleep: Callable[[float], Awaitable[None]],
) -> tenacity.AsyncRetrying:
    """The attempts `first`..`first + left - 1` of `run`: each that ends in an outcome of
    `policy.on` (and was not stopped) is followed by the next, after the policy's wait."""
    return tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(left),
        wait=_Shifted(retry_wait(policy), first - 1),
        retry=tenacity.retry_if_result(
            lambda ended: (
                ended is not None and ended.outcome in policy.on and run.stop_reason is None
            )
        ),
        sleep=sleep,
        retry_error_callback=_last_result,
        before_sleep=lambda state: log.info(
            "job %s: attempt %d ended %s; retrying in %.1fs",
            run.job.id,
            run.attempt,
            state.outcome.result().outcome.value if state.outcome else "?",
            state.upcoming_sleep,
        ),
    )


def _last_result(state: tenacity.RetryCallState) -> Any:
    return state.outcome.result() if state.outcome else None


class _Shifted(tenacity.wait.wait_base):
    """A wait strategy for attempts counted from `by` + 1: a retry resumed after a restart
    waits as the attempt it is, not as a first one."""

    def __init__(self, wait: tenacity.wait.wait_base, by: int) -> None:
        self._wait = wait
        self._by = by

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        if not self._by:
            return float(self._wait(retry_state))
        shifted = copy.copy(retry_state)
        shifted.attempt_number += self._by
        return float(self._wait(shifted))


def retry_wait(policy: RetryPolicy) -> tenacity.wait.wait_base:
    """The wait between attempts, as a tenacity strategy: fixed or exponential, plus jitter."""
    delay_s = policy.delay.total_seconds()
    if policy.backoff is Backoff.FIXED:
        wait: tenacity.wait.wait_base = tenacity.wait_fixed(
            min(delay_s, policy.max_delay.total_seconds())
        )
    else:
        wait = tenacity.wait_exponential(
            multiplier=delay_s, min=0, max=policy.max_delay.total_seconds()
        )
    if policy.jitter:
        wait = wait + tenacity.wait_random(0, policy.jitter.total_seconds())
    return wait


def retry_timeline(policy: RetryPolicy) -> list[float]:
    """Seconds waited before attempts 2..n (jitter excluded): the documented back-off table."""
    wait = retry_wait(
        RetryPolicy(
            attempts=policy.attempts,
            backoff=policy.backoff,
            delay=policy.delay,
            max_delay=policy.max_delay,
            on=policy.on,
        )
    )
    waits = []
    for number in range(1, policy.attempts):
        state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = number
        waits.append(float(wait(state)))
    return waits
